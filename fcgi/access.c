/* access.c: the recording access check every per-recording endpoint starts with. */
#include "access.h"

#include "../lib/db.h"
#include "../lib/url_token.h"
#include "app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool access_is_admin(const struct vtp_ctx *ctx)
{
	return ctx->who.role == VTP_ROLE_ADMIN;
}

const char *access_sql_bool(bool b)
{
	return b ? "true" : "false";
}

bool access_is_anonymous(const struct vtp_ctx *ctx)
{
	return ctx->who.sub[0] == '\0';
}

/* Lets the caller in through a share of recording id: the link token
 * ctx->share, or, without one, the best of the shares to the caller's sub
 * (a usable one first, one without max_views before one with). A view is
 * counted and logged in the same statement, so max_views holds under
 * concurrent requests; when nothing was let in, the share's row (as it was)
 * tells why. Fills *share when given. Returns 0 or -1 after answering. */
static int share_check(struct vtp_ctx *ctx, const char *id, enum access_need need, struct access_share *share)
{
	static const char sql[] =
		"WITH pick AS (SELECT s.id FROM recording_sharing s"
		"  JOIN recordings r ON r.id = s.recording_id AND r.deleted_at IS NULL"
		"  WHERE s.recording_id = $1 AND (($2::text IS NOT NULL AND s.token_hash = sha256(convert_to($2, 'UTF8')))"
		"   OR ($2::text IS NULL AND s.user_id = $3))"
		"  ORDER BY (s.revoked_at IS NULL AND (s.expires_at IS NULL OR s.expires_at > now())"
		"   AND (s.max_views IS NULL OR s.views < s.max_views) AND (NOT $5::boolean OR s.can_download)) DESC,"
		"   s.max_views IS NULL DESC, s.created_at LIMIT 1),"
		" ok AS (UPDATE recording_sharing t SET views = t.views + CASE WHEN $4::boolean THEN 1 ELSE 0 END"
		"  FROM pick WHERE t.id = pick.id AND t.revoked_at IS NULL"
		"  AND (t.expires_at IS NULL OR t.expires_at > now())"
		"  AND (t.max_views IS NULL OR t.views < t.max_views)"
		"  AND (t.user_id IS NULL OR t.user_id = $3) AND (NOT $5::boolean OR t.can_download)"
		"  RETURNING t.id, COALESCE(floor(extract(epoch FROM t.expires_at))::bigint, 0) AS until),"
		" logged AS (INSERT INTO recording_access_log"
		"  (recording_id, user_id, share_id, action, user_agent, remote_addr)"
		"  SELECT $1, NULLIF($3, ''), ok.id, 'share_redeem', left($6, 1024),"
		"   CASE WHEN $7 ~ '^[0-9a-fA-F:.]+$' THEN $7::inet END FROM ok WHERE $4::boolean RETURNING 1)"
		" SELECT (SELECT id FROM ok) AS redeemed, (SELECT until FROM ok) AS until, s.user_id,"
		"  s.revoked_at IS NOT NULL AS revoked, COALESCE(s.expires_at <= now(), false) AS expired,"
		"  COALESCE(s.views >= s.max_views, false) AS exhausted, s.can_download"
		" FROM recording_sharing s JOIN pick ON pick.id = s.id";
	/* A HEAD answers as a GET would, but is no view (load balancers and
	 * link previews probe with it); nor is a download's range that does not
	 * start at its first byte (a player seeking, a download resumed). */
	const char *range = need == ACCESS_DOWNLOAD ? http_param(ctx, "HTTP_RANGE") : NULL;
	bool count = need != ACCESS_PROGRESS && strcmp(ctx->req.method, "HEAD") != 0 &&
		     !(range && strncmp(range, "bytes=0-", 8) != 0);
	const char *params[] = {id,
				ctx->share,
				ctx->who.sub,
				access_sql_bool(count),
				access_sql_bool(need == ACCESS_DOWNLOAD),
				ctx->req.user_agent ? ctx->req.user_agent : "",
				ctx->req.remote_addr ? ctx->req.remote_addr : ""};
	PGresult *res = NULL;
	int ret = -1;
	res = http_query(ctx, sql, 7, params);
	if (!res)
		goto out;
	if (PQntuples(res) != 1) {
		/* An unknown token, one for another recording, or no share to
		 * this user: nothing leaks. */
		http_problem(ctx, 404, "recording_not_found", "no recording %s", id);
		goto out;
	}
	const char *redeemed = vtp_db_get(res, 0, "redeemed");
	if (redeemed) {
		if (share) {
			snprintf(share->id, sizeof share->id, "%s", redeemed);
			share->expires = (time_t)strtoll(vtp_db_get(res, 0, "until"), NULL, 10);
		}
		ret = 0;
		goto out;
	}
	const char *user = vtp_db_get(res, 0, "user_id");
	if (strcmp(vtp_db_get(res, 0, "revoked"), "t") == 0)
		http_problem(ctx, 403, "share_revoked", "this share was revoked");
	else if (strcmp(vtp_db_get(res, 0, "expired"), "t") == 0)
		http_problem(ctx, 403, "share_expired", "this share has expired");
	else if (strcmp(vtp_db_get(res, 0, "exhausted"), "t") == 0)
		http_problem(ctx, 403, "share_exhausted", "this share has been used as often as it allows");
	else if (user && access_is_anonymous(ctx))
		http_problem(ctx, 401, "unauthorized", "this share is for a signed-in user: send a Bearer token");
	else if (user && strcmp(user, ctx->who.sub) != 0)
		http_problem(ctx, 403, "forbidden", "this share is for another user");
	else
		http_problem(ctx, 403, "forbidden", "this share does not allow downloads");
out:
	PQclear(res);
	return ret;
}

