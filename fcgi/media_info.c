/* media_info.c: GET /api/v1/recordings/{id}/info: what the probe job found in the recording's source. */
#include "routes.h"

#include "../lib/db.h"
#include "../lib/log.h"
#include "access.h"

#include <string.h>

/* The members of the answer, in the order API.md lists them; the probe's
 * result is stored as jsonb, which keeps no order. */
static const char *const info_members[] = {"duration_s", "size_bytes", "bit_rate", "container", "video", "audio"};

void media_info_get(struct vtp_ctx *ctx)
{
	static const char sql[] =
		"SELECT r.media_info::text AS media_info, r.status, COALESCE(r.renditions, '[]')::text AS renditions"
		" FROM recordings r"
		" WHERE r.id = $1 AND r.deleted_at IS NULL";
	const char *id = ctx->params[0];
	json_object *stored = NULL;
	PGresult *res = access_query(ctx, id, ACCESS_READ, sql);
	if (!res)
		goto out;
	const char *text = vtp_db_get(res, 0, "media_info");
	if (!text) {
		const char *status = vtp_db_get(res, 0, "status");
		if (strcmp(status, "failed") == 0)
			http_problem(ctx, 409, "info_not_ready", "the recording failed before its media could be read");
		else
			http_problem(ctx, 409, "info_not_ready",
				     "the recording's media has not been read yet (it is %s); try again later", status);
		goto out;
	}
	stored = json_tokener_parse(text);
	if (!stored || !json_object_is_type(stored, json_type_object)) {
		log_error("recording %s: media_info is not a JSON object", id);
		http_problem(ctx, 500, "internal_error", "the request could not be completed");
		goto out;
	}
	json_object *info = json_object_new_object();
	for (size_t i = 0; i < sizeof info_members / sizeof info_members[0]; i++) {
		json_object *v = NULL;
		json_object_object_get_ex(stored, info_members[i], &v);
		json_object_object_add(info, info_members[i], json_object_get(v));
	}
	/* Renditions are not a fact of the source: they are what the transcode
	 * job has published (name, size, bandwidth, codecs, bytes). */
	json_object *renditions = json_tokener_parse(vtp_db_get(res, 0, "renditions"));
	if (!json_object_is_type(renditions, json_type_array)) {
		json_object_put(renditions);
		renditions = json_object_new_array();
	}
	json_object_object_add(info, "renditions", renditions);
	http_json(ctx, 200, info);
out:
	if (stored)
		json_object_put(stored);
	PQclear(res);
}
