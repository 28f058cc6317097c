/* test_share_link.c: unit tests of how the router takes a ?share= link token out of the query and when it lets
 * a caller without a Bearer token through (the token itself is checked by access.c against PostgreSQL). */
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

static struct vtp_app app;

static int no_body(void *io, char *buf, int n)
{
	(void)io, (void)buf, (void)n;
	return 0;
}

static int setup_app(void **state)
{
	(void)state;
	char *error = NULL;
	memset(&app, 0, sizeof app);
	app.cfg.max_body_bytes = 1024;
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

/* Dispatches GET path?query without a token. Every case here is answered by
 * the router before a handler could reach the database (ctx.db is NULL). */
struct outcome {
	int status;
	char body[1024];
	char query[256];
	char share[128];
};

static void dispatch(const char *path, const char *query, struct outcome *o)
{
	struct vtp_ctx ctx = {0};
	ctx.app = &app;
	ctx.req.method = "GET";
	ctx.req.path = strdup(path);
	ctx.req.query = query;
	ctx.req.content_length = -1;
	ctx.req.read = no_body;
	router_dispatch(&ctx);
	o->status = ctx.resp.status;
	snprintf(o->body, sizeof o->body, "%s", ctx.resp.body.data ? ctx.resp.body.data : "");
	snprintf(o->query, sizeof o->query, "%s", ctx.req.query);
	snprintf(o->share, sizeof o->share, "%s", ctx.share ? ctx.share : "");
	http_ctx_free(&ctx);
}

static void test_share_is_taken_out_of_the_query(void **state)
{
	(void)state;
	struct outcome o;
	/* Past authentication (no token, only the link) to the UUID check: the
	 * handler would see the query without share. */
	dispatch("/api/v1/recordings/not-a-uuid", "a=1&share=tok%2Den&b=2", &o);
	assert_int_equal(o.status, 400);
	assert_non_null(strstr(o.body, "invalid_uuid"));
	assert_string_equal(o.query, "a=1&b=2");
	assert_string_equal(o.share, "tok-en");
	dispatch("/api/v1/recordings/not-a-uuid/progress", "share=t", &o);
	assert_int_equal(o.status, 400);
	assert_string_equal(o.query, "");
	assert_string_equal(o.share, "t");
	/* "shared=" is another parameter. */
	dispatch("/api/v1/recordings/not-a-uuid", "shared=1&share=t", &o);
	assert_string_equal(o.query, "shared=1");
}

static void test_malformed_or_repeated_share(void **state)
{
	(void)state;
	struct outcome o;
	const char *bad[] = {"share=", "share", "share=a&share=b", "share=%zz", "share=%00"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		dispatch("/api/v1/recordings/5d0c1f3e-0a4b-4c8d-9e2f-1a2b3c4d5e6f", bad[i], &o);
		assert_int_equal(o.status, 400);
		assert_non_null(strstr(o.body, "invalid_query"));
	}
}

static void test_link_is_no_token_elsewhere(void **state)
{
	(void)state;
	struct outcome o;
	dispatch("/api/v1/recordings", "share=t", &o);
	assert_int_equal(o.status, 401);
	dispatch("/api/v1/jobs/12", "share=t", &o);
	assert_int_equal(o.status, 401);
	dispatch("/api/v1/shares/5d0c1f3e-0a4b-4c8d-9e2f-1a2b3c4d5e6f", "share=t", &o);
	assert_int_equal(o.status, 405); /* only DELETE there; a link never authenticates it either */
	/* Without the link, a recording's endpoints need the token as before. */
	dispatch("/api/v1/recordings/not-a-uuid", "a=1", &o);
	assert_int_equal(o.status, 401);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_share_is_taken_out_of_the_query),
		cmocka_unit_test(test_malformed_or_repeated_share),
		cmocka_unit_test(test_link_is_no_token_elsewhere),
	};
	return cmocka_run_group_tests_name("share link", tests, setup_app, teardown_app);
}
