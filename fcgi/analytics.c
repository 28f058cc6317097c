/* analytics.c: a recording's playback analytics for its owner, and the per-student list (JSON or CSV). */
#include "routes.h"

#include "../lib/db.h"
#include "access.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The metric definitions live in docs/analytics.md; these thresholds are theirs. */
#define VIEW_MIN_S "10"		/* a session counts as a view once it has played this long */
#define COMPLETED_COVERAGE "0.9" /* watched share of the duration that counts as completed */
#define BUCKET_S "5"		/* retention bucket width */

/* The whole answer is built by PostgreSQL as one JSON document: the
 * aggregates read the per-session rows (merged ranges) and the bucket
 * counters, never the raw events, so the cost grows with sessions, not
 * events. A session counts on the UTC day it started. */
static const char summary_sql[] =
	"WITH s AS MATERIALIZED (SELECT user_id, watch_time_s, watched_s, started_at, watch_time_s >= " VIEW_MIN_S
	"   AS is_view FROM playback_sessions WHERE recording_id = $1),"
	" d AS (SELECT duration_s FROM recordings WHERE id = $1),"
	" b AS (SELECT bucket, sum(viewers)::bigint AS viewers FROM playback_buckets WHERE recording_id = $1"
	"   GROUP BY bucket),"
	" n AS (SELECT COALESCE(ceil((SELECT duration_s FROM d) / " BUCKET_S ")::integer,"
	"   (SELECT max(bucket) + 1 FROM b), 0) AS buckets),"
	" t AS (SELECT count(*) FILTER (WHERE is_view) AS views,"
	"   count(DISTINCT user_id) FILTER (WHERE is_view) AS unique_viewers,"
	"   COALESCE(sum(watch_time_s), 0) AS watch_time_s,"
	"   COALESCE(sum(watch_time_s) FILTER (WHERE is_view), 0) AS view_time_s,"
	"   count(*) FILTER (WHERE is_view AND watched_s >= " COMPLETED_COVERAGE " * (SELECT duration_s FROM d))"
	"    AS completed FROM s)"
	" SELECT json_build_object("
	"  'views', t.views, 'unique_viewers', t.unique_viewers, 'watch_time_s', round(t.watch_time_s::numeric, 3),"
	"  'avg_view_s', CASE WHEN t.views > 0 THEN round((t.view_time_s / t.views)::numeric, 3) ELSE 0 END,"
	"  'completion_rate', CASE WHEN (SELECT duration_s FROM d) IS NULL THEN NULL WHEN t.views = 0 THEN 0"
	"   ELSE round(t.completed::numeric / t.views, 4) END,"
	"  'retention', COALESCE((SELECT json_agg(json_build_object('t', k * " BUCKET_S ","
	"    'viewers', COALESCE(b.viewers, 0))"
	"    ORDER BY k) FROM generate_series(0, (SELECT buckets FROM n) - 1) k LEFT JOIN b ON b.bucket = k), '[]'),"
	"  'by_day', COALESCE((SELECT json_agg(json_build_object('date', day, 'views', views, 'watch_time_s', wt)"
	"    ORDER BY day) FROM (SELECT to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,"
	"    count(*) FILTER (WHERE is_view) AS views, round(sum(watch_time_s)::numeric, 3) AS wt"
	"    FROM s GROUP BY 1) x),"
	"   '[]'))::text AS doc FROM t";

/* Live attendance (recording_participants) joined with recording views
 * (playback_viewers, every session of a user merged): one row per person. */
static const char by_user_sql[] =
	"SELECT COALESCE(p.user_id, v.user_id) AS user_id, p.display_name, p.user_id IS NOT NULL AS attended_live,"
	" COALESCE(p.total_s + COALESCE(extract(epoch FROM now() - p.present_since)::double precision, 0), 0)"
	"  AS live_s,"
	" COALESCE(v.sessions, 0) AS sessions, round(COALESCE(v.watch_time_s, 0)::numeric, 3) AS watch_time_s,"
	" round(COALESCE(v.watched_s, 0)::numeric, 3) AS watched_s,"
	" round(LEAST(1, COALESCE(v.watched_s, 0) / NULLIF(r.duration_s, 0))::numeric, 4) AS coverage,"
	" COALESCE(v.watched_s >= " COMPLETED_COVERAGE " * r.duration_s, false) AS completed,"
	" vtp_rfc3339(v.last_at) AS last_watched_at"
	" FROM (SELECT * FROM recording_participants WHERE recording_id = $1) p"
	" FULL JOIN (SELECT * FROM playback_viewers WHERE recording_id = $1) v ON v.user_id = p.user_id"
	" CROSS JOIN (SELECT duration_s FROM recordings WHERE id = $1) r"
	" ORDER BY 1";

static const char *const by_user_columns[] = {"user_id",      "display_name", "attended_live", "live_s",
					      "sessions",     "watch_time_s", "watched_s",     "coverage",
					      "completed",    "last_watched_at"};
#define N_COLUMNS (sizeof by_user_columns / sizeof by_user_columns[0])

/* True when the client asks for CSV in its Accept header. */
static bool wants_csv(const struct vtp_ctx *ctx)
{
	const char *accept = http_param(ctx, "HTTP_ACCEPT");
	return accept && strstr(accept, "text/csv") != NULL;
}

