/* download.c: GET /api/v1/recordings/{id}/download: the recording's source file (or an MP4 rendition) as an
 * attachment with a safe file name, byte ranges and ETag; each download is logged in recording_access_log. */
#include "download.h"

#include "routes.h"

#include "../lib/db.h"
#include "../lib/log.h"
#include "../lib/storage.h"
#include "../lib/url_token.h"
#include "access.h"
#include "app.h"
#include "files.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Longest file name offered, in bytes of UTF-8 (without the extension). */
#define NAME_MAX_BYTES 120

/* Bounds of a signed download URL's life (expires_in), in seconds. */
#define URL_DEFAULT_S 3600
#define URL_MAX_S 86400

/* Length of the UTF-8 sequence starting with byte c (1 for invalid bytes). */
static size_t utf8_len(unsigned char c)
{
	return c >= 0xf0 && c < 0xf8 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
}

void download_filename(const char *title, const char *ext, struct vtp_buf *utf8, struct vtp_buf *ascii)
{
	static const char forbidden[] = "/\\:*?\"<>|;%";
	const unsigned char *p = (const unsigned char *)(title ? title : "");
	bool space = false;
	vtp_buf_reset(utf8);
	vtp_buf_reset(ascii);
	/* Characters that mean something to file systems or to the header
	 * become spaces, runs of white space become one, and the name never
	 * starts with a dot or a space (hidden files, trimmed names). */
	while (*p && utf8->len < NAME_MAX_BYTES) {
		size_t n = utf8_len(*p);
		bool valid = true;
		for (size_t i = 1; i < n && valid; i++)
			valid = (p[i] & 0xc0) == 0x80;
		if (!valid)
			n = 1;
		if (*p < 0x20 || *p == 0x7f || (n == 1 && *p >= 0x80) || strchr(forbidden, *p) || *p == ' ') {
			space = utf8->len > 0;
			p += n;
			continue;
		}
		if (*p == '.' && utf8->len == 0) {
			p++;
			continue;
		}
		if (utf8->len + n + (space ? 1 : 0) > NAME_MAX_BYTES)
			break;
		if (space) {
			vtp_buf_append(utf8, " ", 1);
			vtp_buf_append(ascii, " ", 1);
			space = false;
		}
		vtp_buf_append(utf8, p, n);
		/* The plain filename= fallback holds printable ASCII only. */
		if (n == 1)
			vtp_buf_append(ascii, p, 1);
		else if (ascii->len == 0 || ascii->data[ascii->len - 1] != '_')
			vtp_buf_append(ascii, "_", 1);
		p += n;
	}
	if (utf8->len == 0) {
		vtp_buf_puts(utf8, "recording");
		vtp_buf_reset(ascii);
	}
	if (ascii->len == 0 || strspn(ascii->data, "_ ") == ascii->len) {
		vtp_buf_reset(ascii);
		vtp_buf_puts(ascii, "recording");
	}
	if (ext && *ext) {
		vtp_buf_printf(utf8, ".%s", ext);
		vtp_buf_printf(ascii, ".%s", ext);
	}
}

void download_disposition(const char *title, const char *ext, struct vtp_buf *out)
{
	static const char hex[] = "0123456789ABCDEF";
	struct vtp_buf utf8 = {0}, ascii = {0};
	download_filename(title, ext, &utf8, &ascii);
	vtp_buf_reset(out);
	vtp_buf_printf(out, "attachment; filename=\"%s\"; filename*=UTF-8''", ascii.data);
	/* RFC 8187 attr-char stays, every other byte is percent-encoded. */
	for (size_t i = 0; i < utf8.len; i++) {
		unsigned char c = (unsigned char)utf8.data[i];
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    (c && strchr("!#$&+-.^_`|~", c)))
			vtp_buf_append(out, &c, 1);
		else
			vtp_buf_printf(out, "%%%c%c", hex[c >> 4], hex[c & 15]);
	}
	vtp_buf_free(&utf8);
	vtp_buf_free(&ascii);
}

int download_rendition_file(const char *rendition, const char *source_file, char *name, size_t size)
{
	if (strcmp(rendition, "original") == 0) {
		if (!source_file)
			return -1;
		snprintf(name, size, "%s", source_file);
		return 0;
	}
	/* The MP4 files of the transcode jobs: mp4/<rendition>.mp4. */
	size_t n = strlen(rendition);
	if (n == 0 || n > 32 || strspn(rendition, "abcdefghijklmnopqrstuvwxyz0123456789_-") != n)
		return -1;
	snprintf(name, size, "mp4/%s.mp4", rendition);
	return 0;
}

static const char *content_type_of(const char *name)
{
	static const char *const types[][2] = {
		{".mp4", "video/mp4"},	 {".m4a", "audio/mp4"},	      {".mov", "video/quicktime"},
		{".webm", "video/webm"}, {".mkv", "video/x-matroska"}, {".ts", "video/mp2t"},
		{".mp3", "audio/mpeg"},	 {".ogg", "audio/ogg"},	      {".wav", "audio/wav"},
		{".flac", "audio/flac"}, {".aac", "audio/aac"},	      {".flv", "video/x-flv"},
	};
	const char *dot = strrchr(name, '.');
	for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
		if (strcmp(dot, types[i][0]) == 0)
			return types[i][1];
	return "application/octet-stream";
}

