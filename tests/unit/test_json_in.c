/* test_json_in.c: unit tests of strict JSON body parsing and field checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../fcgi/json_in.h"

#include <stdio.h>
#include <string.h>

static const struct json_field spec[] = {
	{"title", FIELD_STRING, true},
	{"days", FIELD_INTEGER, false},
	{"ratio", FIELD_NUMBER, false},
	{"flag", FIELD_BOOLEAN, false},
};

/* Parses and checks body; returns the answer's status (0 when accepted) and
 * leaves the answer's code in code_out. */
static int check(const char *body, char *code_out, size_t code_size)
{
	struct vtp_ctx ctx = {0};
	json_object *obj = json_in_parse(&ctx, body, strlen(body));
	if (obj) {
		json_in_check(&ctx, obj, spec, sizeof spec / sizeof spec[0], "");
		json_object_put(obj);
	}
	code_out[0] = '\0';
	if (ctx.resp.body.data) {
		const char *code = strstr(ctx.resp.body.data, "\"code\":\"");
		if (code)
			snprintf(code_out, code_size, "%.*s", (int)strcspn(code + 8, "\""), code + 8);
	}
	int status = ctx.resp.status;
	http_ctx_free(&ctx);
	return status;
}

static void test_accepts(void **state)
{
	(void)state;
	char code[64];
	assert_int_equal(check("{\"title\":\"x\"}", code, sizeof code), 0);
	assert_int_equal(check(" {\"title\":\"x\",\"days\":3,\"ratio\":0.5,\"flag\":true} \r\n", code, sizeof code), 0);
	assert_int_equal(check("{\"title\":\"x\",\"days\":null}", code, sizeof code), 0); /* null = absent */
	assert_int_equal(check("{\"title\":\"x\",\"ratio\":2}", code, sizeof code), 0);	   /* integers are numbers */
}

static void test_rejects_bad_json(void **state)
{
	(void)state;
	char code[64];
	const char *bodies[] = {
		"",
		"{",
		"{\"title\":\"x\"} trailing",
		"{\"title\":\"x\"}{}",
		"[1]",
		"\"text\"",
		"{'title':'x'}",
		"{\"title\":\"\\xff\"}",
		"{\"title\":\"x\",}",
		"{\"a\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}",
	};
	for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
		assert_int_equal(check(bodies[i], code, sizeof code), 400);
		assert_string_equal(code, "invalid_json");
	}
	/* Invalid UTF-8 bytes. */
	assert_int_equal(check("{\"title\":\"\xc3\x28\"}", code, sizeof code), 400);
	assert_string_equal(code, "invalid_json");
}

static void test_field_rules(void **state)
{
	(void)state;
	char code[64];
	assert_int_equal(check("{\"title\":\"x\",\"extra\":1}", code, sizeof code), 400);
	assert_string_equal(code, "unknown_field");
	assert_int_equal(check("{\"title\":5}", code, sizeof code), 400);
	assert_string_equal(code, "invalid_type");
	assert_int_equal(check("{\"title\":null}", code, sizeof code), 400);
	assert_string_equal(code, "invalid_type");
	assert_int_equal(check("{\"title\":\"x\",\"days\":1.5}", code, sizeof code), 400);
	assert_string_equal(code, "invalid_type");
	assert_int_equal(check("{\"title\":\"x\",\"days\":\"42\"}", code, sizeof code), 400);
	assert_string_equal(code, "invalid_type");
	assert_int_equal(check("{\"title\":\"x\",\"flag\":1}", code, sizeof code), 400);
	assert_string_equal(code, "invalid_type");
	assert_int_equal(check("{\"days\":1}", code, sizeof code), 422);
	assert_string_equal(code, "missing_field");
	/* json-c accepts NaN and Infinity even in strict mode; they are not JSON. */
	assert_int_equal(check("{\"title\":\"x\",\"ratio\":NaN}", code, sizeof code), 400);
	assert_string_equal(code, "invalid_json");
	assert_int_equal(check("{\"title\":\"x\",\"a\":[{\"b\":-Infinity}]}", code, sizeof code), 400);
	assert_string_equal(code, "invalid_json");
	/* A NUL would cut a C string short, in a value or in a key. */
	assert_int_equal(check("{\"title\":\"a\\u0000b\"}", code, sizeof code), 422);
	assert_string_equal(code, "invalid_value");
	assert_int_equal(check("{\"title\":\"x\",\"days\\u0000junk\":1}", code, sizeof code), 422);
	/* An escaped backslash followed by the text u0000 is not a NUL. */
	assert_int_equal(check("{\"title\":\"a\\\\u0000\"}", code, sizeof code), 0);
}

static int text_status(const char *body, size_t min, size_t max, bool multiline)
{
	struct vtp_ctx ctx = {0};
	const char *out = NULL;
	json_object *obj = json_in_parse(&ctx, body, strlen(body));
	assert_non_null(obj);
	json_in_text(&ctx, obj, "t", "", min, max, multiline, &out);
	int status = ctx.resp.status;
	json_object_put(obj);
	http_ctx_free(&ctx);
	return status;
}

static void test_text(void **state)
{
	(void)state;
	assert_int_equal(text_status("{\"t\":\"Algebra I \\u2013 week 3\"}", 1, 200, false), 0);
	assert_int_equal(text_status("{\"t\":\"a\\tb\"}", 1, 200, false), 422);
	assert_int_equal(text_status("{\"t\":\"a\\nb\"}", 1, 200, false), 422);
	assert_int_equal(text_status("{\"t\":\"a\\r\\nb\"}", 1, 200, true), 0);
	assert_int_equal(text_status("{\"t\":\"\"}", 1, 200, false), 422);
	/* Length counts characters, not bytes: three 2-byte characters fit in 3. */
	assert_int_equal(text_status("{\"t\":\"\\u00e9\\u00e9\\u00e9\"}", 1, 3, false), 0);
	assert_int_equal(text_status("{\"t\":\"abcd\"}", 1, 3, false), 422);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accepts),
		cmocka_unit_test(test_rejects_bad_json),
		cmocka_unit_test(test_field_rules),
		cmocka_unit_test(test_text),
	};
	return cmocka_run_group_tests_name("json_in", tests, NULL, NULL);
}
