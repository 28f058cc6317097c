/* recordings.c: start, stop, list, get and delete recordings (the recording-control API). */
#include "routes.h"

#include "../lib/db.h"
#include "../lib/log.h"
#include "access.h"
#include "app.h"
#include "json_in.h"
#include "json_out.h"
#include "recording_json.h"
#include "router.h"
#include "sdp.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_URL_CHARS 2048
#define VTP_STR_(x) #x
#define VTP_STR(x) VTP_STR_(x)

static const char *const known_profiles[] = {"1080p", "720p", "480p", "360p"};
static const char *const statuses[] = {"pending", "recording", "stopping", "processing", "ready", "failed"};

static bool in_list(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

/* Where the host of a URL's authority starts: after the last '@' before the
 * path, query or fragment, as libavformat's av_url_split() reads it. */
static const char *url_host(const char *authority)
{
	const char *end = authority + strcspn(authority, "/?#");
	const char *host = authority;
	for (const char *p = authority; p < end; p++)
		if (*p == '@')
			host = p + 1;
	return host;
}

/* Appends "url": the URL as we show it, without "user:password@" (stream keys stay private). */
static void public_url(struct vtp_buf *b, const char *url)
{
	const char *scheme_end = strstr(url, "://");
	const char *authority = scheme_end ? scheme_end + 3 : url;
	const char *host = scheme_end ? url_host(authority) : url;
	json_out_key(b, "url");
	vtp_buf_append(b, "\"", 1);
	json_out_chars(b, url, (size_t)(authority - url));
	json_out_chars(b, host, strlen(host));
	vtp_buf_append(b, "\"", 1);
}

/* Appends "key": and a number PostgreSQL printed, or null when it is NULL or
 * not a finite number (a double precision column may hold NaN). */
static void number(struct vtp_buf *b, const char *key, const char *text)
{
	bool finite = text && (isdigit((unsigned char)text[0]) || (text[0] == '-' && isdigit((unsigned char)text[1])));
	json_out_raw(b, key, finite ? text : NULL, "null");
}

/* RECORDING_OBJECT_COLUMNS (recording_json.h), in its order. */
enum { C_ID, C_TITLE, C_ROOM_ID, C_OWNER_ID, C_STATUS, C_SOURCE_TYPE, C_SOURCE_URL, C_RETENTION_DAYS, C_DURATION_S,
       C_SIZE_BYTES, C_CREATED_AT, C_STARTED_AT, C_STOPPED_AT, C_UPDATED_AT, C_HAS_POSTER, C_RENDITIONS, N_COLUMNS };
static const char *const column_names[N_COLUMNS] = {
	"id", "title", "room_id", "owner_id", "status", "source_type", "source_url", "retention_days", "duration_s",
	"size_bytes", "created_at", "started_at", "stopped_at", "updated_at", "has_poster", "renditions"};

/* Finds RECORDING_OBJECT_COLUMNS in res. Statements select them together, so
 * each is first looked for where the macro's order puts it after "id" and
 * only searched for by name when it is not there: a search (PQfnumber) per
 * column was a seventh of a GET's instructions. */
static void find_columns(const PGresult *res, int col[N_COLUMNS])
{
	int base = PQfnumber(res, "id");
	for (int i = 0; i < N_COLUMNS; i++) {
		const char *name = base >= 0 && base + i < PQnfields(res) ? PQfname(res, base + i) : NULL;
		col[i] = name && strcmp(name, column_names[i]) == 0 ? base + i : PQfnumber(res, column_names[i]);
	}
}

/* The value of column col in row, or NULL when it is SQL NULL. */
static const char *value(const PGresult *res, int row, const int col[N_COLUMNS], int which)
{
	int c = col[which];
	return c < 0 || PQgetisnull(res, row, c) ? NULL : PQgetvalue(res, row, c);
}

/* Appends "key": and "/api/v1/recordings/<id><rest>", or null when !show. */
static void recording_url(struct vtp_buf *b, const char *key, bool show, const char *id, const char *rest)
{
	json_out_key(b, key);
	if (!show) {
		vtp_buf_puts(b, "null");
		return;
	}
	vtp_buf_puts(b, "\"/api/v1/recordings/");
	vtp_buf_puts(b, id); /* a UUID: nothing to escape */
	vtp_buf_puts(b, rest);
	vtp_buf_puts(b, "\"");
}

/* A job as the statements give it (JOB_TEXT_SQL): "<id> <kind> <state>
 * <progress>". Plain words and numbers rather than json_build_object() and
 * json_agg(): PostgreSQL spends less on them, and kinds and states are
 * single words (the jobs table's CHECKs). */
#define JOB_TEXT_SQL "concat(id, ' ', kind, ' ', state, ' ', progress)"
#define MAX_JOBS 10

/* Appends one job, len bytes of s in JOB_TEXT_SQL's form, as a JSON object. */
static void job_out(struct vtp_buf *b, const char *s, size_t len)
{
	static const char *const keys[] = {"{\"id\":", ",\"kind\":\"", "\",\"state\":\"", "\",\"progress\":"};
	const char *end = s + len;
	for (int i = 0; i < 4; i++) {
		const char *space = i < 3 ? memchr(s, ' ', (size_t)(end - s)) : NULL;
		const char *field_end = space ? space : end;
		vtp_buf_puts(b, keys[i]);
		json_out_chars(b, s, (size_t)(field_end - s)); /* numbers and words, escaped all the same */
		s = space ? space + 1 : end;
	}
	vtp_buf_append(b, "}", 1);
}

/* Appends "jobs": the comma-separated jobs of text (NULL: none), at most
 * MAX_JOBS, oldest first whatever order they come in. */
static void jobs_out(struct vtp_buf *b, const char *text)
{
	const char *start[MAX_JOBS];
	size_t len[MAX_JOBS];
	long long id[MAX_JOBS];
	int n = 0;
	for (const char *p = text; p && *p && n < MAX_JOBS; n++) {
		const char *comma = strchr(p, ',');
		size_t l = comma ? (size_t)(comma - p) : strlen(p);
		/* Inserted in order of id: ten at most. */
		long long this_id = strtoll(p, NULL, 10);
		int at = n;
		while (at > 0 && id[at - 1] > this_id) {
			start[at] = start[at - 1];
			len[at] = len[at - 1];
			id[at] = id[at - 1];
			at--;
		}
		start[at] = p;
		len[at] = l;
		id[at] = this_id;
		p = comma ? comma + 1 : NULL;
	}
	json_out_key(b, "jobs");
	vtp_buf_append(b, "[", 1);
	for (int i = 0; i < n; i++) {
		if (i)
			vtp_buf_append(b, ",", 1);
		job_out(b, start[i], len[i]);
	}
	vtp_buf_append(b, "]", 1);
}

/* Appends the recording object of row of res (RECORDING_OBJECT_COLUMNS at col,
 * see find_columns). jobs are its latest jobs (JOB_TEXT_SQL, comma-separated)
 * and health the recorder's report (JSON text), from the caller's statement
 * (NULL: none); the report is shown only while the recording is live
 * (worker/record.c writes it every second). Written as text rather than
 * built with json-c: GET /recordings/{id} is the API's most frequent
 * request, and building, serialising and freeing the objects cost more than
 * the rest of it. */
static void recording_out(struct vtp_buf *b, const PGresult *res, int row, const int col[N_COLUMNS], const char *jobs,
			  const char *health)
{
	const char *id = value(res, row, col, C_ID);
	const char *status = value(res, row, col, C_STATUS);
	const char *url = value(res, row, col, C_SOURCE_URL);
	const char *renditions = value(res, row, col, C_RENDITIONS);
	vtp_buf_append(b, "{", 1);
	json_out_string(b, "id", id);
	json_out_string(b, "title", value(res, row, col, C_TITLE));
	json_out_string(b, "room_id", value(res, row, col, C_ROOM_ID));
	json_out_string(b, "owner_id", value(res, row, col, C_OWNER_ID));
	json_out_string(b, "status", status);
	json_out_string(b, "created_at", value(res, row, col, C_CREATED_AT));
	json_out_string(b, "started_at", value(res, row, col, C_STARTED_AT));
	json_out_string(b, "stopped_at", value(res, row, col, C_STOPPED_AT));
	json_out_string(b, "updated_at", value(res, row, col, C_UPDATED_AT));
	number(b, "duration_s", value(res, row, col, C_DURATION_S));
	number(b, "size_bytes", value(res, row, col, C_SIZE_BYTES));
	json_out_key(b, "source");
	vtp_buf_append(b, "{", 1);
	json_out_string(b, "type", value(res, row, col, C_SOURCE_TYPE));
	if (url)
		public_url(b, url);
	vtp_buf_append(b, "}", 1);
	number(b, "retention_days", value(res, row, col, C_RETENTION_DAYS));
	/* The HLS ladder that the transcode job published (sql/005_hls.sql, a
	 * JSON array); a recording has a stream_url once it has one rendition. */
	json_out_raw(b, "renditions", renditions, "[]");
	/* Pictures and streams come with the media pipeline; until there is
	 * something to point at, null. The poster exists once the thumbnail
	 * job has chosen it (fcgi/thumbnail.c serves it). */
	recording_url(b, "thumbnail_url", strcmp(value(res, row, col, C_HAS_POSTER), "t") == 0, id, "/thumbnail");
	recording_url(b, "stream_url", renditions && strcmp(renditions, "[]") != 0, id, "/stream/playlist.m3u8");
	jobs_out(b, jobs);
	bool live = strcmp(status, "recording") == 0 || strcmp(status, "stopping") == 0;
	json_out_raw(b, "health", live ? health : NULL, "null");
	vtp_buf_append(b, "}", 1);
}

/* A running recorder's report, among a recording's latest jobs (the newest one is shown). */
#define HEALTH_OK_SQL "kind = 'record' AND state = 'running' AND jsonb_typeof(progress_detail) = 'object'"

/* Appends the recording objects of the first rows of res (RECORDING_COLUMNS)
 * to b, comma-separated, with their latest jobs. Returns 0, or -1 after
 * answering (the jobs could not be read). */
static int recordings_out(struct vtp_ctx *ctx, struct vtp_buf *b, const PGresult *res, int rows)
{
	static const char sql[] =
		"SELECT recording_id::text AS recording_id, string_agg(" JOB_TEXT_SQL ", ',') AS jobs,"
		" ((array_agg(progress_detail ORDER BY id DESC) FILTER (WHERE " HEALTH_OK_SQL "))[1])::text AS health"
		" FROM (SELECT j.*, row_number() OVER (PARTITION BY recording_id ORDER BY id DESC) AS n"
		" FROM jobs j WHERE recording_id = ANY ($1::uuid[])) latest"
		" WHERE n <= " VTP_STR(MAX_JOBS) " GROUP BY recording_id";
	struct vtp_buf ids = {0};
	PGresult *jobs = NULL;
	int ret = -1;
	vtp_buf_puts(&ids, "{");
	for (int i = 0; i < rows; i++)
		vtp_buf_printf(&ids, "%s%s", i ? "," : "", vtp_db_get(res, i, "id"));
	vtp_buf_puts(&ids, "}");
	const char *params[] = {ids.data};
	jobs = http_query(ctx, sql, 1, params);
	if (!jobs)
		goto out;
	int col[N_COLUMNS];
	find_columns(res, col);
	for (int i = 0; i < rows; i++) {
		const char *id = vtp_db_get(res, i, "id");
		int j = 0;
		while (j < PQntuples(jobs) && strcmp(vtp_db_get(jobs, j, "recording_id"), id) != 0)
			j++;
		bool has_jobs = j < PQntuples(jobs);
		if (i)
			vtp_buf_append(b, ",", 1);
		recording_out(b, res, i, col, has_jobs ? vtp_db_get(jobs, j, "jobs") : NULL,
			      has_jobs ? vtp_db_get(jobs, j, "health") : NULL);
	}
	ret = 0;
out:
	vtp_buf_free(&ids);
	PQclear(jobs);
	return ret;
}

void recording_answer(struct vtp_ctx *ctx, int status, const PGresult *res)
{
	struct vtp_buf body = {0};
	if (recordings_out(ctx, &body, res, 1) == 0)
		http_json_text(ctx, status, &body);
	vtp_buf_free(&body);
}

/* A URL the recorder may open: a network protocol and a host. Returns NULL or a reason. */
static const char *url_problem(const char *url)
{
	static const char *const schemes[] = {"rtmp://", "rtmps://", "srt://", "rtsp://", "rtsps://"};
	bool known = false;
	for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
		if (strncmp(url, schemes[i], strlen(schemes[i])) == 0)
			known = true;
	if (!known)
		return "must be an rtmp://, rtmps://, srt://, rtsp:// or rtsps:// URL";
	const char *host = url_host(strstr(url, "://") + 3);
	if (strcspn(host, ":/?#") == 0)
		return "has no host";
	for (const char *p = url; *p; p++)
		if (*p == ' ' || (unsigned char)*p >= 0x7f)
			return "must not contain spaces or non-ASCII characters (percent-encode them)";
	return NULL;
}

/* Validates the "source" object. Sets *type and *value (owned by obj).
 * Returns 0, or -1 after answering. */
static int parse_source(struct vtp_ctx *ctx, json_object *source, const char **type, const char **sdp,
			const char **url)
{
	static const struct json_field spec[] = {
		{"type", FIELD_STRING, true},
		{"sdp", FIELD_STRING, false},
		{"url", FIELD_STRING, false},
	};
	const char *why;
	*sdp = *url = NULL;
	if (json_in_check(ctx, source, spec, 3, "source.") < 0)
		return -1;
	*type = json_object_get_string(json_in_get(source, "type"));
	if (strcmp(*type, "sdp") == 0) {
		if (json_in_get(source, "url")) {
			http_problem(ctx, 422, "invalid_value", "source.url does not go with source.type \"sdp\"");
			return -1;
		}
		if (json_in_text(ctx, source, "sdp", "source.", 1, MAX_SDP_BYTES, true, sdp) < 0)
			return -1;
		if (!*sdp) {
			http_problem(ctx, 422, "missing_field", "field \"source.sdp\" is required for type \"sdp\"");
			return -1;
		}
		if ((why = sdp_problem(*sdp))) {
			http_problem(ctx, 422, "invalid_value", "source.sdp %s", why);
			return -1;
		}
	} else if (strcmp(*type, "url") == 0) {
		if (json_in_get(source, "sdp")) {
			http_problem(ctx, 422, "invalid_value", "source.sdp does not go with source.type \"url\"");
			return -1;
		}
		if (json_in_text(ctx, source, "url", "source.", 1, MAX_URL_CHARS, false, url) < 0)
			return -1;
		if (!*url) {
			http_problem(ctx, 422, "missing_field", "field \"source.url\" is required for type \"url\"");
			return -1;
		}
		if ((why = url_problem(*url))) {
			http_problem(ctx, 422, "invalid_value", "source.url %s", why);
			return -1;
		}
	} else {
		http_problem(ctx, 422, "invalid_value", "source.type must be \"sdp\" or \"url\"");
		return -1;
	}
	return 0;
}

/* Validates "profiles" into a PostgreSQL array literal in out. Returns 0 or -1 after answering. */
static int parse_profiles(struct vtp_ctx *ctx, json_object *profiles, struct vtp_buf *out)
{
	size_t n = json_object_array_length(profiles);
	const size_t n_known = sizeof known_profiles / sizeof known_profiles[0];
	if (n < 1 || n > n_known) {
		http_problem(ctx, 422, "invalid_value", "profiles must list 1 to %zu profiles", n_known);
		return -1;
	}
	vtp_buf_puts(out, "{");
	for (size_t i = 0; i < n; i++) {
		json_object *p = json_object_array_get_idx(profiles, i);
		const char *name = json_object_is_type(p, json_type_string) ? json_object_get_string(p) : NULL;
		if (!name) {
			http_problem(ctx, 400, "invalid_type", "profiles must be an array of strings");
			return -1;
		}
		if (!in_list(name, known_profiles, n_known)) {
			http_problem(ctx, 422, "invalid_value", "unknown profile \"%.32s\"; known: 1080p, 720p, 480p, 360p", name);
			return -1;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(name, json_object_get_string(json_object_array_get_idx(profiles, j))) == 0) {
				http_problem(ctx, 422, "invalid_value", "profile \"%s\" is listed twice", name);
				return -1;
			}
		vtp_buf_printf(out, "%s%s", i ? "," : "", name);
	}
	vtp_buf_puts(out, "}");
	return 0;
}

void recordings_start(struct vtp_ctx *ctx)
{
	static const struct json_field spec[] = {
		{"title", FIELD_STRING, true},
		{"room_id", FIELD_STRING, true},
		{"source", FIELD_OBJECT, true},
		{"retention_days", FIELD_INTEGER, false},
		{"profiles", FIELD_ARRAY, false},
	};
	/* The recording and the job that will capture it commit together. */
	static const char sql[] =
		"WITH r AS (INSERT INTO recordings (title, room_id, owner_id, source_type, source_sdp, source_url,"
		"  retention_days, profiles)"
		"  VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($8::text[], '{1080p,720p,480p,360p}'))"
		"  RETURNING *),"
		/* The recorder's child has no database connection to read the source from. */
		" job AS (INSERT INTO jobs (kind, recording_id, priority, payload) SELECT 'record', id, 10,"
		"  jsonb_strip_nulls(jsonb_build_object('source_type', source_type, 'sdp', source_sdp, 'url', source_url))"
		"  FROM r)"
		" SELECT " RECORDING_COLUMNS " FROM r";
	json_object *body = NULL;
	PGresult *res = NULL;
	struct vtp_buf profiles = {0};
	const char *title, *room_id, *type, *sdp, *url;
	char retention[24];

	if (ctx->who.role == VTP_ROLE_STUDENT) {
		http_problem(ctx, 403, "forbidden", "only instructors and admins may start recordings");
		goto out;
	}
	body = json_in_parse(ctx, ctx->req.body.data, ctx->req.body.len);
	if (!body || json_in_check(ctx, body, spec, sizeof spec / sizeof spec[0], "") < 0)
		goto out;
	if (json_in_text(ctx, body, "title", "", 1, 200, false, &title) < 0 ||
	    json_in_text(ctx, body, "room_id", "", 1, 200, false, &room_id) < 0 ||
	    parse_source(ctx, json_in_get(body, "source"), &type, &sdp, &url) < 0)
		goto out;
	json_object *days = json_in_get(body, "retention_days");
	int64_t retention_days = days ? json_object_get_int64(days) : ctx->app->cfg.default_retention_days;
	if (retention_days < 1 || retention_days > 36500) {
		http_problem(ctx, 422, "invalid_value", "retention_days must be between 1 and 36500");
		goto out;
	}
	snprintf(retention, sizeof retention, "%lld", (long long)retention_days);
	json_object *profile_list = json_in_get(body, "profiles");
	if (profile_list && parse_profiles(ctx, profile_list, &profiles) < 0)
		goto out;

	const char *params[] = {title, room_id, ctx->who.sub, type, sdp, url, retention, profile_list ? profiles.data : NULL};
	res = http_query(ctx, sql, 8, params);
	if (!res)
		goto out;
	log_info("recording %s started by %s in room %s", vtp_db_get(res, 0, "id"), ctx->who.sub, room_id);
	http_header(ctx, "Location", "/api/v1/recordings/%s", vtp_db_get(res, 0, "id"));
	recording_answer(ctx, 201, res);
out:
	vtp_buf_free(&profiles);
	PQclear(res);
	if (body)
		json_object_put(body);
}

/* The read of a signed-in caller in one statement: the access check, the recording, its latest jobs and the
 * recorder's report among them (one database round trip instead of three: the API's most frequent request,
 * issue 9's speed target). One lateral subquery reads the jobs for both: PostgreSQL's work per execution was
 * 27.5 us of CPU with a json_agg(... ORDER BY) subquery and a second one for the report, 22 us so. The
 * aggregates see the jobs newest first, as the subquery orders them (jobs_out() sorts them again). */
#define GET_ONE_SQL                                                                                            \
	"SELECT " RECORDING_OBJECT_COLUMNS ", " ACCESS_CAN_READ_DIRECT_SQL("$2", "$3") " AS can_read, x.jobs, x.health" \
	" FROM recordings r CROSS JOIN LATERAL (SELECT string_agg(" JOB_TEXT_SQL ", ',') AS jobs,"            \
	"  ((array_agg(progress_detail) FILTER (WHERE " HEALTH_OK_SQL "))[1])::text AS health"                \
	"  FROM (SELECT id, kind, state, progress, progress_detail FROM jobs WHERE recording_id = r.id"       \
	"   ORDER BY id DESC LIMIT " VTP_STR(MAX_JOBS) ") j) x"                                                 \
	" WHERE r.id = $1 AND r.deleted_at IS NULL"

void recordings_get(struct vtp_ctx *ctx)
{
	static const char sql[] = "SELECT " RECORDING_COLUMNS " FROM recordings r WHERE r.id = $1 AND r.deleted_at IS NULL";
	static const char one_sql[] = GET_ONE_SQL;
	const char *id = ctx->params[0];
	PGresult *res = NULL;
	struct vtp_buf body = {0};
	if (access_is_anonymous(ctx) || ctx->share) {
		/* A share link: its checks and counting are access_check()'s. */
		if ((res = access_query(ctx, id, ACCESS_READ, sql)))
			recording_answer(ctx, 200, res);
		goto out;
	}
	const char *params[] = {id, ctx->who.sub, access_sql_bool(access_is_admin(ctx))};
	if (!(res = http_query(ctx, one_sql, 3, params)))
		goto out;
	if (PQntuples(res) != 1) {
		http_problem(ctx, 404, "recording_not_found", "no recording %s", id);
		goto out;
	}
	if (strcmp(vtp_db_get(res, 0, "can_read"), "t") != 0) {
		/* Not the owner, an admin or a participant: a user share may let them read it, with its limits and
		 * its view counted (access_check(): 403 when used up, 404 when there is none). */
		PQclear(res);
		if ((res = access_query(ctx, id, ACCESS_READ, sql)))
			recording_answer(ctx, 200, res);
		goto out;
	}
	int col[N_COLUMNS];
	find_columns(res, col);
	recording_out(&body, res, 0, col, vtp_db_get(res, 0, "jobs"), vtp_db_get(res, 0, "health"));
	http_json_text(ctx, 200, &body);
out:
	vtp_buf_free(&body);
	PQclear(res);
}

void recordings_stop(struct vtp_ctx *ctx)
{
	/* The recorder learns of the stop through its job's cancel_requested_at
	 * (and the NOTIFY a worker listens for); it finalises the file. */
	static const char sql[] =
		"WITH cur AS (SELECT id, status FROM recordings WHERE id = $1 AND deleted_at IS NULL FOR UPDATE),"
		" upd AS (UPDATE recordings r SET status = 'stopping', stopped_at = clock_timestamp(),"
		"  updated_at = clock_timestamp()"
		"  FROM cur WHERE r.id = cur.id AND cur.status IN ('pending', 'recording')"
		"  RETURNING " RECORDING_COLUMNS "),"
		" signal AS (UPDATE jobs SET cancel_requested_at = now(), updated_at = now()"
		"  WHERE recording_id IN (SELECT id FROM upd) AND kind = 'record'"
		"  AND state IN ('queued', 'running') AND cancel_requested_at IS NULL)"
		" SELECT cur.status AS previous_status, upd.* FROM cur LEFT JOIN upd ON true";
	const char *id = ctx->params[0];
	PGresult *res = access_query(ctx, id, ACCESS_MANAGE, sql);
	if (!res)
		goto out;
	if (!vtp_db_get(res, 0, "id")) {
		http_problem(ctx, 409, "recording_not_active",
			     "the recording is %s; only a pending or recording one can be stopped",
			     vtp_db_get(res, 0, "previous_status"));
		goto out;
	}
	log_info("recording %s stopped by %s", id, ctx->who.sub);
	recording_answer(ctx, 202, res);
out:
	PQclear(res);
}

void recordings_delete(struct vtp_ctx *ctx)
{
	/* One statement, so the soft delete, the cancellation of its work and the
	 * purge job commit together or not at all. */
	static const char sql[] =
		"WITH del AS (UPDATE recordings SET deleted_at = clock_timestamp(), updated_at = clock_timestamp()"
		"  WHERE id = $1 AND deleted_at IS NULL RETURNING id),"
		" dropped AS (UPDATE jobs SET state = 'cancelled', finished_at = now(), updated_at = now(),"
		"  last_error = 'recording deleted'"
		"  WHERE recording_id IN (SELECT id FROM del) AND state = 'queued' RETURNING id),"
		" stopping AS (UPDATE jobs SET cancel_requested_at = now(), updated_at = now()"
		"  WHERE recording_id IN (SELECT id FROM del) AND state = 'running' RETURNING id)"
		" INSERT INTO jobs (kind, recording_id, priority)"
		" SELECT 'purge', id, 50 FROM del RETURNING id";
	const char *id = ctx->params[0];
	PGresult *res = access_query(ctx, id, ACCESS_MANAGE, sql);
	if (!res)
		goto out;
	log_info("recording %s deleted by %s; purge job %s", id, ctx->who.sub, vtp_db_get(res, 0, "id"));
	http_json(ctx, 204, NULL);
out:
	PQclear(res);
}

/* A cursor is "<created_at in microseconds since 1970>.<id>" of the last item
 * on the previous page. */
static int parse_cursor(const char *cursor, char *micros, size_t micros_size, const char **id)
{
	const char *dot = strchr(cursor, '.');
	size_t digits = dot ? (size_t)(dot - cursor) : 0;
	if (digits < 1 || digits >= micros_size || digits > 18 || !route_is_uuid(dot + 1))
		return -1;
	for (size_t i = 0; i < digits; i++)
		if (!isdigit((unsigned char)cursor[i]))
			return -1;
	memcpy(micros, cursor, digits);
	micros[digits] = '\0';
	*id = dot + 1;
	return 0;
}

void recordings_list(struct vtp_ctx *ctx)
{
	static const char *const allowed[] = {"status", "room_id", "owner_id", "q", "limit", "cursor", NULL};
	static const char sql[] =
		"SELECT " RECORDING_COLUMNS " FROM recordings r"
		" WHERE r.deleted_at IS NULL"
		" AND ($1::text IS NULL OR r.status = $1)"
		" AND ($2::text IS NULL OR r.room_id = $2)"
		" AND ($3::text IS NULL OR r.owner_id = $3)"
		" AND ($4::text IS NULL OR r.title ILIKE '%' || $4 || '%')"
		" AND ($5::bigint IS NULL OR (r.created_at, r.id) <"
		"      (timestamptz 'epoch' + $5::bigint * interval '1 microsecond', $6::uuid))"
		" AND " ACCESS_CAN_READ_SQL("$7", "$8")
		" ORDER BY r.created_at DESC, r.id DESC LIMIT $9";
	/* room_id and q hold up to 200 characters, which UTF-8 may spell in 4 bytes each; owner_id is a JWT sub (bytes) */
	char status[32], room_id[200 * 4 + 1], owner_id[VTP_MAX_ID_LEN + 1], q[200 * 4 + 1], cursor[128], micros[24],
		limit_plus_one[24];
	struct vtp_buf pattern = {0}, page = {0};
	PGresult *res = NULL;
	const char *cursor_id = NULL;
	long limit;
	int has_status, has_room, has_owner, has_q, has_cursor;

	char *bad_query = http_query_check(ctx->req.query, allowed);
	if (bad_query) {
		http_problem(ctx, 400, "invalid_query", "%s", bad_query);
		free(bad_query);
		goto out;
	}
	if ((has_status = http_query_filter(ctx, "status", status, sizeof status)) < 0 ||
	    (has_room = http_query_filter(ctx, "room_id", room_id, sizeof room_id)) < 0 ||
	    (has_owner = http_query_filter(ctx, "owner_id", owner_id, sizeof owner_id)) < 0 ||
	    (has_q = http_query_filter(ctx, "q", q, sizeof q)) < 0 ||
	    (has_cursor = http_query_filter(ctx, "cursor", cursor, sizeof cursor)) < 0)
		goto out;
	if (has_status && !in_list(status, statuses, sizeof statuses / sizeof statuses[0])) {
		http_problem(ctx, 400, "invalid_query",
			     "status must be one of pending, recording, stopping, processing, ready, failed");
		goto out;
	}
	if (http_query_limit(ctx, &limit) < 0)
		goto out;
	if (has_cursor && parse_cursor(cursor, micros, sizeof micros, &cursor_id) < 0) {
		http_problem(ctx, 400, "invalid_cursor", "cursor is not one this server returned");
		goto out;
	}
	if (has_q) {
		if (json_in_utf8_length(q) > 200) {
			http_problem(ctx, 400, "invalid_query", "q must be at most 200 characters");
			goto out;
		}
		/* The search is for the text as typed: ILIKE's wildcards are escaped. */
		for (const char *p = q; *p; p++) {
			if (*p == '%' || *p == '_' || *p == '\\')
				vtp_buf_puts(&pattern, "\\");
			vtp_buf_append(&pattern, p, 1);
		}
	}
	snprintf(limit_plus_one, sizeof limit_plus_one, "%ld", limit + 1);
	const char *params[] = {
		has_status ? status : NULL,
		has_room ? room_id : NULL,
		has_owner ? owner_id : NULL,
		has_q ? pattern.data : NULL,
		has_cursor ? micros : NULL,
		has_cursor ? cursor_id : NULL,
		ctx->who.sub,
		access_sql_bool(access_is_admin(ctx)),
		limit_plus_one,
	};
	res = http_query(ctx, sql, 9, params);
	if (!res)
		goto out;
	int rows = PQntuples(res);
	bool more = rows > limit;
	if (more)
		rows = (int)limit;
	/* {"items": [...], "next_cursor": ...}, as http_page() writes it. */
	vtp_buf_puts(&page, "{\"items\":[");
	if (recordings_out(ctx, &page, res, rows) < 0)
		goto out;
	vtp_buf_puts(&page, "]");
	if (more) {
		char *next = xasprintf("%s.%s", vtp_db_get(res, rows - 1, "cursor_us"), vtp_db_get(res, rows - 1, "id"));
		json_out_string(&page, "next_cursor", next);
		free(next);
	} else {
		json_out_string(&page, "next_cursor", NULL);
	}
	vtp_buf_puts(&page, "}");
	http_json_text(ctx, 200, &page);
out:
	vtp_buf_free(&page);
	vtp_buf_free(&pattern);
	PQclear(res);
}