/* rendition=mp4: the largest finished file of mp4/ (the mp4 job names it
 * after its rung, worker/mp4.c, and writes it under a ".tmp-" name first).
 * Returns 0 with its name, or -1 when there is none. */
static int largest_mp4(const struct vtp_config *cfg, const char *id, char *name, size_t size)
{
	char *dir = storage_path(cfg, id, "mp4");
	DIR *d = dir ? opendir(dir) : NULL;
	long long best = -1;
	struct dirent *e;
	while (d && (e = readdir(d))) {
		struct stat st;
		size_t n = strlen(e->d_name);
		if (n < 5 || strcmp(e->d_name + n - 4, ".mp4") != 0 || strstr(e->d_name, ".tmp-") ||
		    e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode) || (long long)st.st_size <= best)
			continue;
		char candidate[sizeof e->d_name + 8];
		snprintf(candidate, sizeof candidate, "mp4/%s", e->d_name);
		if (!storage_valid_name(candidate))
			continue;
		if (strlen(candidate) >= size)
			continue;
		best = (long long)st.st_size;
		memcpy(name, candidate, strlen(candidate) + 1);
	}
	if (d)
		closedir(d);
	free(dir);
	return best >= 0 ? 0 : -1;
}

/* One recording_access_log row: who, what, when, bytes, user agent, address. */
static void log_access(struct vtp_ctx *ctx, const char *id, const char *action, const char *rendition,
		       long long bytes)
{
	static const char sql[] =
		"INSERT INTO recording_access_log (recording_id, user_id, action, rendition, bytes, user_agent, remote_addr)"
		" VALUES ($1, NULLIF($2, ''), $3, $4, $5, left($6, 1024),"
		"  CASE WHEN $7 ~ '^[0-9a-fA-F:.]{2,45}$' THEN $7::inet END)";
	char b[24];
	snprintf(b, sizeof b, "%lld", bytes);
	const char *params[] = {id, ctx->who.sub, action, rendition, b, ctx->req.user_agent, ctx->req.remote_addr};
	PGresult *res = NULL;
	if (vtp_db_query(ctx->db, &res, sql, 7, params) != VTP_DB_OK)
		log_error("recording %s: the %s could not be logged", id, action);
	PQclear(res);
}

/* The scope of a download URL token: it opens one rendition only. */
static void token_scope(const char *rendition, char *out, size_t size)
{
	snprintf(out, size, "download:%s", rendition);
}

/* Checks a signed URL's token (the route is ROUTE_URL_TOKEN: the router
 * let the request in without a Bearer token). Returns 0, or -1 after
 * answering 403. */
static int check_token(struct vtp_ctx *ctx, const char *rendition, const char *token)
{
	char scope[64];
	token_scope(rendition, scope, sizeof scope);
	enum url_token_status st = url_token_check(&ctx->app->cfg, ctx->params[0], scope, token, time(NULL));
	if (st == URL_TOKEN_EXPIRED)
		http_problem(ctx, 403, "url_token_expired", "this download link has expired; ask for a new one");
	else if (st != URL_TOKEN_OK)
		http_problem(ctx, 403, "url_token_invalid", "this download link is not valid for this recording and rendition");
	return st == URL_TOKEN_OK ? 0 : -1;
}

/* Reads ?rendition= into out, which keeps its default when the parameter is
 * absent. Returns 0, or -1 after answering 400. */
static int query_rendition(struct vtp_ctx *ctx, char *out, size_t size)
{
	int got = http_query_get(ctx->req.query, "rendition", out, size);
	if (got < 0 || (got > 0 && !out[0])) {
		http_problem(ctx, 400, "invalid_query", "rendition must be original, mp4 or a rendition name");
		return -1;
	}
	return 0;
}

