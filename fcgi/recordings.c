/* recordings.c: start, stop, list, get and delete recordings (the recording-control API). */
#include "routes.h"

#include "../lib/db.h"
#include "../lib/log.h"
#include "access.h"
#include "app.h"
#include "json_in.h"
#include "recording_json.h"
#include "router.h"
#include "sdp.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_URL_CHARS 2048

static const char *const known_profiles[] = {"1080p", "720p", "480p", "360p"};
static const char *const statuses[] = {"pending", "recording", "stopping", "processing", "ready", "failed"};

static bool in_list(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

static json_object *string_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
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

/* A URL as we show it: without "user:password@" (stream keys stay private). */
static json_object *public_url(const char *url)
{
	const char *scheme_end = strstr(url, "://");
	if (!scheme_end)
		return json_object_new_string(url);
	const char *authority = scheme_end + 3;
	const char *host = url_host(authority);
	char *shown = xasprintf("%.*s%s", (int)(authority - url), url, host);
	json_object *o = json_object_new_string(shown);
	free(shown);
	return o;
}

/* Builds one recording object from row of res; jobs (owned, may be NULL) is
 * its "jobs" array. The caller owns the result. */
static json_object *recording_json(const PGresult *res, int row, json_object *jobs)
{
	json_object *o = json_object_new_object();
	const char *id = vtp_db_get(res, row, "id");
	const char *status = vtp_db_get(res, row, "status");
	const char *duration = vtp_db_get(res, row, "duration_s");
	json_object_object_add(o, "id", json_object_new_string(id));
	json_object_object_add(o, "title", json_object_new_string(vtp_db_get(res, row, "title")));
	json_object_object_add(o, "room_id", json_object_new_string(vtp_db_get(res, row, "room_id")));
	json_object_object_add(o, "owner_id", json_object_new_string(vtp_db_get(res, row, "owner_id")));
	json_object_object_add(o, "status", json_object_new_string(status));
	json_object_object_add(o, "created_at", string_or_null(vtp_db_get(res, row, "created_at")));
	json_object_object_add(o, "started_at", string_or_null(vtp_db_get(res, row, "started_at")));
	json_object_object_add(o, "stopped_at", string_or_null(vtp_db_get(res, row, "stopped_at")));
	json_object_object_add(o, "updated_at", string_or_null(vtp_db_get(res, row, "updated_at")));
	json_object_object_add(o, "duration_s", duration ? json_object_new_double(strtod(duration, NULL)) : NULL);
	json_object_object_add(o, "size_bytes", json_object_new_int64(strtoll(vtp_db_get(res, row, "size_bytes"), NULL, 10)));
	json_object *source = json_object_new_object();
	const char *url = vtp_db_get(res, row, "source_url");
	json_object_object_add(source, "type", json_object_new_string(vtp_db_get(res, row, "source_type")));
	if (url)
		json_object_object_add(source, "url", public_url(url));
	json_object_object_add(o, "source", source);
	json_object_object_add(o, "retention_days", json_object_new_int(atoi(vtp_db_get(res, row, "retention_days"))));
	/* The HLS ladder that the transcode job published (sql/005_hls.sql); a
	 * recording has a stream_url once it has one rendition. */
	const char *renditions_text = vtp_db_get(res, row, "renditions");
	json_object *renditions = renditions_text ? json_tokener_parse(renditions_text) : NULL;
	if (!json_object_is_type(renditions, json_type_array)) {
		json_object_put(renditions);
		renditions = json_object_new_array();
	}
	bool streamable = json_object_array_length(renditions) > 0;
	json_object_object_add(o, "renditions", renditions);
	/* Pictures and streams come with the media pipeline; until there is
	 * something to point at, null. The poster exists once the thumbnail
	 * job has chosen it (fcgi/thumbnail.c serves it). */
	if (strcmp(vtp_db_get(res, row, "has_poster"), "t") == 0) {
		char *thumb = xasprintf("/api/v1/recordings/%s/thumbnail", id);
		json_object_object_add(o, "thumbnail_url", json_object_new_string(thumb));
		free(thumb);
	} else {
		json_object_object_add(o, "thumbnail_url", NULL);
	}
	if (streamable) {
		char *stream = xasprintf("/api/v1/recordings/%s/stream/playlist.m3u8", id);
		json_object_object_add(o, "stream_url", json_object_new_string(stream));
		free(stream);
	} else {
		json_object_object_add(o, "stream_url", NULL);
	}
	json_object_object_add(o, "jobs", jobs ? jobs : json_object_new_array());
	return o;
}

/* Fetches the latest jobs of the recordings in res and returns an object
 * mapping recording id -> jobs array (caller puts), or NULL after answering.
 * A running recorder's health report goes under the key "health:<recording id>". */
static json_object *jobs_by_recording(struct vtp_ctx *ctx, const PGresult *recordings)
{
	static const char sql[] =
		"SELECT recording_id, id, kind, state, progress,"
		" CASE WHEN kind = 'record' AND state = 'running' THEN progress_detail END AS live FROM ("
		" SELECT j.*, row_number() OVER (PARTITION BY recording_id ORDER BY id DESC) AS n"
		" FROM jobs j WHERE recording_id = ANY ($1::uuid[])) latest"
		" WHERE n <= 10 ORDER BY recording_id, id"; /* the latest 10 per recording */
	struct vtp_buf ids = {0};
	PGresult *res = NULL;
	json_object *map = NULL;
	vtp_buf_puts(&ids, "{");
	for (int i = 0; i < PQntuples(recordings); i++)
		vtp_buf_printf(&ids, "%s%s", i ? "," : "", vtp_db_get(recordings, i, "id"));
	vtp_buf_puts(&ids, "}");
	const char *params[] = {ids.data};
	res = http_query(ctx, sql, 1, params);
	if (!res)
		goto out;
	map = json_object_new_object();
	for (int i = 0; i < PQntuples(res); i++) {
		const char *rid = vtp_db_get(res, i, "recording_id");
		json_object *list;
		if (!json_object_object_get_ex(map, rid, &list)) {
			list = json_object_new_array();
			json_object_object_add(map, rid, list);
		}
		json_object *job = json_object_new_object();
		json_object_object_add(job, "id", json_object_new_int64(strtoll(vtp_db_get(res, i, "id"), NULL, 10)));
		json_object_object_add(job, "kind", json_object_new_string(vtp_db_get(res, i, "kind")));
		json_object_object_add(job, "state", json_object_new_string(vtp_db_get(res, i, "state")));
		json_object_object_add(job, "progress", json_object_new_double(strtod(vtp_db_get(res, i, "progress"), NULL)));
		json_object_array_add(list, job);
		const char *live = vtp_db_get(res, i, "live");
		json_object *health = live ? json_tokener_parse(live) : NULL;
		if (json_object_is_type(health, json_type_object)) {
			char key[64];
			snprintf(key, sizeof key, "health:%s", rid);
			json_object_object_add(map, key, health);
		} else {
			json_object_put(health);
		}
	}
out:
	vtp_buf_free(&ids);
	PQclear(res);
	return map;
}

/* Adds "health" to a recording object o: the recorder's report (owned, may be
 * NULL; worker/record.c writes it every second) while the recording is live,
 * else null. */
static void add_health(json_object *o, const char *status, json_object *health)
{
	bool live = strcmp(status, "recording") == 0 || strcmp(status, "stopping") == 0;
	if (!live || !json_object_is_type(health, json_type_object)) {
		json_object_put(health);
		health = NULL;
	}
	json_object_object_add(o, "health", health);
}

/* Turns rows of recordings into an array of recording objects (caller puts),
 * or NULL after answering. */
static json_object *recordings_json(struct vtp_ctx *ctx, const PGresult *res, int rows)
{
	json_object *jobs = jobs_by_recording(ctx, res);
	if (!jobs)
		return NULL;
	json_object *items = json_object_new_array();
	for (int i = 0; i < rows; i++) {
		json_object *list = NULL, *health = NULL;
		if (json_object_object_get_ex(jobs, vtp_db_get(res, i, "id"), &list))
			json_object_get(list);
		json_object *o = recording_json(res, i, list);
		char key[64];
		snprintf(key, sizeof key, "health:%s", vtp_db_get(res, i, "id"));
		if (json_object_object_get_ex(jobs, key, &health))
			json_object_get(health);
		add_health(o, vtp_db_get(res, i, "status"), health);
		json_object_array_add(items, o);
	}
	json_object_put(jobs);
	return items;
}

void recording_answer(struct vtp_ctx *ctx, int status, const PGresult *res)
{
	json_object *items = recordings_json(ctx, res, 1);
	if (!items)
		return;
	json_object *one = json_object_get(json_object_array_get_idx(items, 0));
	json_object_put(items);
	http_json(ctx, status, one);
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

/* The read of a signed-in caller in one statement: the access check, the recording and its latest 10 jobs
 * (one database round trip instead of three: the API's most frequent request, issue 9's speed target). */
#define GET_ONE_SQL                                                                                            \
	"SELECT " RECORDING_COLUMNS ", " ACCESS_CAN_READ_SQL("$2", "$3") " AS can_read,"                        \
	" (SELECT json_agg(json_build_object('id', j.id, 'kind', j.kind, 'state', j.state,"                     \
	"   'progress', j.progress::double precision) ORDER BY j.id)"                                          \
	"  FROM (SELECT id, kind, state, progress FROM jobs WHERE recording_id = r.id ORDER BY id DESC LIMIT 10) j"\
	" )::text AS jobs,"                                                                                     \
	" (SELECT progress_detail FROM jobs WHERE recording_id = r.id AND kind = 'record' AND state = 'running'" \
	"  ORDER BY id DESC LIMIT 1)::text AS health FROM recordings r WHERE r.id = $1 AND r.deleted_at IS NULL"

void recordings_get(struct vtp_ctx *ctx)
{
	static const char sql[] = "SELECT " RECORDING_COLUMNS " FROM recordings r WHERE r.id = $1 AND r.deleted_at IS NULL";
	static const char one_sql[] = GET_ONE_SQL;
	const char *id = ctx->params[0];
	PGresult *res = NULL;
	if (access_is_anonymous(ctx) || ctx->share) {
		/* A share link: its checks and counting are access_check()'s. */
		if ((res = access_query(ctx, id, ACCESS_READ, sql)))
			recording_answer(ctx, 200, res);
		goto out;
	}
	const char *params[] = {id, ctx->who.sub, access_sql_bool(access_is_admin(ctx))};
	if (!(res = http_query(ctx, one_sql, 3, params)))
		goto out;
	if (PQntuples(res) != 1 || strcmp(vtp_db_get(res, 0, "can_read"), "t") != 0) {
		http_problem(ctx, 404, "recording_not_found", "no recording %s", id);
		goto out;
	}
	const char *jobs_text = vtp_db_get(res, 0, "jobs");
	json_object *jobs = jobs_text ? json_tokener_parse(jobs_text) : NULL;
	if (!json_object_is_type(jobs, json_type_array)) {
		json_object_put(jobs);
		jobs = NULL;
	}
	const char *health = vtp_db_get(res, 0, "health");
	json_object *o = recording_json(res, 0, jobs);
	add_health(o, vtp_db_get(res, 0, "status"), health ? json_tokener_parse(health) : NULL);
	http_json(ctx, 200, o);
out:
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
	char status[32], room_id[256], owner_id[256], q[256], cursor[128], micros[24], limit_plus_one[24];
	struct vtp_buf pattern = {0};
	PGresult *res = NULL;
	json_object *items = NULL;
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
	items = recordings_json(ctx, res, rows);
	if (!items)
		goto out;
	char *next = more ? xasprintf("%s.%s", vtp_db_get(res, rows - 1, "cursor_us"), vtp_db_get(res, rows - 1, "id"))
			  : NULL;
	http_page(ctx, items, next);
	items = NULL;
	free(next);
out:
	if (items)
		json_object_put(items);
	vtp_buf_free(&pattern);
	PQclear(res);
}
