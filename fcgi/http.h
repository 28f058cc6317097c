/* http.h: the request and response of one API call, RFC 7807 problems, JSON answers and query strings. */
#ifndef VTP_HTTP_H
#define VTP_HTTP_H

#include "../lib/auth.h"
#include "../lib/mem.h"

#include <json-c/json.h>
#include <stdbool.h>

struct vtp_db;
struct vtp_app;

/* Reads up to n bytes of the request body; returns bytes read, 0 at the end, -1 on error. */
typedef int (*http_read_fn)(void *io, char *buf, int n);

struct vtp_request {
	const char *method;
	char *path; /* the routed path, without the query; owned */
	const char *query; /* raw query string, "" when none */
	const char *content_type;
	long long content_length; /* -1 when not given */
	const char *authorization;
	const char *user_agent;
	const char *remote_addr;
	struct vtp_buf body; /* filled by the router for routes that take a body */
	http_read_fn read;
	void *io;
	/* Any other CGI/FastCGI parameter (HTTP_RANGE, HTTP_IF_NONE_MATCH, what
	 * the web server sets with fastcgi_param or SetEnv): use http_param(). */
	const char *(*param)(const char *name, void *env);
	void *param_env;
};

/* Writes len bytes of an answer; returns 0, or -1 when the client went away. */
typedef int (*http_write_fn)(void *io, const char *data, size_t len);

struct vtp_response {
	int status;
	struct vtp_buf headers; /* "Name: value\r\n" lines */
	struct vtp_buf body;
	/* A body too large to buffer (file downloads): stream() writes
	 * stream_len bytes after the buffered body, once the headers are out;
	 * stream_free() releases stream_arg in any case. NULL: none. */
	int (*stream)(void *arg, http_write_fn write, void *io);
	void (*stream_free)(void *arg);
	void *stream_arg;
	long long stream_len;
	bool head_only; /* a HEAD request: the headers a GET would get, no body */
};

#define HTTP_MAX_PARAMS 4

/* Everything one request needs; lives for one request. */
struct vtp_ctx {
	struct vtp_request req;
	struct vtp_response resp;
	struct vtp_principal who; /* set when the route needs authentication */
	const char *params[HTTP_MAX_PARAMS]; /* path parameters in pattern order, e.g. {id} */
	char *param_storage;			/* owned backing store for params */
	char *share;	/* a ?share= link token, taken out of req.query by the router (access.c checks it); owned */
	char *query_storage; /* owned backing store for req.query once the router took share out */
	const struct vtp_app *app;
	struct vtp_db *db;
};

/* Sets an RFC 7807 answer. code is a stable snake_case identifier. */
void http_problem(struct vtp_ctx *ctx, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Runs one statement on the request's connection. Returns the result (caller
 * PQclear()s), or NULL after answering 503 (database unavailable, with
 * Retry-After) or 500. */
struct pg_result *http_query(struct vtp_ctx *ctx, const char *sql, int nparams, const char *const *params);
/* Sets a JSON answer and takes ownership of body (NULL: no body). */
void http_json(struct vtp_ctx *ctx, int status, json_object *body);
/* Sets a JSON answer whose text the caller wrote (fcgi/json_out.h): takes
 * body's memory over and leaves body empty (the caller may still free it). */
void http_json_text(struct vtp_ctx *ctx, int status, struct vtp_buf *body);
void http_header(struct vtp_ctx *ctx, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *http_reason(int status);
/* The CGI/FastCGI parameter name of the request, or NULL. */
static inline const char *http_param(const struct vtp_ctx *ctx, const char *name)
{
	return ctx->req.param ? ctx->req.param(name, ctx->req.param_env) : NULL;
}

/* Serialises the head of the response as a CGI/FastCGI answer into out;
 * resp->body follows it when http_has_body() (not for 204, 304 or HEAD). */
void http_serialise_head(const struct vtp_response *resp, struct vtp_buf *out);
bool http_has_body(const struct vtp_response *resp);
void http_ctx_free(struct vtp_ctx *ctx);

/* Looks name up in a query string and percent-decodes its value into out.
 * Returns 1 when found, 0 when absent, -1 when malformed, not UTF-8, or
 * longer than out. */
int http_query_get(const char *query, const char *name, char *out, size_t out_size);
/* Returns NULL when every parameter in query is named in allowed (NULL-terminated,
 * at most 64 names) and none is repeated, else a new message saying which one
 * is unknown or repeated (caller frees). */
char *http_query_check(const char *query, const char *const *allowed);
/* The same check for the request's own query: returns 0 when it passes, -1
 * after answering 400 invalid_query. */
int http_query_only(struct vtp_ctx *ctx, const char *const *allowed);

/* Answers 200 with one page of a list: {"items": items, "next_cursor": next
 * or null}. Takes ownership of items. */
void http_page(struct vtp_ctx *ctx, json_object *items, const char *next_cursor);

/* Reads a query parameter for a list filter into buf. Returns 1 when given,
 * 0 when absent or empty, -1 after answering 400 invalid_query. */
int http_query_filter(struct vtp_ctx *ctx, const char *name, char *buf, size_t size);

/* Reads "limit" (1 to 100, default 20) into *limit. Returns 0, or -1 after
 * answering 400 invalid_query. */
int http_query_limit(struct vtp_ctx *ctx, long *limit);

#endif
