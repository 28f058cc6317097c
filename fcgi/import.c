/* import.c: POST /api/v1/recordings: a media file uploaded as the raw body becomes a recording in processing. */
#include "routes.h"

#include "../lib/db.h"
#include "../lib/log.h"
#include "../lib/storage.h"
#include "app.h"
#include "json_in.h"
#include "recording_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

/* Bytes read from the web server per step: the memory an upload costs. */
#define UPLOAD_CHUNK 65536
/* The name the body is written under until it is complete and synced. */
#define UPLOAD_TMP_NAME "source.upload.tmp"
/* Room for 200 characters of 4-byte UTF-8; longer text is refused as such. */
#define QUERY_TEXT_BYTES 1024

/* Content type (without parameters, any case) -> the source file's extension. */
static const struct {
	const char *type;
	const char *ext;
} extensions[] = {
	{"video/mp4", "mp4"},	     {"audio/mp4", "m4a"},	  {"audio/x-m4a", "m4a"},
	{"audio/m4a", "m4a"},	     {"video/webm", "webm"},	  {"audio/webm", "webm"},
	{"video/x-matroska", "mkv"}, {"video/matroska", "mkv"}, {"audio/x-matroska", "mkv"},
	{"video/quicktime", "mov"},  {"video/mp2t", "ts"},	  {"audio/mpeg", "mp3"},
	{"audio/mp3", "mp3"},	     {"audio/ogg", "ogg"},	  {"video/ogg", "ogg"},
	{"audio/wav", "wav"},	     {"audio/x-wav", "wav"},	  {"audio/wave", "wav"},
	{"audio/vnd.wave", "wav"},
};

/* The extension for a video/... or audio/... content type ("bin" for one we do not
 * know: the probe finds out what it is), or NULL for any other type. */
static const char *source_extension(const char *content_type)
{
	if (!content_type)
		return NULL;
	size_t len = strcspn(content_type, ";");
	while (len > 0 && content_type[len - 1] == ' ')
		len--;
	bool media = strncasecmp(content_type, "video/", 6) == 0 || strncasecmp(content_type, "audio/", 6) == 0;
	if (!media || len == 6)
		return NULL;
	for (size_t i = 0; i < sizeof extensions / sizeof extensions[0]; i++)
		if (strlen(extensions[i].type) == len && strncasecmp(content_type, extensions[i].type, len) == 0)
			return extensions[i].ext;
	return "bin";
}

/* A version 4 UUID in canonical lower-case form, from the kernel's random source. */
static int new_uuid(char out[37])
{
	unsigned char b[16];
	if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
		return -1;
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
		 b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
	return 0;
}

/* Reads the text query parameter name (1 to 200 characters, no control
 * characters) into out. Returns 1 when given, 0 when absent and optional, or
 * -1 after answering (400 malformed, 422 missing or invalid). */
static int query_text(struct vtp_ctx *ctx, const char *name, bool required, char *out, size_t size)
{
	int found = http_query_get(ctx->req.query, name, out, size);
	if (found < 0) {
		http_problem(ctx, 400, "invalid_query", "query parameter %s is malformed, not UTF-8, or too long",
			     name);
		return -1;
	}
	if (!found && required) {
		http_problem(ctx, 422, "missing_field", "query parameter \"%s\" is required", name);
		return -1;
	}
	if (!found)
		return 0;
	for (const unsigned char *p = (const unsigned char *)out; *p; p++)
		if (*p < 0x20 || *p == 0x7f) {
			http_problem(ctx, 422, "invalid_value", "query parameter \"%s\" contains a control character",
				     name);
			return -1;
		}
	size_t chars = json_in_utf8_length(out);
	if (chars < 1 || chars > 200) {
		http_problem(ctx, 422, "invalid_value", "query parameter \"%s\" must be 1 to 200 characters long",
			     name);
		return -1;
	}
	return 1;
}

/* Writes all of data to fd. Returns 0 or -1 with errno. */
static int write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Copies the request body (content_length bytes) into fd, UPLOAD_CHUNK at a
 * time. Returns the bytes copied (fewer than content_length when the body
 * ended early), or -1 with errno when writing failed. */
static long long copy_body(struct vtp_ctx *ctx, int fd, long long content_length)
{
	char *buf = xmalloc(UPLOAD_CHUNK);
	long long total = 0;
	while (total < content_length) {
		long long left = content_length - total;
		int n = ctx->req.read(ctx->req.io, buf, left < UPLOAD_CHUNK ? (int)left : UPLOAD_CHUNK);
		if (n <= 0)
			break; /* the end of what the server had: a short body, or a read error */
		if (write_all(fd, buf, (size_t)n) < 0) {
			total = -1;
			break;
		}
		total += n;
	}
	free(buf);
	return total;
}

