/* fuzz_names.c: libFuzzer target for the names a URL can put into a storage path: stream rendition and segment names
 * (fcgi/hls_names.c), download renditions (fcgi/download.c), and the storage name and id checks (lib/storage.c). */
#include "fcgi/download.h"
#include "fcgi/hls_names.h"
#include "lib/storage.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ID "5d0c9f2e-8a1b-4c3d-9e7f-0a1b2c3d4e5f"

static void must(bool ok)
{
	if (!ok)
		abort();
}

/* What no accepted name may hold, whatever the check: a way out of its folder
 * or around the checks of the web server in front. (".." inside a segment,
 * as in "a..b", is an ordinary file name; segments_plain() checks those.) */
static bool harmless(const char *s, bool slashes)
{
	if (!s[0] || s[0] == '.' || s[0] == '/' || strstr(s, "//") || strstr(s, "/.") || strchr(s, '\\') ||
	    strchr(s, '%') || (!slashes && strchr(s, '/')))
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f)
			return false;
	return true;
}

/* No segment of name is empty or starts with a dot (so none is "." or ".."). */
static bool segments_plain(const char *name)
{
	for (const char *seg = name;;) {
		size_t n = strcspn(seg, "/");
		if (n == 0 || seg[0] == '.')
			return false;
		if (seg[n] == '\0')
			return true;
		seg += n + 1;
	}
}

/* The segment names the transcode job writes, spelled out. */
static const char *expected_type(const char *s)
{
	if (strcmp(s, "init.mp4") == 0)
		return "video/mp4";
	if (strlen(s) < 10 || memcmp(s, "seg_", 4) != 0)
		return NULL;
	for (int i = 4; i < 9; i++)
		if (s[i] < '0' || s[i] > '9')
			return NULL;
	return strcmp(s + 9, ".m4s") == 0 ? "video/mp4" : strcmp(s + 9, ".ts") == 0 ? "video/mp2t" : NULL;
}

static void check_one(const char *s)
{
	char name[STORAGE_NAME_MAX + 64];
	if (valid_rendition(s)) {
		must(harmless(s, false) && !strchr(s, '.') && s[0] != '-' && strlen(s) <= 15);
		snprintf(name, sizeof name, "hls/%s/index.m3u8", s);
		must(storage_valid_name(name));
	}
	const char *type = segment_type(s);
	const char *want = expected_type(s);
	must(type == want || (type && want && strcmp(type, want) == 0));
	if (type) {
		must(harmless(s, false) && !strstr(s, ".."));
		snprintf(name, sizeof name, "hls/360p/%s", s);
		must(storage_valid_name(name));
	}
	if (storage_valid_name(s)) {
		must(harmless(s, true) && segments_plain(s) && strlen(s) <= STORAGE_NAME_MAX);
		struct vtp_config cfg = {.storage_path = (char *)"/srv/vtp//"};
		char *path = storage_path(&cfg, ID, s);
		must(path && strncmp(path, "/srv/vtp/" ID "/", sizeof "/srv/vtp/" ID "/" - 1) == 0);
		free(path);
	}
	if (storage_valid_id(s))
		must(strlen(s) == 36 && harmless(s, false) && strspn(s, "0123456789abcdef-") == 36);
	if (download_rendition_file(s, "source.mp4", name, sizeof name) == 0)
		must(storage_valid_name(name));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A path parameter reaches the checks as a C string: the input up to its
	 * first NUL, and also its two halves around the first '/', as a
	 * {rendition}/{segment} pair. */
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	check_one(s);
	char *slash = strchr(s, '/');
	if (slash) {
		*slash = '\0';
		check_one(s);
		check_one(slash + 1);
		if (valid_rendition(s) && segment_type(slash + 1)) {
			char name[STORAGE_NAME_MAX + 64];
			snprintf(name, sizeof name, "hls/%s/%s", s, slash + 1);
			must(storage_valid_name(name));
		}
	}
	free(s);
	return 0;
}
