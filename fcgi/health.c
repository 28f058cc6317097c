/* health.c: GET /health, for load balancers and the dev stack: is the database reachable? */
#include "routes.h"

#include "../lib/db.h"
#include "app.h"

void health_get(struct vtp_ctx *ctx)
{
	PGresult *res = NULL;
	enum vtp_db_status st = vtp_db_query(ctx->db, &res, "SELECT 1", 0, NULL);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "status", json_object_new_string(st == VTP_DB_OK ? "ok" : "degraded"));
	json_object_object_add(o, "db", json_object_new_string(st == VTP_DB_OK ? "ok" : "down"));
	json_object_object_add(o, "version", json_object_new_string(VTP_VERSION));
	if (st != VTP_DB_OK)
		http_header(ctx, "Retry-After", "%ld", ctx->app->cfg.retry_after_s);
	http_json(ctx, st == VTP_DB_OK ? 200 : 503, o);
	PQclear(res);
}
