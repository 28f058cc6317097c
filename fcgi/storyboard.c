/* storyboard.c: GET /api/v1/recordings/{id}/storyboard.{json,vtt,jpg}: the scrubbing previews the storyboard job made. */
#include "routes.h"

#include "../lib/db.h"
#include "../lib/log.h"
#include "access.h"
#include "files.h"

#include <string.h>

/* Checks the caller and that the storyboard exists; returns the row
 * (storyboard as text) or NULL after answering. */
static PGresult *storyboard_row(struct vtp_ctx *ctx)
{
	static const char sql[] =
		"SELECT r.storyboard::text AS storyboard, r.media_info IS NOT NULL AS probed,"
		" jsonb_typeof(r.media_info -> 'video') = 'object' AS has_video"
		" FROM recordings r WHERE r.id = $1 AND r.deleted_at IS NULL";
	const char *id = ctx->params[0];
	if (ctx->req.query[0]) {
		http_problem(ctx, 400, "invalid_query", "this endpoint takes no query parameters");
		return NULL;
	}
	PGresult *res = access_query(ctx, id, ACCESS_READ, sql);
	if (!res || vtp_db_get(res, 0, "storyboard"))
		return res;
	const char *has_video = vtp_db_get(res, 0, "has_video");
	if (strcmp(vtp_db_get(res, 0, "probed"), "t") == 0 && (!has_video || strcmp(has_video, "t") != 0))
		http_problem(ctx, 404, "no_video", "the recording has no video, so no storyboard");
	else
		http_problem(ctx, 409, "storyboard_not_ready",
			     "the recording's storyboard has not been made yet; try again once it is ready");
	PQclear(res);
	return NULL;
}

void storyboard_get_json(struct vtp_ctx *ctx)
{
	PGresult *res = storyboard_row(ctx);
	if (!res)
		return;
	json_object *o = json_tokener_parse(vtp_db_get(res, 0, "storyboard"));
	if (!o) {
		log_error("recording %s: storyboard is not JSON", ctx->params[0]);
		http_problem(ctx, 500, "internal_error", "the request could not be completed");
	} else {
		http_json(ctx, 200, o);
	}
	PQclear(res);
}

static void storyboard_file(struct vtp_ctx *ctx, const char *name, const char *content_type)
{
	PGresult *res = storyboard_row(ctx);
	if (!res)
		return;
	struct file_answer a = {.content_type = content_type, .cache_control = "private, no-cache"};
	if (files_answer(ctx, ctx->params[0], name, &a) < 0 && ctx->resp.status < 500) {
		log_error("recording %s: %s is missing", ctx->params[0], name);
		http_problem(ctx, 500, "internal_error", "the request could not be completed");
	}
	PQclear(res);
}

void storyboard_get_vtt(struct vtp_ctx *ctx)
{
	storyboard_file(ctx, "storyboard.vtt", "text/vtt; charset=utf-8");
}

void storyboard_get_jpg(struct vtp_ctx *ctx)
{
	storyboard_file(ctx, "storyboard.jpg", "image/jpeg");
}
