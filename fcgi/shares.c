/* shares.c: sharing a recording with a user or as a link: create (the token is shown once), list, revoke. */
#include "routes.h"

#include "../lib/db.h"
#include "access.h"
#include "json_in.h"
#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* The columns of a share object, for the create and list answers. */
#define SHARE_COLUMNS                                                                                            \
	"s.id, s.recording_id, s.user_id, s.created_by, vtp_rfc3339(s.created_at) AS created_at,"                \
	" vtp_rfc3339(s.expires_at) AS expires_at, s.max_views, s.views, s.can_download,"                        \
	" vtp_rfc3339(s.revoked_at) AS revoked_at"

/* A new link token: 32 random bytes, base64url without padding (43
 * characters). Only its SHA-256 is stored, so a database leak opens nothing. */
static int new_token(char out[44])
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char raw[33] = {0};
	if (getrandom(raw, 32, 0) != 32)
		return -1;
	size_t n = 0;
	for (size_t i = 0; i < 33; i += 3) {
		unsigned v = (unsigned)raw[i] << 16 | (unsigned)raw[i + 1] << 8 | raw[i + 2];
		for (int k = 18; k >= 0 && n < 43; k -= 6)
			out[n++] = alphabet[(v >> k) & 63];
	}
	out[43] = '\0';
	return 0;
}

/* Checks an RFC 3339 timestamp with a Z or numeric offset, calendar included,
 * so PostgreSQL never sees a date it would refuse. */
static bool valid_timestamp(const char *s)
{
	static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y, mo, d, h, mi, sec, n = 0;
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
		return false;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days[mo - 1] || h > 23 || mi > 59 || sec > 59)
		return false;
	if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return false;
	const char *p = s + 19;
	if (*p == '.') {
		size_t digits = strspn(p + 1, "0123456789");
		if (digits < 1 || digits > 6)
			return false;
		p += 1 + digits;
	}
	if (*p == 'Z' || *p == 'z')
		return p[1] == '\0';
	int oh, om;
	n = 0;
	return (*p == '+' || *p == '-') && sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) == 2 && n == 5 && p[6] == '\0' &&
	       oh <= 23 && om <= 59;
}

static json_object *share_json(PGresult *res, int row)
{
	json_object *o = json_object_new_object();
	const char *user = vtp_db_get(res, row, "user_id");
	const char *expires = vtp_db_get(res, row, "expires_at");
	const char *max_views = vtp_db_get(res, row, "max_views");
	const char *revoked = vtp_db_get(res, row, "revoked_at");
	json_object_object_add(o, "id", json_object_new_string(vtp_db_get(res, row, "id")));
	json_object_object_add(o, "recording_id", json_object_new_string(vtp_db_get(res, row, "recording_id")));
	json_object_object_add(o, "user_id", user ? json_object_new_string(user) : NULL);
	json_object_object_add(o, "created_by", json_object_new_string(vtp_db_get(res, row, "created_by")));
	json_object_object_add(o, "created_at", json_object_new_string(vtp_db_get(res, row, "created_at")));
	json_object_object_add(o, "expires_at", expires ? json_object_new_string(expires) : NULL);
	json_object_object_add(o, "max_views", max_views ? json_object_new_int(atoi(max_views)) : NULL);
	json_object_object_add(o, "views", json_object_new_int(atoi(vtp_db_get(res, row, "views"))));
	json_object_object_add(o, "can_download",
			       json_object_new_boolean(strcmp(vtp_db_get(res, row, "can_download"), "t") == 0));
	json_object_object_add(o, "revoked_at", revoked ? json_object_new_string(revoked) : NULL);
	return o;
}

