/* hls.c: ladder profiles from config, segment measurement and the master playlist (RFC 8216) that we write. */
#include "hls.h"
#include "kinds.h"

#include <libavformat/avformat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

/* libx264's speed presets, fastest first. */
static bool known_preset(const char *name)
{
	static const char *const presets[] = {"ultrafast", "superfast", "veryfast", "faster", "fast",
					      "medium", "slow", "slower", "veryslow"};
	for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
		if (strcmp(name, presets[i]) == 0)
			return true;
	return false;
}

int hls_parse_profiles(const char *text, struct hls_profile *out, int max, char *why, size_t why_len)
{
	int n = 0;
	const char *p = text;
	while (*p) {
		struct hls_profile pr;
		int used = 0;
		memset(&pr, 0, sizeof pr);
		if (n == max) {
			snprintf(why, why_len, "more than %d profiles", max);
			return -1;
		}
		int major = 0, minor = 0, more = 0, word = 0;
		bool has_level = false;
		if (sscanf(p, "%15[A-Za-z0-9_-]:%dx%d:%d:%d:%d%n", pr.name, &pr.width, &pr.height, &pr.kbps,
			   &pr.max_kbps, &pr.buf_kbps, &used) != 6)
			used = -1;
		if (used > 0 && p[used] == ':' && p[used + 1] >= '0' && p[used + 1] <= '9') {
			if (sscanf(p + used, ":%1d.%1d%n", &major, &minor, &more) != 2 || more != 4)
				used = -1;
			else
				used += more, has_level = true;
		}
		if (used > 0 && p[used] == ':') {
			if (sscanf(p + used, ":%11[a-z]%n", pr.preset, &word) != 1 || !known_preset(pr.preset))
				used = -1;
			else
				used += word;
		}
		if (used < 0 || (p[used] != ',' && p[used] != '\0')) {
			snprintf(why, why_len, "profile %d is not name:WIDTHxHEIGHT:kbps:max_kbps:buffer_kbps[:level][:preset] "
				 "(preset: one of libx264's, ultrafast to veryslow)", n + 1);
			return -1;
		}
		pr.level = major * 10 + minor;
		if (has_level && (pr.level < 10 || pr.level > 62)) {
			snprintf(why, why_len, "profile %s has an H.264 level out of 1.0 to 6.2", pr.name);
			return -1;
		}
		if (pr.width < 16 || pr.height < 16 || pr.width > 7680 || pr.height > 4320 || pr.kbps < 16 ||
		    pr.max_kbps < pr.kbps || pr.buf_kbps < pr.kbps || pr.max_kbps > 200000) {
			snprintf(why, why_len, "profile %s has sizes or bit rates out of range", pr.name);
			return -1;
		}
		for (int i = 0; i < n; i++)
			if (strcmp(out[i].name, pr.name) == 0) {
				snprintf(why, why_len, "profile %s is named twice", pr.name);
				return -1;
			}
		out[n++] = pr;
		p += used;
		if (*p == ',' && !*++p) {
			snprintf(why, why_len, "a comma ends the list");
			return -1;
		}
	}
	if (n == 0) {
		snprintf(why, why_len, "no profile");
		return -1;
	}
	return n;
}