/* Appends one CSV field (RFC 4180): quoted when it holds a comma, quote or
 * line break; a leading =, +, - or @ is prefixed with ' so that spreadsheets
 * do not run a display name as a formula. */
static void csv_field(struct vtp_buf *out, const char *v)
{
	if (!v)
		return;
	bool formula = v[0] != '\0' && strchr("=+-@", v[0]) != NULL;
	if (!formula && !strpbrk(v, ",\"\r\n")) {
		vtp_buf_puts(out, v);
		return;
	}
	vtp_buf_puts(out, "\"");
	if (formula)
		vtp_buf_puts(out, "'");
	for (const char *p = v; *p; p++) {
		if (*p == '"')
			vtp_buf_puts(out, "\"\"");
		else
			vtp_buf_append(out, p, 1);
	}
	vtp_buf_puts(out, "\"");
}

static void answer_csv(struct vtp_ctx *ctx, const char *id, PGresult *res)
{
	ctx->resp.status = 200;
	vtp_buf_reset(&ctx->resp.body);
	for (size_t c = 0; c < N_COLUMNS; c++)
		vtp_buf_printf(&ctx->resp.body, "%s%s", c ? "," : "", by_user_columns[c]);
	vtp_buf_puts(&ctx->resp.body, "\r\n");
	for (int i = 0; i < PQntuples(res); i++) {
		for (size_t c = 0; c < N_COLUMNS; c++) {
			const char *v = vtp_db_get(res, i, by_user_columns[c]);
			if (c)
				vtp_buf_puts(&ctx->resp.body, ",");
			const char *name = by_user_columns[c];
			if (v && (strcmp(name, "attended_live") == 0 || strcmp(name, "completed") == 0))
				v = strcmp(v, "t") == 0 ? "true" : "false";
			csv_field(&ctx->resp.body, v);
		}
		vtp_buf_puts(&ctx->resp.body, "\r\n");
	}
	http_header(ctx, "Content-Type", "text/csv; charset=utf-8; header=present");
	http_header(ctx, "Content-Disposition", "attachment; filename=\"viewers-%s.csv\"", id);
}

static void answer_json(struct vtp_ctx *ctx, PGresult *res)
{
	json_object *items = json_object_new_array();
	for (int i = 0; i < PQntuples(res); i++) {
		json_object *o = json_object_new_object();
		const char *name = vtp_db_get(res, i, "display_name");
		const char *coverage = vtp_db_get(res, i, "coverage");
		const char *last = vtp_db_get(res, i, "last_watched_at");
		json_object_object_add(o, "user_id", json_object_new_string(vtp_db_get(res, i, "user_id")));
		json_object_object_add(o, "display_name", name ? json_object_new_string(name) : NULL);
		json_object_object_add(o, "attended_live",
				       json_object_new_boolean(strcmp(vtp_db_get(res, i, "attended_live"), "t") == 0));
		json_object_object_add(o, "live_s", json_object_new_double(strtod(vtp_db_get(res, i, "live_s"), NULL)));
		json_object_object_add(o, "sessions", json_object_new_int(atoi(vtp_db_get(res, i, "sessions"))));
		json_object_object_add(o, "watch_time_s",
				       json_object_new_double(strtod(vtp_db_get(res, i, "watch_time_s"), NULL)));
		json_object_object_add(o, "watched_s",
				       json_object_new_double(strtod(vtp_db_get(res, i, "watched_s"), NULL)));
		json_object_object_add(o, "coverage", coverage ? json_object_new_double(strtod(coverage, NULL)) : NULL);
		json_object_object_add(o, "completed",
				       json_object_new_boolean(strcmp(vtp_db_get(res, i, "completed"), "t") == 0));
		json_object_object_add(o, "last_watched_at", last ? json_object_new_string(last) : NULL);
		json_object_array_add(items, o);
	}
	json_object *o = json_object_new_object();
	json_object_object_add(o, "items", items);
	http_json(ctx, 200, o);
}

void analytics_get(struct vtp_ctx *ctx)
{
	static const char *const allowed[] = {"by", NULL};
	const char *id = ctx->params[0];
	PGresult *res = NULL;
	json_object *doc = NULL;
	char by[16];

	if (http_query_only(ctx, allowed) < 0)
		goto out;
	int has_by = http_query_filter(ctx, "by", by, sizeof by);
	if (has_by < 0)
		goto out;
	if (has_by && strcmp(by, "user") != 0) {
		http_problem(ctx, 400, "invalid_query", "by must be \"user\"");
		goto out;
	}
	if (access_check(ctx, id, ACCESS_MANAGE) < 0)
		goto out;
	const char *params[] = {id};
	res = http_query(ctx, has_by ? by_user_sql : summary_sql, 1, params);
	if (!res)
		goto out;
	if (has_by) {
		if (wants_csv(ctx))
			answer_csv(ctx, id, res);
		else
			answer_json(ctx, res);
		goto out;
	}
	if (PQntuples(res) != 1 || !(doc = json_tokener_parse(vtp_db_get(res, 0, "doc")))) {
		http_problem(ctx, 500, "internal_error", "the request could not be completed");
		goto out;
	}
	http_json(ctx, 200, doc);
	doc = NULL;
out:
	if (doc)
		json_object_put(doc);
	PQclear(res);
}
