/* test_router.c: unit tests of path matching, UUID checks, query strings and the router's shared checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../fcgi/app.h"
#include "../../fcgi/http.h"
#include "../../fcgi/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void test_match_literal_and_params(void **state)
{
	(void)state;
	const char *params[HTTP_MAX_PARAMS] = {0};
	char *storage = NULL;
	assert_int_equal(route_match("/health", "/health", params, &storage), 1);
	free(storage);
	assert_int_equal(route_match("/api/v1/recordings/{id}/stop", "/api/v1/recordings/abc/stop", params, &storage), 1);
	assert_string_equal(params[0], "abc");
	free(storage);
	assert_int_equal(route_match("/a/{x}/b/{y}", "/a/1/b/2", params, &storage), 1);
	assert_string_equal(params[0], "1");
	assert_string_equal(params[1], "2");
	free(storage);
}

static void test_match_rejects(void **state)
{
	(void)state;
	const char *params[HTTP_MAX_PARAMS] = {0};
	char *storage = (char *)1;
	const char *cases[][2] = {
		{"/health", "/health/"},	 {"/health", "/healthz"},	    {"/health", ""},
		{"/health", "health"},	 {"/a/{id}", "/a/"},		    {"/a/{id}", "/a"},
		{"/a/{id}", "/a/x/y"},	 {"/a/{id}/stop", "/a/x/stop/"}, {"/a/{id}/stop", "/a//stop"},
		{"/api/v1/recordings", "/api/v1/recordings/"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		assert_int_equal(route_match(cases[i][0], cases[i][1], params, &storage), 0);
		assert_null(storage);
	}
}

static void test_uuid(void **state)
{
	(void)state;
	assert_true(route_is_uuid("5d0c1f3e-0a4b-4c8d-9e2f-1a2b3c4d5e6f"));
	assert_false(route_is_uuid("5D0C1F3E-0A4B-4C8D-9E2F-1A2B3C4D5E6F"));
	assert_false(route_is_uuid("5d0c1f3e-0a4b-4c8d-9e2f-1a2b3c4d5e6"));
	assert_false(route_is_uuid("5d0c1f3e-0a4b-4c8d-9e2f-1a2b3c4d5e6f0"));
	assert_false(route_is_uuid("5d0c1f3e0a4b-4c8d-9e2f-1a2b3c4d5e6f-"));
	assert_false(route_is_uuid("5d0c1f3e-0a4b-4c8d-9e2f-1a2b3c4d5e6g"));
	assert_false(route_is_uuid(""));
}

static void test_query_get(void **state)
{
	(void)state;
	char out[16];
	assert_int_equal(http_query_get("a=1&b=x%20y+z", "b", out, sizeof out), 1);
	assert_string_equal(out, "x y z");
	assert_int_equal(http_query_get("a=1&b=2", "c", out, sizeof out), 0);
	assert_int_equal(http_query_get("", "a", out, sizeof out), 0);
	assert_int_equal(http_query_get("ab=1", "a", out, sizeof out), 0);
	assert_int_equal(http_query_get("a", "a", out, sizeof out), 1);
	assert_string_equal(out, "");
	assert_int_equal(http_query_get("a=%zz", "a", out, sizeof out), -1);
	assert_int_equal(http_query_get("a=%2", "a", out, sizeof out), -1);
	assert_int_equal(http_query_get("a=%00", "a", out, sizeof out), -1);
	assert_int_equal(http_query_get("a=0123456789abcdef", "a", out, sizeof out), -1);
	assert_int_equal(http_query_get("a=%C3%A9t%C3%A9", "a", out, sizeof out), 1); /* "été" */
	assert_int_equal(http_query_get("a=%FF", "a", out, sizeof out), -1);
	assert_int_equal(http_query_get("a=%C3", "a", out, sizeof out), -1);
	assert_int_equal(http_query_get("a=%C0%AF", "a", out, sizeof out), -1);	  /* overlong '/' */
	assert_int_equal(http_query_get("a=%ED%A0%80", "a", out, sizeof out), -1); /* a surrogate */
}

static void test_query_unknown(void **state)
{
	(void)state;
	static const char *const allowed[] = {"limit", "cursor", NULL};
	assert_null(http_query_check("limit=1&cursor=x", allowed));
	assert_null(http_query_check("", allowed));
	char *bad = http_query_check("limit=1&limits=2", allowed);
	assert_non_null(bad);
	assert_string_equal(bad, "unknown query parameter \"limits\"");
	free(bad);
	bad = http_query_check("limit=1&cursor=x&limit=2", allowed);
	assert_non_null(bad);
	assert_string_equal(bad, "query parameter \"limit\" is given more than once");
	free(bad);
}

/* A request body served from memory, as libfcgi would stream it. */
struct body_source {
	const char *data;
	size_t len, pos;
};

static int read_from_memory(void *io, char *buf, int n)
{
	struct body_source *src = io;
	size_t left = src->len - src->pos;
	size_t take = left < (size_t)n ? left : (size_t)n;
	memcpy(buf, src->data + src->pos, take);
	src->pos += take;
	return (int)take;
}

static struct vtp_app app;

static int setup_app(void **state)
{
	(void)state;
	char *error = NULL;
	memset(&app, 0, sizeof app);
	app.cfg.max_body_bytes = 64;
	app.cfg.retry_after_s = 5;
	app.cfg.jwt_alg = (char *)"HS256";
	app.cfg.jwt_secret = (char *)"a-secret-of-at-least-16-bytes";
	assert_int_equal(vtp_auth_init(&app.auth, &app.cfg, &error), 0);
	return 0;
}

