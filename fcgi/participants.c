/* participants.c: live attendance of a recording: join, leave and stats events, and the list. */
#include "routes.h"

#include "../lib/db.h"
#include "access.h"
#include "json_in.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Totals stop at the largest bigint instead of overflowing into an error:
 * a client may report up to 2^53 per connection over many connections. */
#define SATURATED_SUM(A, B) "LEAST((" A ")::numeric + (" B "), 9223372036854775807)::bigint"

/* Counters come from an SFU as running totals for the participant's current
 * connection. A join after a leave opens a new connection, so the totals of
 * the closed one move to *_closed and the running ones start again. */
static const char join_sql[] =
	"INSERT INTO recording_participants AS p (recording_id, user_id, display_name, present_since)"
	" VALUES ($1, $2, $3, now())"
	" ON CONFLICT (recording_id, user_id) DO UPDATE SET"
	"  display_name = COALESCE(EXCLUDED.display_name, p.display_name),"
	"  present_since = COALESCE(p.present_since, now()),"
	"  left_at = NULL,"
	"  bytes_sent_closed = " SATURATED_SUM("p.bytes_sent_closed", "CASE WHEN p.present_since IS NULL THEN p.bytes_sent ELSE 0 END") ","
	"  bytes_received_closed = " SATURATED_SUM("p.bytes_received_closed", "CASE WHEN p.present_since IS NULL THEN p.bytes_received ELSE 0 END") ","
	"  packets_lost_closed = " SATURATED_SUM("p.packets_lost_closed", "CASE WHEN p.present_since IS NULL THEN p.packets_lost ELSE 0 END") ","
	"  bytes_sent = CASE WHEN p.present_since IS NULL THEN 0 ELSE p.bytes_sent END,"
	"  bytes_received = CASE WHEN p.present_since IS NULL THEN 0 ELSE p.bytes_received END,"
	"  packets_lost = CASE WHEN p.present_since IS NULL THEN 0 ELSE p.packets_lost END,"
	"  updated_at = now()";

/* A leave without a join (a lost join event) still records that they were there. */
static const char leave_sql[] =
	"INSERT INTO recording_participants AS p (recording_id, user_id, display_name, left_at)"
	" VALUES ($1, $2, $3, now())"
	" ON CONFLICT (recording_id, user_id) DO UPDATE SET"
	"  display_name = COALESCE(EXCLUDED.display_name, p.display_name),"
	"  total_s = p.total_s + COALESCE(extract(epoch FROM now() - p.present_since)::double precision, 0),"
	"  present_since = NULL,"
	"  left_at = now(),"
	"  updated_at = now()";

static const char stats_sql[] =
	"INSERT INTO recording_participants AS p (recording_id, user_id, display_name, present_since,"
	"  bytes_sent, bytes_received, packets_lost)"
	" VALUES ($1, $2, $3, now(), COALESCE($4::bigint, 0), COALESCE($5::bigint, 0), COALESCE($6::bigint, 0))"
	" ON CONFLICT (recording_id, user_id) DO UPDATE SET"
	"  display_name = COALESCE(EXCLUDED.display_name, p.display_name),"
	"  bytes_sent = COALESCE($4::bigint, p.bytes_sent),"
	"  bytes_received = COALESCE($5::bigint, p.bytes_received),"
	"  packets_lost = COALESCE($6::bigint, p.packets_lost),"
	"  updated_at = now()";

/* Reads an optional non-negative counter (at most 2^53) into buf as text.
 * Returns 0 (buf "" when absent) or -1 after answering. */
static int read_counter(struct vtp_ctx *ctx, json_object *body, const char *name, char *buf, size_t size)
{
	json_object *v = json_in_get(body, name);
	buf[0] = '\0';
	if (!v)
		return 0;
	int64_t n = json_object_get_int64(v);
	if (n < 0 || n > (1LL << 53)) {
		http_problem(ctx, 422, "invalid_value", "%s must be an integer from 0 to 2^53", name);
		return -1;
	}
	snprintf(buf, size, "%lld", (long long)n);
	return 0;
}

