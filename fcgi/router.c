/* router.c: matching paths against the route table, and the checks every route shares, in one order. */
#include "router.h"

#include "../lib/log.h"
#include "app.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

int route_is_uuid(const char *s)
{
	static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
	for (size_t i = 0; i < sizeof shape - 1; i++) {
		char c = s[i];
		if (shape[i] == '-' ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return 0;
	}
	return s[sizeof shape - 1] == '\0';
}

int route_match(const char *pattern, const char *path, const char **params, char **storage)
{
	size_t starts[HTTP_MAX_PARAMS], lens[HTTP_MAX_PARAMS];
	const char *p = pattern;
	const char *s = path;
	int n = 0;
	*storage = NULL;
	/* Matched on the path itself: most requests try many routes before
	 * theirs, and only the matching one needs a copy for its parameters. */
	while (*p || *s) {
		/* Both must be at the start of a segment. */
		if (*p != '/' || *s != '/')
			return 0;
		p++;
		s++;
		size_t p_len = strcspn(p, "/"), s_len = strcspn(s, "/");
		if (p[0] == '{') {
			if (s_len == 0 || n >= HTTP_MAX_PARAMS)
				return 0;
			starts[n] = (size_t)(s - path);
			lens[n++] = s_len;
		} else if (p_len != s_len || memcmp(p, s, p_len) != 0) {
			return 0;
		}
		p += p_len;
		s += s_len;
	}
	/* The parameters are cut out of a copy (caller frees *storage). */
	char *copy = xstrdup(path);
	for (int i = 0; i < n; i++) {
		copy[starts[i] + lens[i]] = '\0';
		params[i] = copy + starts[i];
	}
	*storage = copy;
	return 1;
}

/* Reads the body into ctx->req.body, at most limit bytes. Returns 0, 1 when
 * it is longer than limit, or -1 on a read error. */
static int read_body(struct vtp_ctx *ctx, long long limit)
{
	char chunk[16384];
	for (;;) {
		int n = ctx->req.read(ctx->req.io, chunk, sizeof chunk);
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		if ((long long)(ctx->req.body.len + (size_t)n) > limit)
			return 1;
		vtp_buf_append(&ctx->req.body, chunk, (size_t)n);
	}
}

/* Reads and drops what is left of the body, up to a bound, so the web server
 * is not cut off mid-upload; past the bound the connection just closes. */
static void drain_body(struct vtp_ctx *ctx)
{
	char chunk[16384];
	long long left = 64LL << 20;
	int n;
	while (left > 0 && (n = ctx->req.read(ctx->req.io, chunk, sizeof chunk)) > 0)
		left -= n;
}

/* Accepts "application/json" with an optional charset=utf-8 parameter. */
static int is_json_content_type(const char *ct)
{
	if (!ct || strncasecmp(ct, "application/json", 16) != 0)
		return 0;
	ct += 16;
	while (*ct == ' ')
		ct++;
	if (*ct == '\0')
		return 1;
	if (*ct != ';')
		return 0;
	ct++;
	while (*ct == ' ')
		ct++;
	return strcasecmp(ct, "charset=utf-8") == 0 || strcasecmp(ct, "charset=\"utf-8\"") == 0;
}

/* HEAD is answered wherever GET is (load balancers probe with it); the
 * body is dropped when the answer is written. */
static bool method_matches(const char *route_method, const char *method)
{
	return strcmp(route_method, method) == 0 || (strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0);
}

/* Whether some route's pattern is path itself, with no parameter. */
static bool is_literal_path(const char *path)
{
	for (size_t i = 0; i < vtp_routes_count; i++)
		if (strcmp(vtp_routes[i].pattern, path) == 0)
			return true;
	return false;
}

static const struct route *find_route(struct vtp_ctx *ctx)
{
	const struct route *found = NULL;
	struct vtp_buf allow = {0};
	/* A path that is some route's literal pattern (/api/v1/recordings/start)
	 * is that endpoint's whatever the method: a wrong one is 405, never a
	 * {id} route's 400 for the word taken as an id. */
	bool literal = is_literal_path(ctx->req.path);
	for (size_t i = 0; i < vtp_routes_count && !found; i++) {
		const char *params[HTTP_MAX_PARAMS] = {0};
		char *storage;
		if (literal && strchr(vtp_routes[i].pattern, '{'))
			continue;
		if (!route_match(vtp_routes[i].pattern, ctx->req.path, params, &storage))
			continue;
		if (method_matches(vtp_routes[i].method, ctx->req.method)) {
			found = &vtp_routes[i];
			memcpy(ctx->params, params, sizeof params);
			ctx->param_storage = storage;
		} else {
			vtp_buf_printf(&allow, "%s%s", allow.len ? ", " : "", vtp_routes[i].method);
			if (strcmp(vtp_routes[i].method, "GET") == 0)
				vtp_buf_puts(&allow, ", HEAD");
			free(storage);
		}
	}
	if (!found && allow.len) {
		http_problem(ctx, 405, "method_not_allowed", "%.16s is not allowed here; use %s", ctx->req.method,
			     allow.data);
		http_header(ctx, "Allow", "%s", allow.data);
	} else if (!found) {
		http_problem(ctx, 404, "not_found", "no such endpoint");
	}
	vtp_buf_free(&allow);
	return found;
}

/* Each FastCGI thread keeps its own: no locks on the request path. */
static _Thread_local struct vtp_auth_cache auth_cache;

static int authenticate(struct vtp_ctx *ctx)
{
	const char *token = vtp_auth_bearer(ctx->req.authorization);
	const char *reason = NULL;
	if (!token) {
		http_problem(ctx, 401, "unauthorized", "an Authorization: Bearer token is required");
		return -1;
	}
	if (vtp_auth_verify_cached(&ctx->app->auth, &auth_cache, token, time(NULL), &ctx->who, &reason) < 0) {
		http_problem(ctx, 401, "unauthorized", "invalid token: %s", reason);
		return -1;
	}
	return 0;
}

/* A positive decimal integer of at most 18 digits, without leading zeros. */
static int is_job_id(const char *s)
{
	size_t n = strspn(s, "0123456789");
	return n >= 1 && n <= 18 && s[n] == '\0' && s[0] != '0';
}

/* Every {id} parameter must be a canonical UUID, every {job_id} a job number. */
static int check_params(struct vtp_ctx *ctx, const struct route *r)
{
	int i = 0;
	for (const char *p = strchr(r->pattern, '{'); p; p = strchr(p + 1, '{'), i++) {
		if (strncmp(p, "{id}", 4) == 0 && !route_is_uuid(ctx->params[i])) {
			http_problem(ctx, 400, "invalid_uuid", "\"%.40s\" is not a lower-case UUID", ctx->params[i]);
			return -1;
		}
		if (strncmp(p, "{job_id}", 8) == 0 && !is_job_id(ctx->params[i])) {
			http_problem(ctx, 400, "invalid_job_id", "\"%.40s\" is not a job id (a positive integer)",
				     ctx->params[i]);
			return -1;
		}
	}
	return 0;
}

static int take_body(struct vtp_ctx *ctx, const struct route *r)
{
	long long limit = ctx->app->cfg.max_body_bytes;
	if (!(r->flags & ROUTE_JSON_BODY))
		return 0;
	if (!is_json_content_type(ctx->req.content_type)) {
		http_problem(ctx, 415, "unsupported_media_type", "the body must be application/json (UTF-8)");
		return -1;
	}
	if (ctx->req.content_length > limit) {
		http_problem(ctx, 413, "body_too_large", "the body is larger than %lld bytes", limit);
		return -1;
	}
	int ret = read_body(ctx, limit);
	if (ret == 1)
		http_problem(ctx, 413, "body_too_large", "the body is larger than %lld bytes", limit);
	else if (ret < 0)
		http_problem(ctx, 400, "invalid_body", "the request body could not be read");
	return ret == 0 ? 0 : -1;
}

/* Takes a ?share= link token out of the query into ctx->share, so that
 * handlers which refuse unknown parameters never see it; access.c checks it.
 * Returns 0, or -1 after answering 400 invalid_query. */
static int take_share(struct vtp_ctx *ctx)
{
	char token[128];
	int found = http_query_get(ctx->req.query, "share", token, sizeof token);
	if (found == 0)
		return 0;
	if (found < 0 || !token[0]) {
		http_problem(ctx, 400, "invalid_query", "share must be a share token");
		return -1;
	}
	struct vtp_buf rest = {0};
	int seen = 0;
	for (const char *p = ctx->req.query; *p;) {
		size_t len = strcspn(p, "&");
		if ((len == 5 || (len > 5 && p[5] == '=')) && memcmp(p, "share", 5) == 0)
			seen++;
		else if (len > 0)
			vtp_buf_printf(&rest, "%s%.*s", rest.len ? "&" : "", (int)len, p);
		p += len;
		if (*p == '&')
			p++;
	}
	if (seen > 1) {
		vtp_buf_free(&rest);
		http_problem(ctx, 400, "invalid_query", "query parameter \"share\" is given more than once");
		return -1;
	}
	ctx->share = xstrdup(token);
	ctx->query_storage = rest.data ? rest.data : xstrdup("");
	ctx->req.query = ctx->query_storage;
	return 0;
}

/* A share link opens a recording's own endpoints without a Bearer token;
 * the caller is then anonymous (an empty sub) and access_check() decides. */
static bool share_only(const struct vtp_ctx *ctx, const struct route *r)
{
	static const char prefix[] = "/api/v1/recordings/{id}";
	const char *rest = r->pattern + sizeof prefix - 1;
	return ctx->share && (!ctx->req.authorization || !ctx->req.authorization[0]) &&
	       strncmp(r->pattern, prefix, sizeof prefix - 1) == 0 && (*rest == '\0' || *rest == '/');
}

/* A signed URL (?token=, lib/url_token.h) opens a ROUTE_URL_TOKEN route
 * without a Bearer token; its handler checks the token. */
static bool url_token_only(const struct vtp_ctx *ctx, const struct route *r)
{
	char token[128];
	return (r->flags & ROUTE_URL_TOKEN) && http_query_get(ctx->req.query, "token", token, sizeof token) != 0;
}

void router_dispatch(struct vtp_ctx *ctx)
{
	const struct route *r = find_route(ctx);
	if (!r)
		goto out;
	if (take_share(ctx) < 0)
		goto out;
	if (!(r->flags & ROUTE_PUBLIC) && !share_only(ctx, r) && !url_token_only(ctx, r) && authenticate(ctx) < 0)
		goto out;
	if (check_params(ctx, r) < 0 || take_body(ctx, r) < 0)
		goto out;
	r->handler(ctx);
	if (ctx->resp.status == 0) {
		log_error("%s %s: handler left no answer", ctx->req.method, r->pattern);
		http_problem(ctx, 500, "internal_error", "the request could not be completed");
	}
out:
	drain_body(ctx);
}