static int teardown_app(void **state)
{
	(void)state;
	vtp_auth_free(&app.auth);
	return 0;
}

/* Runs one request through router_dispatch and returns the status; the
 * answer body is copied to body_out when given. */
static int dispatch(const char *method, const char *path, const char *authorization, const char *content_type,
		    const char *body, char *body_out, size_t body_out_size)
{
	struct body_source src = {body ? body : "", body ? strlen(body) : 0, 0};
	struct vtp_ctx ctx = {0};
	ctx.app = &app;
	ctx.req.method = method;
	ctx.req.path = strdup(path);
	ctx.req.query = "";
	ctx.req.authorization = authorization;
	ctx.req.content_type = content_type;
	ctx.req.content_length = body ? (long long)strlen(body) : -1;
	ctx.req.read = read_from_memory;
	ctx.req.io = &src;
	router_dispatch(&ctx);
	int status = ctx.resp.status;
	if (body_out)
		snprintf(body_out, body_out_size, "%s%s", ctx.resp.headers.data ? ctx.resp.headers.data : "",
			 ctx.resp.body.data ? ctx.resp.body.data : "");
	/* The router always drains what it did not read. */
	assert_int_equal(src.pos, src.len);
	http_ctx_free(&ctx);
	return status;
}

static void test_dispatch_not_found_and_method(void **state)
{
	(void)state;
	char out[1024];
	assert_int_equal(dispatch("GET", "/nope", NULL, NULL, NULL, out, sizeof out), 404);
	assert_non_null(strstr(out, "\"code\":\"not_found\""));
	assert_non_null(strstr(out, "application/problem+json"));
	assert_int_equal(dispatch("PUT", "/api/v1/recordings/5d0c1f3e-0a4b-4c8d-9e2f-1a2b3c4d5e6f", NULL, NULL, NULL, out,
				  sizeof out),
			 405);
	assert_non_null(strstr(out, "Allow: GET, HEAD, DELETE"));
	/* A literal path is its own endpoint: another method is 405, not an {id} route taking "start". */
	assert_int_equal(dispatch("GET", "/api/v1/recordings/start", NULL, NULL, NULL, out, sizeof out), 405);
	assert_non_null(strstr(out, "Allow: POST\r\n"));
	assert_int_equal(dispatch("GET", "/api/v1/recordings/starts", NULL, NULL, NULL, out, sizeof out), 401);
}

static void test_dispatch_needs_token(void **state)
{
	(void)state;
	char out[1024];
	assert_int_equal(dispatch("GET", "/api/v1/recordings", NULL, NULL, NULL, out, sizeof out), 401);
	assert_non_null(strstr(out, "WWW-Authenticate: Bearer error=\"invalid_token\""));
	assert_int_equal(dispatch("GET", "/api/v1/recordings", "Bearer not.a.token", NULL, NULL, out, sizeof out), 401);
	assert_int_equal(dispatch("GET", "/api/v1/recordings", "Basic dXNlcjpwYXNz", NULL, NULL, out, sizeof out), 401);
}

static char *admin_header(void)
{
	char *error = NULL;
	char *token = vtp_auth_sign(&app.auth, "admin", "admin", NULL, 600, time(NULL), &error);
	assert_non_null(token);
	char *header = xasprintf("Bearer %s", token);
	free(token);
	return header;
}

static void test_dispatch_checks_uuid_and_body(void **state)
{
	(void)state;
	char out[1024];
	char *auth = admin_header();
	assert_int_equal(dispatch("GET", "/api/v1/recordings/not-a-uuid", auth, NULL, NULL, out, sizeof out), 400);
	assert_non_null(strstr(out, "invalid_uuid"));
	/* What a client sent is quoted in the detail as well-formed UTF-8 only. */
	assert_int_equal(dispatch("GET", "/api/v1/recordings/\xff\xfe\xc3", auth, NULL, NULL, out, sizeof out), 400);
	assert_non_null(strstr(out, "\\\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\\\" is not"));
	assert_int_equal(dispatch("POST", "/api/v1/recordings/start", auth, "text/plain", "{}", out, sizeof out), 415);
	assert_int_equal(
		dispatch("POST", "/api/v1/recordings/start", auth, "application/json; charset=latin1", "{}", out, sizeof out),
		415);
	/* max_body_bytes is 64 in this test. */
	const char *big = "{\"title\":\"0123456789012345678901234567890123456789012345678901234567890123456789\"}";
	assert_int_equal(dispatch("POST", "/api/v1/recordings/start", auth, "application/json", big, out, sizeof out), 413);
	assert_non_null(strstr(out, "body_too_large"));
	free(auth);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match_literal_and_params),
		cmocka_unit_test(test_match_rejects),
		cmocka_unit_test(test_uuid),
		cmocka_unit_test(test_query_get),
		cmocka_unit_test(test_query_unknown),
		cmocka_unit_test(test_dispatch_not_found_and_method),
		cmocka_unit_test(test_dispatch_needs_token),
		cmocka_unit_test(test_dispatch_checks_uuid_and_body),
	};
	return cmocka_run_group_tests_name("router", tests, setup_app, teardown_app);
}