int access_check_share(struct vtp_ctx *ctx, const char *id, enum access_need need, struct access_share *share)
{
	/* shared_with is only asked for (and only read) when managing: a read goes on to share_check() instead */
	static const char sql[] = "SELECT r.owner_id = $2 OR $3::boolean AS can_manage, " ACCESS_CAN_READ_DIRECT_SQL(
		"$2", "$3") " AS can_read, $4::boolean AND EXISTS (SELECT 1 FROM recording_sharing s"
		" WHERE s.recording_id = r.id AND s.user_id = $2 AND s.revoked_at IS NULL) AS shared_with"
		" FROM recordings r WHERE r.id = $1 AND r.deleted_at IS NULL";
	const char *params[] = {id, ctx->who.sub, access_sql_bool(access_is_admin(ctx)),
				access_sql_bool(need == ACCESS_MANAGE)};
	PGresult *res = NULL;
	int ret = -1;
	if (share) {
		share->id[0] = '\0';
		share->expires = 0;
	}
	if (access_is_anonymous(ctx)) {
		/* The router lets a caller without a Bearer token this far only with ?share=. */
		if (need == ACCESS_MANAGE)
			http_problem(ctx, 401, "unauthorized", "an Authorization: Bearer token is required");
		else
			ret = share_check(ctx, id, need, share);
		goto out;
	}
	res = http_query(ctx, sql, 4, params);
	if (!res)
		goto out;
	bool can_read = PQntuples(res) == 1 && strcmp(vtp_db_get(res, 0, "can_read"), "t") == 0;
	bool can_manage = can_read && strcmp(vtp_db_get(res, 0, "can_manage"), "t") == 0;
	if (!can_read && PQntuples(res) == 1 && need != ACCESS_MANAGE) {
		ret = share_check(ctx, id, need, share);
		goto out;
	}
	/* A user the recording is shared with knows it exists: managing it is forbidden, not unknown. */
	if (!can_read && !(PQntuples(res) == 1 && strcmp(vtp_db_get(res, 0, "shared_with"), "t") == 0)) {
		http_problem(ctx, 404, "recording_not_found", "no recording %s", id);
		goto out;
	}
	if (need == ACCESS_MANAGE && !can_manage) {
		http_problem(ctx, 403, "forbidden", "only the recording's owner or an admin may do this");
		goto out;
	}
	ret = 0;
out:
	PQclear(res);
	return ret;
}

int access_check(struct vtp_ctx *ctx, const char *id, enum access_need need)
{
	return access_check_share(ctx, id, need, NULL);
}

time_t access_share_cap(const struct access_share *share, time_t until)
{
	return share->id[0] && share->expires > 0 && share->expires < until ? share->expires : until;
}

char *access_url_token(const struct vtp_ctx *ctx, const struct access_share *share, const char *id,
		       const char *scope, time_t until)
{
	until = access_share_cap(share, until);
	return share->id[0] ? url_token_make_share(&ctx->app->cfg, id, scope, share->id, until)
			    : url_token_make(&ctx->app->cfg, id, scope, until);
}

int access_share_valid(struct vtp_ctx *ctx, const char *id, const char *share_id, bool download)
{
	/* By primary key: the one extra lookup a share's URL token costs. */
	static const char sql[] =
		"SELECT s.revoked_at IS NOT NULL AS revoked, COALESCE(s.expires_at <= now(), false) AS expired,"
		" s.can_download FROM recording_sharing s"
		" JOIN recordings r ON r.id = s.recording_id AND r.deleted_at IS NULL"
		" WHERE s.id = $2 AND s.recording_id = $1";
	const char *params[] = {id, share_id};
	PGresult *res = http_query(ctx, sql, 2, params);
	int ret = -1;
	if (!res)
		goto out;
	if (PQntuples(res) != 1)
		http_problem(ctx, 404, "recording_not_found", "no recording %s", id);
	else if (strcmp(vtp_db_get(res, 0, "revoked"), "t") == 0)
		http_problem(ctx, 403, "share_revoked", "the share this URL was given out for was revoked");
	else if (strcmp(vtp_db_get(res, 0, "expired"), "t") == 0)
		http_problem(ctx, 403, "share_expired", "the share this URL was given out for has expired");
	else if (download && strcmp(vtp_db_get(res, 0, "can_download"), "t") != 0)
		http_problem(ctx, 403, "forbidden", "this share does not allow downloads");
	else
		ret = 0;
out:
	PQclear(res);
	return ret;
}

PGresult *access_query(struct vtp_ctx *ctx, const char *id, enum access_need need, const char *sql)
{
	return access_query_share(ctx, id, need, sql, NULL);
}

PGresult *access_query_share(struct vtp_ctx *ctx, const char *id, enum access_need need, const char *sql,
			     struct access_share *share)
{
	if (access_check_share(ctx, id, need, share) < 0)
		return NULL;
	const char *params[] = {id};
	PGresult *res = http_query(ctx, sql, 1, params);
	if (res && PQntuples(res) == 0) {
		http_problem(ctx, 404, "recording_not_found", "no recording %s", id);
		PQclear(res);
		res = NULL;
	}
	return res;
}
