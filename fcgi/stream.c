/* stream.c: GET /api/v1/recordings/{id}/stream/...: the HLS master playlist (Bearer or share link), and the
 * media playlists and segments that it points at through signed, short-lived URL tokens, or links nginx checks
 * itself (lib/url_token.h). */
#include "routes.h"

#include "../lib/db.h"
#include "../lib/log.h"
#include "../lib/storage.h"
#include "../lib/url_token.h"
#include "access.h"
#include "app.h"
#include "files.h"
#include "hls_names.h"

#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What a stream URL token opens: every playlist and segment of one recording's HLS folder. */
#define STREAM_SCOPE "stream"
/* A token lives for the recording's length plus this (a paused player
 * resumes), at least STREAM_TOKEN_MIN_S, at most a day. */
#define STREAM_TOKEN_MIN_S 3600
#define STREAM_TOKEN_MAX_S 86400

/* How the URIs of a playlist answer are signed: each with ?token=, or, in a
 * media playlist behind an nginx that checks links itself, each segment name
 * with nginx's secure_link query (url_link_query) for the same expiry. */
struct uri_signing {
	const char *token;
	const char *link_secret; /* NULL: ?token= everywhere */
	const char *rendition;	 /* the media playlist's, for the segment's path */
	time_t expires;		 /* the token's */
};

/* The web server's link secret (deploy/nginx-vtp.conf.in passes it with
 * fastcgi_param), or NULL when it checks no links: then nothing changes. */
#define LINK_SECRET_PARAM "VTP_SEGMENT_LINK_SECRET"

/* Appends the URI uri (len bytes, relative to the playlist) with its signature. */
static void append_signed(struct vtp_ctx *ctx, const char *uri, size_t len, const struct uri_signing *sign)
{
	char name[STORAGE_NAME_MAX + 1], path[512], query[URL_LINK_QUERY_SIZE];
	vtp_buf_append(&ctx->resp.body, uri, len);
	/* Only the names nginx's segment location matches get a link; the path
	 * signed is the route's, as nginx's $uri will be when the player asks. */
	if (sign->link_secret && len < sizeof name) {
		memcpy(name, uri, len);
		name[len] = '\0';
		int n = !segment_type(name) ? -1
					    : snprintf(path, sizeof path, "/api/v1/recordings/%s/stream/%s/%s",
						       ctx->params[0], sign->rendition, name);
		if (n > 0 && (size_t)n < sizeof path &&
		    url_link_query(sign->link_secret, path, sign->expires, query, sizeof query) == 0) {
			vtp_buf_printf(&ctx->resp.body, "?%s", query);
			return;
		}
	}
	vtp_buf_printf(&ctx->resp.body, "?token=%s", sign->token);
}

/* Reads a playlist of the recording's hls/ folder and answers it with every
 * URI signed (struct uri_signing): lines that are not tags, and URI="..."
 * attributes. A missing master is "not ready" (409), a missing media
 * playlist 404. */
static void answer_playlist(struct vtp_ctx *ctx, const char *name, const struct uri_signing *sign, bool master)
{
	char *path = storage_path(&ctx->app->cfg, ctx->params[0], name), line[4096];
	FILE *f = path ? fopen(path, "re") : NULL;
	if (!f && path && errno == ENOENT) {
		/* The database listed a rendition whose files are gone (a failed
		 * attempt of the playable job removes them before its failure is
		 * recorded): the stream is not ready, nothing is broken. */
		log_warn("recording %s: %s is missing", ctx->params[0], name);
		if (master)
			http_problem(ctx, 409, "stream_not_ready", "the recording has no playable rendition yet; try again later");
		else
			http_problem(ctx, 404, "rendition_not_found", "the recording has no rendition %s", ctx->params[1]);
		free(path);
		return;
	}
	if (!f) {
		log_error("recording %s: %s cannot be read: %s", ctx->params[0], name, strerror(errno));
		http_problem(ctx, 500, "internal_error", "the request could not be completed");
		free(path);
		return;
	}
	vtp_buf_reset(&ctx->resp.body);
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\r\n")] = '\0';
		char *uri = strstr(line, "URI=\"");
		char *end = uri ? strchr(uri + 5, '"') : NULL;
		if (line[0] && line[0] != '#') {
			append_signed(ctx, line, strlen(line), sign);
			vtp_buf_puts(&ctx->resp.body, "\n");
		} else if (line[0] == '#' && end) {
			vtp_buf_append(&ctx->resp.body, line, (size_t)(uri + 5 - line));
			append_signed(ctx, uri + 5, (size_t)(end - uri - 5), sign);
			vtp_buf_printf(&ctx->resp.body, "%s\n", end);
		} else {
			vtp_buf_printf(&ctx->resp.body, "%s\n", line);
		}
	}
	fclose(f);
	free(path);
	ctx->resp.status = 200;
	http_header(ctx, "Content-Type", "application/vnd.apple.mpegurl");
	/* Each answer carries its own tokens: never shared, never stored. */
	http_header(ctx, "Cache-Control", "private, no-store");
}