void download_get(struct vtp_ctx *ctx)
{
	static const char *const allowed[] = {"rendition", "token", NULL};
	static const char sql[] =
		"SELECT r.title, r.source_file FROM recordings r WHERE r.id = $1 AND r.deleted_at IS NULL";
	char token[URL_TOKEN_MAX + 1], share_id[URL_TOKEN_SHARE_SIZE];
	bool by_url = false;
	const char *id = ctx->params[0];
	char rendition[40] = "original", name[STORAGE_NAME_MAX + 1];
	struct vtp_buf disposition = {0};
	PGresult *res = NULL;
	int ret = -1;

	if (http_query_only(ctx, allowed) < 0)
		goto out;
	if (query_rendition(ctx, rendition, sizeof rendition) < 0)
		goto out;
	int got = http_query_get(ctx->req.query, "token", token, sizeof token);
	if (got < 0) {
		http_problem(ctx, 403, "url_token_invalid", "this download link is not valid for this recording and rendition");
		goto out;
	}
	by_url = got > 0;
	if (by_url && check_token(ctx, rendition, token) < 0)
		goto out;
	if (by_url && url_token_share(token, share_id) && access_share_valid(ctx, id, share_id, true) < 0)
		goto out;
	if (by_url) {
		/* The signature stands for the access check made when the URL
		 * was given out (and the share it was given out for is still
		 * good); the recording must still exist. */
		const char *params[] = {id};
		if (!(res = http_query(ctx, sql, 1, params)))
			goto out;
		if (PQntuples(res) == 0) {
			http_problem(ctx, 404, "recording_not_found", "no recording %s", id);
			goto out;
		}
	} else if (!(res = access_query(ctx, id, ACCESS_DOWNLOAD, sql))) {
		goto out;
	}
	const char *title = vtp_db_get(res, 0, "title"), *source_file = vtp_db_get(res, 0, "source_file");
	struct file_answer a = {.ranges = true, .cache_control = "private, no-cache"};
	if (strcmp(rendition, "mp4") == 0) {
		download_disposition(title, "mp4", &disposition);
		a.content_type = "video/mp4";
		a.disposition = disposition.data;
		if (largest_mp4(&ctx->app->cfg, id, name, sizeof name) == 0)
			ret = files_answer(ctx, id, name, &a);
	} else if (download_rendition_file(rendition, source_file, name, sizeof name) == 0) {
		const char *dot = strrchr(name, '.');
		download_disposition(title, dot ? dot + 1 : NULL, &disposition);
		a.content_type = content_type_of(name);
		a.disposition = disposition.data;
		ret = files_answer(ctx, id, name, &a);
	}
	if (ret < 0) {
		if (ctx->resp.status < 500)
			http_problem(ctx, 404, "rendition_not_found", "the recording has no %.32s file to download (yet)",
				     rendition);
		goto out;
	}
	/* A HEAD sends no bytes: it is no download. */
	if ((ctx->resp.status == 200 || ctx->resp.status == 206) && strcmp(ctx->req.method, "HEAD") != 0)
		log_access(ctx, id, by_url ? "download_url" : "download", rendition, a.bytes);
out:
	vtp_buf_free(&disposition);
	PQclear(res);
}

void download_url_get(struct vtp_ctx *ctx)
{
	static const char *const allowed[] = {"rendition", "expires_in", NULL};
	static const char sql[] =
		"SELECT r.source_file, vtp_rfc3339(to_timestamp($2::bigint)) AS expires_at FROM recordings r"
		" WHERE r.id = $1 AND r.deleted_at IS NULL";
	const char *id = ctx->params[0];
	char *token = NULL, *url = NULL;
	char rendition[40] = "original", seconds[24] = "", scope[64], expires[24], name[STORAGE_NAME_MAX + 1];
	PGresult *res = NULL;
	long expires_in = URL_DEFAULT_S;

	if (http_query_only(ctx, allowed) < 0)
		goto out;
	if (query_rendition(ctx, rendition, sizeof rendition) < 0)
		goto out;
	int got = http_query_get(ctx->req.query, "expires_in", seconds, sizeof seconds);
	if (got != 0) {
		char *end;
		expires_in = got > 0 ? strtol(seconds, &end, 10) : 0;
		if (got < 0 || !seconds[0] || *end || strspn(seconds, "0123456789") != strlen(seconds) ||
		    strlen(seconds) > 9) {
			http_problem(ctx, 400, "invalid_query", "expires_in must be a whole number of seconds");
			goto out;
		}
		if (expires_in < 1 || expires_in > URL_MAX_S) {
			http_problem(ctx, 422, "invalid_value", "expires_in must be from 1 to %d seconds", URL_MAX_S);
			goto out;
		}
	}
	if (strcmp(rendition, "mp4") != 0 && download_rendition_file(rendition, "x", name, sizeof name) < 0) {
		http_problem(ctx, 404, "rendition_not_found", "the recording has no %.32s file to download", rendition);
		goto out;
	}
	struct access_share share;
	if (access_check_share(ctx, id, ACCESS_DOWNLOAD, &share) < 0)
		goto out;
	/* A share's URL ends with the share, and names it so that each use
	 * checks it again. */
	time_t until = access_share_cap(&share, time(NULL) + expires_in);
	snprintf(expires, sizeof expires, "%lld", (long long)until);
	const char *params[] = {id, expires};
	if (!(res = http_query(ctx, sql, 2, params)))
		goto out;
	if (PQntuples(res) == 0) {
		http_problem(ctx, 404, "recording_not_found", "no recording %s", id);
		goto out;
	}
	token_scope(rendition, scope, sizeof scope);
	token = access_url_token(ctx, &share, id, scope, until);
	if (!token) {
		log_error("no key to sign download URLs (url_signing_key or jwt_secret)");
		http_problem(ctx, 500, "internal_error", "the request could not be completed");
		goto out;
	}
	url = xasprintf("/api/v1/recordings/%s/download?rendition=%s&token=%s", id, rendition, token);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "url", json_object_new_string(url));
	json_object_object_add(o, "expires_at", json_object_new_string(vtp_db_get(res, 0, "expires_at")));
	json_object_object_add(o, "rendition", json_object_new_string(rendition));
	http_json(ctx, 200, o);
out:
	free(token);
	free(url);
	PQclear(res);
}