void shares_create(struct vtp_ctx *ctx)
{
	static const struct json_field spec[] = {
		{"user_id", FIELD_STRING, false},
		{"expires_at", FIELD_STRING, false},
		{"max_views", FIELD_INTEGER, false},
		{"can_download", FIELD_BOOLEAN, false},
	};
	static const char sql[] =
		"WITH s AS (INSERT INTO recording_sharing (recording_id, created_by, user_id, token_hash, expires_at,"
		"  max_views, can_download)"
		" SELECT $1, $2, $3, sha256(convert_to($4, 'UTF8')), $5::timestamptz, $6::integer, $7::boolean"
		" WHERE $5::timestamptz IS NULL OR $5::timestamptz > now()"
		" RETURNING *)"
		" SELECT " SHARE_COLUMNS " FROM s";
	const char *id = ctx->params[0];
	json_object *body = NULL;
	PGresult *res = NULL;
	const char *user_id, *expires_at;
	char token[44], max_views[24] = "";

	if (access_check(ctx, id, ACCESS_MANAGE) < 0)
		goto out;
	body = json_in_parse(ctx, ctx->req.body.data, ctx->req.body.len);
	if (!body || json_in_check(ctx, body, spec, sizeof spec / sizeof spec[0], "") < 0)
		goto out;
	if (json_in_text(ctx, body, "user_id", "", 1, 200, false, &user_id) < 0 ||
	    json_in_text(ctx, body, "expires_at", "", 1, 40, false, &expires_at) < 0)
		goto out;
	if (expires_at && !valid_timestamp(expires_at)) {
		http_problem(ctx, 422, "invalid_value",
			     "expires_at must be an RFC 3339 timestamp such as 2026-12-31T23:59:59Z");
		goto out;
	}
	json_object *mv = json_in_get(body, "max_views");
	if (mv) {
		int64_t n = json_object_get_int64(mv);
		if (n < 1 || n > 1000000000) {
			http_problem(ctx, 422, "invalid_value", "max_views must be an integer from 1 to 1000000000");
			goto out;
		}
		snprintf(max_views, sizeof max_views, "%lld", (long long)n);
	}
	json_object *dl = json_in_get(body, "can_download");
	if (new_token(token) < 0) {
		http_problem(ctx, 500, "internal_error", "the request could not be completed");
		goto out;
	}
	const char *params[] = {id,	    ctx->who.sub, user_id, token, expires_at, max_views[0] ? max_views : NULL,
				access_sql_bool(dl && json_object_get_boolean(dl))};
	res = http_query(ctx, sql, 7, params);
	if (!res)
		goto out;
	if (PQntuples(res) != 1) {
		http_problem(ctx, 422, "invalid_value", "expires_at must be in the future");
		goto out;
	}
	json_object *o = share_json(res, 0);
	json_object_object_add(o, "token", json_object_new_string(token));
	char *url = xasprintf("/api/v1/recordings/%s?share=%s", id, token);
	json_object_object_add(o, "url", json_object_new_string(url));
	free(url);
	http_header(ctx, "Location", "/api/v1/recordings/%s/shares", id);
	http_json(ctx, 201, o);
out:
	PQclear(res);
	if (body)
		json_object_put(body);
}

void shares_list(struct vtp_ctx *ctx)
{
	static const char sql[] = "SELECT " SHARE_COLUMNS " FROM recording_sharing s WHERE s.recording_id = $1"
				  " ORDER BY s.created_at DESC, s.id";
	const char *id = ctx->params[0];
	PGresult *res = NULL;
	if (access_check(ctx, id, ACCESS_MANAGE) < 0)
		goto out;
	const char *params[] = {id};
	res = http_query(ctx, sql, 1, params);
	if (!res)
		goto out;
	json_object *items = json_object_new_array();
	for (int i = 0; i < PQntuples(res); i++)
		json_object_array_add(items, share_json(res, i));
	json_object *o = json_object_new_object();
	json_object_object_add(o, "items", items);
	http_json(ctx, 200, o);
out:
	PQclear(res);
}

void shares_delete(struct vtp_ctx *ctx)
{
	/* The owner of the shared recording or an admin revokes; revoking twice
	 * is harmless. Every check reads revoked_at, so the share stops working
	 * with the next request. */
	static const char sql[] =
		"WITH s AS (SELECT s.id, r.owner_id = $2 OR $3::boolean AS can_manage,"
		"  " ACCESS_CAN_READ_SQL("$2", "$3") " AS can_read"
		"  FROM recording_sharing s JOIN recordings r ON r.id = s.recording_id AND r.deleted_at IS NULL"
		"  WHERE s.id = $1::uuid),"
		" revoked AS (UPDATE recording_sharing t SET revoked_at = now() FROM s"
		"  WHERE t.id = s.id AND s.can_manage AND t.revoked_at IS NULL RETURNING t.id)"
		" SELECT can_manage, can_read FROM s";
	const char *share_id = ctx->params[0];
	PGresult *res = NULL;
	if (!route_is_uuid(share_id)) {
		http_problem(ctx, 400, "invalid_uuid", "\"%.40s\" is not a lower-case UUID", share_id);
		goto out;
	}
	const char *params[] = {share_id, ctx->who.sub, access_sql_bool(access_is_admin(ctx))};
	res = http_query(ctx, sql, 3, params);
	if (!res)
		goto out;
	if (PQntuples(res) != 1 || strcmp(vtp_db_get(res, 0, "can_read"), "t") != 0)
		http_problem(ctx, 404, "share_not_found", "no share %s", share_id);
	else if (strcmp(vtp_db_get(res, 0, "can_manage"), "t") != 0)
		http_problem(ctx, 403, "forbidden", "only the recording's owner or an admin may revoke its shares");
	else
		http_json(ctx, 204, NULL);
out:
	PQclear(res);
}
