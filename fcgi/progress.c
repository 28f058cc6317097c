/* progress.c: playback progress of a recording: players report events (merged server-side), viewers resume. */
#include "routes.h"

#include "../lib/db.h"
#include "access.h"
#include "json_in.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A watched or covered fraction at or above this counts as completed (docs/analytics.md). */
#define COMPLETED_COVERAGE 0.9

/* Applies one event: $1 recording, $2 session, $3 sub ('' for a share-link viewer), $4 the share that let the
 * viewer in (NULL by identity), $5 event, $6 position, $7..$8 range, $9 rate. */
#define APPLY_SQL                                                                                              \
	"vtp_progress_apply($1, $2, NULLIF($3, ''), $4::uuid, $5, $6::double precision, $7::double precision,"   \
	" $8::double precision, $9::double precision)"

/* "Session SESSION of recording r was first used by another viewer": another user than SUB, or, for an
 * anonymous viewer (SUB = ''), another share than SHARE: share-link viewers have no user id to tell them apart. */
#define SESSION_CONFLICT_SQL(SESSION, SUB, SHARE)                                                              \
	"EXISTS (SELECT 1 FROM playback_sessions o WHERE o.recording_id = r.id AND o.session_id = " SESSION     \
	" AND (o.user_id IS DISTINCT FROM NULLIF(" SUB ", '')"                                                  \
	" OR (o.user_id IS NULL AND o.share_id IS DISTINCT FROM " SHARE "::uuid)))"

#define SESSION_ID_RULE "session_id must be 8 to 64 characters of A-Z, a-z, 0-9, _ and -"

/* 8 to 64 characters of [A-Za-z0-9_-]: a UUID or any opaque id a player makes up. */
static bool valid_session_id(const char *s)
{
	size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");
	return n >= 8 && n <= 64 && s[n] == '\0';
}

/* Reads an optional number field into *out (NAN when absent), from 0 to 10^7
 * (seconds, or a playback rate checked further by the caller). Returns 0 or
 * -1 after answering. */
static int read_seconds(struct vtp_ctx *ctx, json_object *body, const char *name, double *out)
{
	json_object *v = json_in_get(body, name);
	*out = NAN;
	if (!v)
		return 0;
	*out = json_object_get_double(v);
	if (*out < 0 || *out > 1e7) {
		http_problem(ctx, 422, "invalid_value", "%s must be a number of seconds from 0 to 10000000", name);
		return -1;
	}
	return 0;
}

/* Formats a number for a SQL parameter into buf; NULL (SQL NULL) for NAN. */
static const char *sql_number(double v, char *buf, size_t size)
{
	if (isnan(v))
		return NULL;
	snprintf(buf, size, "%.17g", v);
	return buf;
}

