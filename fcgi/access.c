/* access.c: the recording access check every per-recording endpoint starts with. */
#include "access.h"

#include "../lib/db.h"

#include <string.h>

bool access_is_admin(const struct vtp_ctx *ctx)
{
	return ctx->who.role == VTP_ROLE_ADMIN;
}

const char *access_sql_bool(bool b)
{
	return b ? "true" : "false";
}

int access_check(struct vtp_ctx *ctx, const char *id, enum access_need need)
{
	static const char sql[] = "SELECT r.owner_id = $2 OR $3::boolean AS can_manage, " ACCESS_CAN_READ_SQL(
		"$2", "$3") " AS can_read FROM recordings r WHERE r.id = $1 AND r.deleted_at IS NULL";
	const char *params[] = {id, ctx->who.sub, access_sql_bool(access_is_admin(ctx))};
	PGresult *res = NULL;
	int ret = -1;
	res = http_query(ctx, sql, 3, params);
	if (!res)
		goto out;
	bool can_read = PQntuples(res) == 1 && strcmp(vtp_db_get(res, 0, "can_read"), "t") == 0;
	bool can_manage = can_read && strcmp(vtp_db_get(res, 0, "can_manage"), "t") == 0;
	if (!can_read) {
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

PGresult *access_query(struct vtp_ctx *ctx, const char *id, enum access_need need, const char *sql)
{
	if (access_check(ctx, id, need) < 0)
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