void recordings_import(struct vtp_ctx *ctx)
{
	static const char *const allowed[] = {"title", "room_id", NULL};
	/* The recording and the first steps of its pipeline commit together;
	 * vtp_pipeline_next() (volatile) sees the row inserted before it. */
	static const char sql[] =
		"WITH r AS (INSERT INTO recordings (id, title, room_id, owner_id, status, source_type, source_file,"
		"  size_bytes, retention_days)"
		"  VALUES ($1, $2, $3, $4, 'processing', 'upload', $5, $6, $7) RETURNING *)"
		" SELECT " RECORDING_COLUMNS ", vtp_pipeline_next(r.id, 'source') AS queued FROM r";
	const struct vtp_config *cfg = &ctx->app->cfg;
	char title[QUERY_TEXT_BYTES], room_id[QUERY_TEXT_BYTES], source_file[32], size[24], retention[24];
	char id[37] = "";
	PGresult *res = NULL;
	int fd = -1;
	bool created = false, keep = false;
	const char *ext;
	long long length = ctx->req.content_length, got;

	if (ctx->who.role == VTP_ROLE_STUDENT) {
		http_problem(ctx, 403, "forbidden", "only instructors and admins may upload recordings");
		goto out;
	}
	if (http_query_only(ctx, allowed) < 0)
		goto out;
	int has_room;
	if (query_text(ctx, "title", true, title, sizeof title) < 0 ||
	    (has_room = query_text(ctx, "room_id", false, room_id, sizeof room_id)) < 0)
		goto out;
	if (!has_room)
		snprintf(room_id, sizeof room_id, "upload");
	if (!(ext = source_extension(ctx->req.content_type))) {
		http_problem(ctx, 415, "unsupported_media_type",
			     "the body must be a media file (Content-Type video/* or audio/*)");
		goto out;
	}
	/* Without a length a cut-off upload cannot be told from a complete one. */
	if (length < 0) {
		http_problem(ctx, 411, "length_required", "the upload needs a Content-Length");
		goto out;
	}
	if (length > cfg->max_upload_bytes) {
		http_problem(ctx, 413, "body_too_large", "the upload is larger than %ld bytes", cfg->max_upload_bytes);
		goto out;
	}
	if (length == 0) {
		http_problem(ctx, 422, "invalid_value", "the uploaded file is empty");
		goto out;
	}
	if (new_uuid(id) < 0) {
		log_error("import: no random bytes for an id: %s", strerror(errno));
		http_problem(ctx, 500, "internal_error", "the request could not be completed");
		goto out;
	}

	if (storage_create_recording(cfg, id) < 0) {
		log_error("import %s: cannot create the recording's folder in %s: %s", id, cfg->storage_path,
			  strerror(errno));
		http_problem(ctx, 500, "internal_error", "the upload could not be stored");
		goto out;
	}
	created = true;
	if ((fd = storage_create_temp(cfg, id, UPLOAD_TMP_NAME)) < 0) {
		log_error("import %s: cannot create the upload file: %s", id, strerror(errno));
		http_problem(ctx, 500, "internal_error", "the upload could not be stored");
		goto out;
	}
	got = copy_body(ctx, fd, length);
	if (got < 0) {
		log_error("import %s: writing the upload failed: %s", id, strerror(errno));
		http_problem(ctx, 500, "internal_error", "the upload could not be stored");
		goto out;
	}
	if (got < length) {
		log_warn("import %s: the body ended after %lld of %lld bytes", id, got, length);
		http_problem(ctx, 400, "upload_truncated", "the body ended after %lld of the %lld bytes announced", got,
			     length);
		goto out;
	}
	snprintf(source_file, sizeof source_file, "source.%s", ext);
	int publish = storage_publish(cfg, id, fd, UPLOAD_TMP_NAME, source_file);
	fd = -1; /* closed by storage_publish() */
	if (publish < 0) {
		log_error("import %s: cannot publish the upload: %s", id, strerror(errno));
		http_problem(ctx, 500, "internal_error", "the upload could not be stored");
		goto out;
	}

	snprintf(size, sizeof size, "%lld", length);
	snprintf(retention, sizeof retention, "%ld", cfg->default_retention_days);
	const char *params[] = {id, title, room_id, ctx->who.sub, source_file, size, retention};
	res = http_query(ctx, sql, 7, params);
	if (!res)
		goto out;
	keep = true;
	if (atoi(vtp_db_get(res, 0, "queued")) < 1)
		log_warn("import %s: no pipeline step follows 'source'; nothing will process it", id);
	log_info("recording %s imported by %s: %s, %lld bytes", id, ctx->who.sub, source_file, length);
	http_header(ctx, "Location", "/api/v1/recordings/%s", id);
	recording_answer(ctx, 201, res);
out:
	if (fd >= 0)
		close(fd);
	/* Whatever went wrong, nothing is left behind: no folder without a row. */
	if (created && !keep && storage_remove_recording(cfg, id) < 0)
		log_error("import %s: cannot remove the abandoned upload: %s", id, strerror(errno));
	PQclear(res);
}
