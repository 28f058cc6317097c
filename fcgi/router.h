/* router.h: the route table's shape and the one place where every request is checked before its handler. */
#ifndef VTP_ROUTER_H
#define VTP_ROUTER_H

#include "http.h"

#include <stddef.h>

typedef void (*route_handler)(struct vtp_ctx *ctx);

enum route_flags {
	ROUTE_PUBLIC = 1 << 0,	  /* no token needed */
	ROUTE_JSON_BODY = 1 << 1, /* takes an application/json body, read before the handler runs */
	ROUTE_RAW_BODY = 1 << 2,  /* the handler streams the body itself (uploads) */
	ROUTE_URL_TOKEN = 1 << 3, /* with ?token= no Bearer token is needed: the handler checks the signed token */
};

struct route {
	const char *method;
	const char *pattern; /* literal segments and {name} parameters; {id} is a UUID, {job_id} a job number */
	route_handler handler;
	unsigned flags;
};

extern const struct route vtp_routes[];
extern const size_t vtp_routes_count;

/* Matches path against pattern. On a match returns 1 and points params[i] at
 * the i-th parameter inside storage, a copy of path the caller frees; else
 * returns 0 and sets *storage to NULL. */
int route_match(const char *pattern, const char *path, const char **params, char **storage);

/* Checks a canonical lower-case UUID (8-4-4-4-12 hex digits). */
int route_is_uuid(const char *s);

/* Answers ctx->req: 404/405, authentication (401), parameters (400), body
 * (415/413/400), then the route's handler. Always leaves a response. */
void router_dispatch(struct vtp_ctx *ctx);

#endif