void participants_post(struct vtp_ctx *ctx)
{
	static const struct json_field spec[] = {
		{"user_id", FIELD_STRING, true},     {"display_name", FIELD_STRING, false},
		{"event", FIELD_STRING, true},	     {"bytes_sent", FIELD_INTEGER, false},
		{"bytes_received", FIELD_INTEGER, false}, {"packets_lost", FIELD_INTEGER, false},
	};
	const char *id = ctx->params[0];
	json_object *body = NULL;
	PGresult *res = NULL;
	const char *user_id, *display_name, *sql;
	char sent[24], received[24], lost[24];

	if (access_check(ctx, id, ACCESS_MANAGE) < 0)
		goto out;
	body = json_in_parse(ctx, ctx->req.body.data, ctx->req.body.len);
	if (!body || json_in_check(ctx, body, spec, sizeof spec / sizeof spec[0], "") < 0)
		goto out;
	if (json_in_text(ctx, body, "user_id", "", 1, 200, false, &user_id) < 0 ||
	    json_in_text(ctx, body, "display_name", "", 0, 200, false, &display_name) < 0 ||
	    read_counter(ctx, body, "bytes_sent", sent, sizeof sent) < 0 ||
	    read_counter(ctx, body, "bytes_received", received, sizeof received) < 0 ||
	    read_counter(ctx, body, "packets_lost", lost, sizeof lost) < 0)
		goto out;
	const char *event = json_object_get_string(json_in_get(body, "event"));
	bool has_counters = sent[0] || received[0] || lost[0];
	if (strcmp(event, "join") == 0)
		sql = join_sql;
	else if (strcmp(event, "leave") == 0)
		sql = leave_sql;
	else if (strcmp(event, "stats") == 0)
		sql = stats_sql;
	else {
		http_problem(ctx, 422, "invalid_value", "event must be \"join\", \"leave\" or \"stats\"");
		goto out;
	}
	if (has_counters && sql != stats_sql) {
		http_problem(ctx, 422, "invalid_value", "counters are reported with the \"stats\" event");
		goto out;
	}
	const char *params[] = {id, user_id, display_name, sent[0] ? sent : NULL, received[0] ? received : NULL,
				lost[0] ? lost : NULL};
	res = http_query(ctx, sql, sql == stats_sql ? 6 : 3, params);
	if (!res)
		goto out;
	http_json(ctx, 204, NULL);
out:
	PQclear(res);
	if (body)
		json_object_put(body);
}

void participants_list(struct vtp_ctx *ctx)
{
	static const char sql[] =
		"SELECT user_id, display_name, vtp_rfc3339(joined_at) AS joined_at, vtp_rfc3339(left_at) AS left_at,"
		" total_s + COALESCE(extract(epoch FROM now() - present_since)::double precision, 0) AS total_s,"
		" " SATURATED_SUM("bytes_sent", "bytes_sent_closed") " AS bytes_sent,"
		" " SATURATED_SUM("bytes_received", "bytes_received_closed") " AS bytes_received,"
		" " SATURATED_SUM("packets_lost", "packets_lost_closed") " AS packets_lost"
		" FROM recording_participants p WHERE recording_id = $1 ORDER BY p.joined_at, p.user_id";
	const char *id = ctx->params[0];
	PGresult *res = NULL;
	/* Not access_query(): an empty list is an answer, not a missing recording. */
	if (access_check(ctx, id, ACCESS_MANAGE) < 0)
		goto out;
	const char *params[] = {id};
	res = http_query(ctx, sql, 1, params);
	if (!res)
		goto out;
	json_object *items = json_object_new_array();
	for (int i = 0; i < PQntuples(res); i++) {
		json_object *p = json_object_new_object();
		const char *name = vtp_db_get(res, i, "display_name");
		const char *left = vtp_db_get(res, i, "left_at");
		json_object_object_add(p, "user_id", json_object_new_string(vtp_db_get(res, i, "user_id")));
		json_object_object_add(p, "display_name", name ? json_object_new_string(name) : NULL);
		json_object_object_add(p, "joined_at", json_object_new_string(vtp_db_get(res, i, "joined_at")));
		json_object_object_add(p, "left_at", left ? json_object_new_string(left) : NULL);
		json_object_object_add(p, "total_s", json_object_new_double(strtod(vtp_db_get(res, i, "total_s"), NULL)));
		json_object_object_add(p, "bytes_sent", json_object_new_int64(strtoll(vtp_db_get(res, i, "bytes_sent"), NULL, 10)));
		json_object_object_add(p, "bytes_received",
				       json_object_new_int64(strtoll(vtp_db_get(res, i, "bytes_received"), NULL, 10)));
		json_object_object_add(p, "packets_lost", json_object_new_int64(strtoll(vtp_db_get(res, i, "packets_lost"), NULL, 10)));
		json_object_array_add(items, p);
	}
	json_object *o = json_object_new_object();
	json_object_object_add(o, "items", items);
	http_json(ctx, 200, o);
out:
	PQclear(res);
}
