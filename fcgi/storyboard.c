/* storyboard.c: GET /api/v1/recordings/{id}/storyboard.{json,vtt,jpg}: the scrubbing previews the storyboard job made. */
#include "routes.h"

#include "../lib/db.h"
#include "../lib/log.h"
#include "../lib/storage.h"
#include "access.h"
#include "app.h"
#include "files.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
	/* A ?share= link is checked, not counted as a view: a player fetches
	 * the track and the sprite along with the video. */
	PGresult *res = access_query(ctx, id, ACCESS_PROGRESS, sql);
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

/* The track read through a share link: its cues point at the sprite with the
 * same ?share= token, or the player could not load it. */
static void vtt_with_share(struct vtp_ctx *ctx)
{
	static const char image[] = "storyboard.jpg#";
	char *path = storage_path(&ctx->app->cfg, ctx->params[0], "storyboard.vtt");
	char *token = NULL, buf[8192], etag[64];
	struct vtp_buf text = {0};
	struct stat st;
	FILE *f = path ? fopen(path, "re") : NULL;
	size_t n;

	if (!f || fstat(fileno(f), &st) < 0) {
		log_error("recording %s: storyboard.vtt is missing", ctx->params[0]);
		http_problem(ctx, 500, "internal_error", "the request could not be completed");
		goto out;
	}
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		vtp_buf_append(&text, buf, n);
	/* Depends on the token too: a track for one link is not another's. */
	files_etag(&st, etag, sizeof etag);
	etag[strlen(etag) - 1] = '\0';
	unsigned long h = 5381;
	for (const char *p = ctx->share; *p; p++)
		h = h * 33 + (unsigned char)*p;
	snprintf(etag + strlen(etag), sizeof etag - strlen(etag), "-%lx\"", h & 0xffffffffUL);
	http_header(ctx, "ETag", "%s", etag);
	http_header(ctx, "Cache-Control", "private, no-cache");
	if (files_etag_matches(http_param(ctx, "HTTP_IF_NONE_MATCH"), etag)) {
		ctx->resp.status = 304;
		goto out;
	}
	token = xmalloc(strlen(ctx->share) * 3 + 1);
	char *t = token;
	for (const unsigned char *p = (const unsigned char *)ctx->share; *p; p++)
		t += strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~", *p)
			     ? sprintf(t, "%c", *p)
			     : sprintf(t, "%%%02X", *p);
	ctx->resp.status = 200;
	http_header(ctx, "Content-Type", "text/vtt; charset=utf-8");
	vtp_buf_reset(&ctx->resp.body);
	for (const char *p = text.data ? text.data : "", *hit; *p; p = hit + sizeof image - 1) {
		if (!(hit = strstr(p, image))) {
			vtp_buf_puts(&ctx->resp.body, p);
			break;
		}
		vtp_buf_append(&ctx->resp.body, p, (size_t)(hit - p));
		vtp_buf_printf(&ctx->resp.body, "storyboard.jpg?share=%s#", token);
	}
out:
	if (f)
		fclose(f);
	free(token);
	free(path);
	vtp_buf_free(&text);
}

void storyboard_get_vtt(struct vtp_ctx *ctx)
{
	if (!ctx->share) {
		storyboard_file(ctx, "storyboard.vtt", "text/vtt; charset=utf-8");
		return;
	}
	PGresult *res = storyboard_row(ctx);
	if (res)
		vtt_with_share(ctx);
	PQclear(res);
}

void storyboard_get_jpg(struct vtp_ctx *ctx)
{
	storyboard_file(ctx, "storyboard.jpg", "image/jpeg");
}