/* A stream token valid until expires, or until the share that let the
 * caller in ends if that is sooner, carrying the share's id so that each use
 * checks it again (access_share_valid()). NULL when there is no key (logged);
 * the caller frees the result. */
static char *make_token(struct vtp_ctx *ctx, const struct access_share *share, time_t expires)
{
	char *token = access_url_token(ctx, share, ctx->params[0], STREAM_SCOPE, expires);
	if (!token)
		log_error("no url_signing_key or jwt_secret: stream URLs cannot be signed");
	return token;
}

void stream_master_get(struct vtp_ctx *ctx)
{
	static const char *const allowed[] = {"share", NULL};
	static const char sql[] =
		"SELECT r.renditions IS NOT NULL AND jsonb_array_length(r.renditions) > 0 AS ready, r.duration_s"
		" FROM recordings r WHERE r.id = $1 AND r.deleted_at IS NULL";
	char *bad = http_query_check(ctx->req.query, allowed);
	if (bad) {
		http_problem(ctx, 400, "invalid_query", "%s", bad);
		free(bad);
		return;
	}
	struct access_share share;
	PGresult *res = access_query_share(ctx, ctx->params[0], ACCESS_READ, sql, &share);
	if (!res)
		return;
	if (strcmp(vtp_db_get(res, 0, "ready"), "t") != 0) {
		http_problem(ctx, 409, "stream_not_ready", "the recording has no playable rendition yet; try again later");
		PQclear(res);
		return;
	}
	const char *duration = vtp_db_get(res, 0, "duration_s");
	long long life = (duration ? (long long)strtod(duration, NULL) : 0) + STREAM_TOKEN_MIN_S;
	if (life > STREAM_TOKEN_MAX_S)
		life = STREAM_TOKEN_MAX_S;
	PQclear(res);
	char *token = make_token(ctx, &share, time(NULL) + (time_t)life);
	if (!token) {
		http_problem(ctx, 500, "internal_error", "the request could not be completed");
		return;
	}
	struct uri_signing sign = {.token = token};
	answer_playlist(ctx, "hls/master.m3u8", &sign, true);
	free(token);
}

/* The ?token= of a media playlist or segment request, checked against the
 * recording (which must still exist) and, for a token given out on a
 * share's strength, against that share (still neither revoked nor expired);
 * or, without one, the caller's Bearer token or share link as for any read,
 * and then a fresh token into token. *shared tells whether the token is a
 * share's. Returns 0, or -1 after answering. */