static long long file_size(const char *dir, const char *name)
{
	struct stat st;
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

int hls_measure(const char *dir, struct hls_variant *v)
{
	char path[4096], line[1024], init[256] = "";
	snprintf(path, sizeof path, "%s/index.m3u8", dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	double dur = 0, total_dur = 0;
	long long total_bits = 0, peak = 0;
	int segments = 0;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (strncmp(line, "#EXTINF:", 8) == 0) {
			dur = strtod(line + 8, NULL);
		} else if (strncmp(line, "#EXT-X-MAP:URI=\"", 16) == 0) {
			snprintf(init, sizeof init, "%.*s", (int)strcspn(line + 16, "\""), line + 16);
		} else if (line[0] && line[0] != '#') {
			long long size = file_size(dir, line);
			if (size < 0 || dur <= 0) {
				fclose(f);
				return -1;
			}
			if (segments == 0 && init[0])
				size += file_size(dir, init) > 0 ? file_size(dir, init) : 0;
			long long bps = (long long)((double)size * 8 / dur);
			if (bps > peak)
				peak = bps;
			total_bits += size * 8;
			total_dur += dur;
			segments++;
			dur = 0;
		}
	}
	fclose(f);
	if (segments == 0 || total_dur <= 0)
		return -1;
	v->peak_bps = peak;
	v->avg_bps = (long long)((double)total_bits / total_dur);
	v->size_bytes = total_bits / 8;
	return 0;
}

static int by_bandwidth(const void *a, const void *b)
{
	const struct hls_variant *x = a, *y = b;
	return x->peak_bps < y->peak_bps ? 1 : x->peak_bps > y->peak_bps ? -1 : strcmp(x->name, y->name);
}

int hls_write_master(const char *path, struct hls_variant *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, by_bandwidth);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n", f);
	for (int i = 0; i < n; i++) {
		fprintf(f, "#EXT-X-STREAM-INF:BANDWIDTH=%lld,AVERAGE-BANDWIDTH=%lld,CODECS=\"%s\"", v[i].peak_bps,
			v[i].avg_bps, v[i].codecs);
		if (v[i].width > 0)
			fprintf(f, ",RESOLUTION=%dx%d", v[i].width, v[i].height);
		if (v[i].frame_rate > 0)
			fprintf(f, ",FRAME-RATE=%.3f", v[i].frame_rate);
		fprintf(f, "\n%s/index.m3u8\n", v[i].name);
	}
	int err = ferror(f);
	if (fclose(f) != 0 || err) {
		errno = EIO;
		return -1;
	}
	return 0;
}

json_object *hls_renditions_json(const struct hls_variant *v, int n, const char *status)
{
	json_object *a = json_object_new_array();
	for (int i = 0; i < n; i++) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "name", json_object_new_string(v[i].name));
		json_object_object_add(o, "width", v[i].width ? json_object_new_int(v[i].width) : NULL);
		json_object_object_add(o, "height", v[i].height ? json_object_new_int(v[i].height) : NULL);
		json_object_object_add(o, "bandwidth", json_object_new_int64(v[i].peak_bps));
		json_object_object_add(o, "average_bandwidth", json_object_new_int64(v[i].avg_bps));
		json_object_object_add(o, "codecs", json_object_new_string(v[i].codecs));
		json_object_object_add(o, "size_bytes", json_object_new_int64(v[i].size_bytes));
		json_object_object_add(o, "status", json_object_new_string(status));
		json_object_array_add(a, o);
	}
	return a;
}

/* The first write error of a watched writer's files; see hls_watch_writes(). */
static int first_write_error;

/* Closes a file of a watched writer, noting a failed write (avio_close() itself forgets it). */
static int close_noting_errors(struct AVFormatContext *s, AVIOContext *pb)
{
	(void)s;
	avio_flush(pb);
	int err = pb->error;
	int closed = avio_close(pb);
	if (!err)
		err = closed;
	if (err < 0 && !first_write_error)
		first_write_error = err;
	return err;
}

void hls_watch_writes(struct AVFormatContext *mux)
{
	mux->io_close2 = close_noting_errors;
}

int hls_write_error(void)
{
	return first_write_error;
}

int hls_master_lists(const char *hls_dir, bool *quick, bool *other)
{
	char path[4096], *line = NULL;
	size_t size = 0;
	*quick = *other = false;
	snprintf(path, sizeof path, "%s/master.m3u8", hls_dir);
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 1 : -1;
	/* Our master names each variant by its media playlist, "<rendition>/index.m3u8", on a line of its own;
	 * getline, as a tag line with long CODECS may be longer than any fixed buffer. */
	while (getline(&line, &size, f) >= 0) {
		if (!line[0] || line[0] == '#' || line[0] == '\n')
			continue;
		if (strncmp(line, PLAYABLE_NAME "/", strlen(PLAYABLE_NAME "/")) == 0)
			*quick = true;
		else
			*other = true;
	}
	int ret = ferror(f) ? -1 : 0;
	int saved = errno;
	free(line);
	fclose(f);
	errno = saved;
	return ret;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	/* Gone already: someone else (a publish's clean-up, another attempt) is removing the same tree. */
	return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int hls_remove_tree(const char *path)
{
	if (access(path, F_OK) != 0)
		return 0;
	return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static uid_t owner_uid;
static gid_t owner_gid;

static int own_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return lchown(path, owner_uid, owner_gid);
}

void hls_own_tree(const char *path, const char *folder)
{
	struct stat st;
	if (geteuid() != 0 || stat(folder, &st) < 0)
		return;
	owner_uid = st.st_uid;
	owner_gid = st.st_gid;
	nftw(path, own_entry, 16, FTW_PHYS);
}