void progress_post(struct vtp_ctx *ctx)
{
	static const struct json_field spec[] = {
		{"session_id", FIELD_STRING, true}, {"event", FIELD_STRING, true},
		{"position_s", FIELD_NUMBER, true}, {"from_s", FIELD_NUMBER, false},
		{"to_s", FIELD_NUMBER, false},	    {"playback_rate", FIELD_NUMBER, false},
	};
	static const char *const events[] = {"play", "pause", "seek", "heartbeat", "ended"};
	/* Players report every few seconds, so the common case (a caller who
	 * may read the recording by identity) is checked and applied in one
	 * round trip; NULL means "not by identity": access_check() then
	 * answers, or lets a share link in. */
	static const char fast_sql[] = "SELECT CASE WHEN " ACCESS_CAN_READ_SQL("$3", "$10") " THEN " APPLY_SQL
				       " END AS outcome FROM recordings r WHERE r.id = $1 AND r.deleted_at IS NULL";
	/* vtp_progress_apply() tells users apart; two share-link viewers are
	 * told apart by their shares here, before it writes. */
	static const char share_sql[] = "SELECT CASE WHEN " SESSION_CONFLICT_SQL("$2", "$3", "$4") " THEN 'session_conflict' ELSE " APPLY_SQL
					" END AS outcome FROM recordings r WHERE r.id = $1";
	const char *id = ctx->params[0];
	json_object *body = NULL;
	PGresult *res = NULL;
	double position, from, to, rate;
	struct access_share share;
	char position_buf[32], from_buf[32], to_buf[32], rate_buf[32];

	body = json_in_parse(ctx, ctx->req.body.data, ctx->req.body.len);
	if (!body || json_in_check(ctx, body, spec, sizeof spec / sizeof spec[0], "") < 0)
		goto out;
	const char *session = json_object_get_string(json_in_get(body, "session_id"));
	const char *event = json_object_get_string(json_in_get(body, "event"));
	if (!valid_session_id(session)) {
		http_problem(ctx, 422, "invalid_value", SESSION_ID_RULE);
		goto out;
	}
	size_t e = 0;
	while (e < sizeof events / sizeof events[0] && strcmp(events[e], event) != 0)
		e++;
	if (e == sizeof events / sizeof events[0]) {
		http_problem(ctx, 422, "invalid_value", "event must be play, pause, seek, heartbeat or ended");
		goto out;
	}
	if (read_seconds(ctx, body, "position_s", &position) < 0 || read_seconds(ctx, body, "from_s", &from) < 0 ||
	    read_seconds(ctx, body, "to_s", &to) < 0 || read_seconds(ctx, body, "playback_rate", &rate) < 0)
		goto out;
	if (isnan(rate))
		rate = 1;
	if (rate < 0.0625 || rate > 16) {
		http_problem(ctx, 422, "invalid_value", "playback_rate must be from 0.0625 to 16");
		goto out;
	}
	/* A range comes whole: both ends, in order. heartbeat must carry the
	 * range watched since the last report; play has none. */
	if (isnan(from) != isnan(to)) {
		http_problem(ctx, 422, "invalid_value", "from_s and to_s come together");
		goto out;
	}
	if (!isnan(from) && from > to) {
		http_problem(ctx, 422, "invalid_value", "from_s must not be after to_s");
		goto out;
	}
	if (strcmp(event, "heartbeat") == 0 && isnan(from)) {
		http_problem(ctx, 422, "missing_field", "a heartbeat carries the watched range from_s..to_s");
		goto out;
	}
	if (strcmp(event, "play") == 0 && !isnan(from)) {
		http_problem(ctx, 422, "invalid_value",
			     "play carries no range: report watched ranges with heartbeat, pause or ended");
		goto out;
	}
	const char *params[] = {id,
				session,
				ctx->who.sub,
				NULL, /* the share: none when reading by identity */
				event,
				sql_number(position, position_buf, sizeof position_buf),
				sql_number(from, from_buf, sizeof from_buf),
				sql_number(to, to_buf, sizeof to_buf),
				sql_number(rate, rate_buf, sizeof rate_buf),
				access_sql_bool(access_is_admin(ctx))};
	const char *outcome = NULL;
	if (!access_is_anonymous(ctx)) {
		if (!(res = http_query(ctx, fast_sql, 10, params)))
			goto out;
		outcome = PQntuples(res) == 1 ? vtp_db_get(res, 0, "outcome") : NULL;
	}
	if (!outcome) {
		PQclear(res);
		res = NULL;
		if (access_check_share(ctx, id, ACCESS_PROGRESS, &share) < 0)
			goto out;
		params[3] = share.id[0] ? share.id : NULL;
		if (!(res = http_query(ctx, share_sql, 9, params)))
			goto out;
		if (PQntuples(res) != 1) {
			http_problem(ctx, 404, "recording_not_found", "no recording %s", id);
			goto out;
		}
		outcome = vtp_db_get(res, 0, "outcome");
	}
	if (strcmp(outcome, "ok") == 0) {
		http_json(ctx, 204, NULL);
	} else if (strcmp(outcome, "rate_limited") == 0) {
		http_problem(ctx, 429, "rate_limited", "at most one progress event per session per second");
		http_header(ctx, "Retry-After", "1");
	} else if (strcmp(outcome, "session_conflict") == 0) {
		http_problem(ctx, 409, "session_conflict", "session_id %s belongs to another viewer", session);
	} else {
		http_problem(ctx, 422, "invalid_value", "a position is past the end of the recording");
	}
out:
	PQclear(res);
	if (body)
		json_object_put(body);
}