static int check_token(struct vtp_ctx *ctx, char *token, size_t size, bool *shared)
{
	static const char *const allowed[] = {"token", "share", NULL};
	static const char sql[] = "SELECT 1 FROM recordings r WHERE r.id = $1 AND r.deleted_at IS NULL";
	char share_id[URL_TOKEN_SHARE_SIZE];
	char *bad = http_query_check(ctx->req.query, allowed);
	*shared = false;
	if (bad) {
		http_problem(ctx, 400, "invalid_query", "%s", bad);
		free(bad);
		return -1;
	}
	int got = http_query_get(ctx->req.query, "token", token, size);
	if (got == 0) {
		/* No token: the router has authenticated a Bearer token (the route
		 * is ROUTE_URL_TOKEN); a reader gets the URIs signed as from the master.
		 * Through a share this is a view like the master's (ACCESS_READ counts
		 * it), or skipping the master would play without counting any. */
		struct access_share share;
		if (access_check_share(ctx, ctx->params[0], ACCESS_READ, &share) < 0)
			return -1;
		char *made = make_token(ctx, &share, time(NULL) + STREAM_TOKEN_MIN_S);
		if (!made || strlen(made) >= size) {
			free(made);
			http_problem(ctx, 500, "internal_error", "the request could not be completed");
			return -1;
		}
		snprintf(token, size, "%s", made);
		free(made);
		*shared = share.id[0] != '\0';
		return 0;
	}
	enum url_token_status st = got < 0 ? URL_TOKEN_INVALID
					   : url_token_check(&ctx->app->cfg, ctx->params[0], STREAM_SCOPE, token, time(NULL));
	if (st == URL_TOKEN_EXPIRED) {
		http_problem(ctx, 403, "url_token_expired", "this stream URL has expired; load the master playlist again");
		return -1;
	}
	if (st != URL_TOKEN_OK) {
		http_problem(ctx, 403, "url_token_invalid", "this stream URL is not valid for this recording");
		return -1;
	}
	if (url_token_share(token, share_id)) {
		*shared = true;
		return access_share_valid(ctx, ctx->params[0], share_id, false);
	}
	const char *params[] = {ctx->params[0]};
	PGresult *res = http_query(ctx, sql, 1, params);
	if (!res)
		return -1;
	int rows = PQntuples(res);
	PQclear(res);
	if (rows == 0) {
		http_problem(ctx, 404, "recording_not_found", "no recording %s", ctx->params[0]);
		return -1;
	}
	return 0;
}

void stream_media_get(struct vtp_ctx *ctx)
{
	char token[URL_TOKEN_MAX + 1], name[STORAGE_NAME_MAX + 1];
	bool shared;
	if (check_token(ctx, token, sizeof token, &shared) < 0)
		return;
	if (!valid_rendition(ctx->params[1])) {
		http_problem(ctx, 404, "rendition_not_found", "no such rendition");
		return;
	}
	snprintf(name, sizeof name, "hls/%s/index.m3u8", ctx->params[1]);
	char *path = storage_path(&ctx->app->cfg, ctx->params[0], name);
	FILE *f = path ? fopen(path, "re") : NULL;
	free(path);
	if (!f) {
		http_problem(ctx, 404, "rendition_not_found", "the recording has no rendition %s", ctx->params[1]);
		return;
	}
	fclose(f);
	struct uri_signing sign = {.token = token, .rendition = ctx->params[1], .expires = url_token_expires(token)};
	const char *secret = http_param(ctx, LINK_SECRET_PARAM);
	/* A share's viewer gets ?token= segment URIs, which come here and check
	 * the share again: a revoked share stops at the next segment. nginx's
	 * links cannot see a revocation. */
	if (shared)
		secret = NULL;
	if (secret && strlen(secret) >= URL_LINK_SECRET_MIN)
		sign.link_secret = secret;
	else if (secret && *secret)
		log_warn("%s is shorter than %d characters: segment URIs keep their ?token=", LINK_SECRET_PARAM,
			 URL_LINK_SECRET_MIN);
	answer_playlist(ctx, name, &sign, false);
}

void stream_segment_get(struct vtp_ctx *ctx)
{
	char token[URL_TOKEN_MAX + 1], name[STORAGE_NAME_MAX + 1];
	const char *type = segment_type(ctx->params[2]);
	bool shared;
	/* The token first: without one the answer is 401 whatever the name. */
	if (check_token(ctx, token, sizeof token, &shared) < 0)
		return;
	if (!valid_rendition(ctx->params[1]) || !type) {
		http_problem(ctx, 404, "segment_not_found", "no such segment");
		return;
	}
	snprintf(name, sizeof name, "hls/%s/%s", ctx->params[1], ctx->params[2]);
	/* Segments never change once published (a new transcode replaces the
	 * folder, and its playlist carries new names only if it must): a
	 * player may keep them, the URL's token bounds who gets them. */
	struct file_answer a = {.content_type = type, .cache_control = "private, max-age=3600", .ranges = true};
	if (files_answer(ctx, ctx->params[0], name, &a) < 0 && ctx->resp.status < 500)
		http_problem(ctx, 404, "segment_not_found", "no such segment");
}