void progress_get(struct vtp_ctx *ctx)
{
	/* With ?session_id= one session's progress (a share-link viewer has no
	 * user id), else the signed-in caller's over all their sessions. */
	static const char sql[] =
		"SELECT r.duration_s,"
		" CASE WHEN $3 = '' THEN v.position_s ELSE s.position_s END AS position_s,"
		" CASE WHEN $3 = '' THEN v.watched_s ELSE s.watched_s END AS watched_s,"
		" $3 <> '' AND " SESSION_CONFLICT_SQL("$3", "$2", "$4") " AS conflict"
		" FROM recordings r"
		" LEFT JOIN playback_viewers v ON v.recording_id = r.id AND v.user_id = $2"
		" LEFT JOIN playback_sessions s ON s.recording_id = r.id AND s.session_id = $3"
		"  AND s.user_id IS NOT DISTINCT FROM NULLIF($2, '')"
		"  AND (s.user_id IS NOT NULL OR s.share_id IS NOT DISTINCT FROM $4::uuid)"
		" WHERE r.id = $1";
	static const char *const allowed[] = {"session_id", NULL};
	const char *id = ctx->params[0];
	PGresult *res = NULL;
	struct access_share share;
	char session[80];

	if (http_query_only(ctx, allowed) < 0)
		goto out;
	int has_session = http_query_filter(ctx, "session_id", session, sizeof session);
	if (has_session < 0)
		goto out;
	if (!has_session)
		session[0] = '\0';
	if (has_session && !valid_session_id(session)) {
		http_problem(ctx, 400, "invalid_query", SESSION_ID_RULE);
		goto out;
	}
	if (access_check_share(ctx, id, ACCESS_PROGRESS, &share) < 0)
		goto out;
	if (!has_session && access_is_anonymous(ctx)) {
		http_problem(ctx, 400, "invalid_query",
			     "with a share link only, name the player's session: ?session_id=");
		goto out;
	}
	const char *params[] = {id, ctx->who.sub, session, share.id[0] ? share.id : NULL};
	res = http_query(ctx, sql, 4, params);
	if (!res)
		goto out;
	if (PQntuples(res) != 1) {
		http_problem(ctx, 404, "recording_not_found", "no recording %s", id);
		goto out;
	}
	if (strcmp(vtp_db_get(res, 0, "conflict"), "t") == 0) {
		http_problem(ctx, 409, "session_conflict", "session_id %s belongs to another viewer", session);
		goto out;
	}
	const char *duration = vtp_db_get(res, 0, "duration_s");
	const char *position = vtp_db_get(res, 0, "position_s");
	const char *watched = vtp_db_get(res, 0, "watched_s");
	double watched_s = watched ? strtod(watched, NULL) : 0;
	double duration_s = duration ? strtod(duration, NULL) : 0;
	json_object *o = json_object_new_object();
	json_object_object_add(o, "position_s", json_object_new_double(position ? strtod(position, NULL) : 0));
	json_object_object_add(o, "watched_s", json_object_new_double(watched_s));
	if (duration_s > 0) {
		double coverage = fmin(1, watched_s / duration_s);
		json_object_object_add(o, "coverage", json_object_new_double(round(coverage * 10000) / 10000));
		json_object_object_add(o, "completed", json_object_new_boolean(coverage >= COMPLETED_COVERAGE));
	} else {
		/* Unknown duration (still recording, not probed): nothing to divide by. */
		json_object_object_add(o, "coverage", NULL);
		json_object_object_add(o, "completed", json_object_new_boolean(false));
	}
	http_json(ctx, 200, o);
out:
	PQclear(res);
}
