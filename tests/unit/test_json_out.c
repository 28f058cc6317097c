/* test_json_out.c: unit tests of the JSON text writer against json-c, whose text it replaces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../fcgi/json_out.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

/* What json-c writes for {"k": s} with the API's flags (fcgi/http.c). */
static char *json_c_text(const char *s)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "k", s ? json_object_new_string(s) : NULL);
	char *text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return text;
}

static void assert_same_as_json_c(const char *s)
{
	struct vtp_buf b = {0};
	vtp_buf_puts(&b, "{");
	json_out_string(&b, "k", s);
	vtp_buf_puts(&b, "}");
	char *want = json_c_text(s);
	assert_string_equal(b.data, want);
	free(want);
	vtp_buf_free(&b);
}

static void test_every_byte_escaped_as_json_c_does(void **state)
{
	(void)state;
	char s[4];
	for (int c = 1; c < 256; c++) {
		s[0] = 'a';
		s[1] = (char)c;
		s[2] = 'z';
		s[3] = '\0';
		assert_same_as_json_c(s);
	}
	assert_same_as_json_c("");
	assert_same_as_json_c(NULL);
	assert_same_as_json_c("\"quoted\" \\path\\ a/b \xc3\xa9t\xc3\xa9 \xf0\x9f\x8e\xa5\n\ttab");
}

static void test_keys_get_commas_between_them(void **state)
{
	(void)state;
	struct vtp_buf b = {0};
	vtp_buf_puts(&b, "{");
	json_out_string(&b, "a", "1");
	json_out_key(&b, "o");
	vtp_buf_puts(&b, "{");
	json_out_raw(&b, "n", "2.5", "null");
	json_out_raw(&b, "m", NULL, "[]");
	vtp_buf_puts(&b, "}");
	json_out_raw(&b, "z", NULL, "null");
	vtp_buf_puts(&b, "}");
	assert_string_equal(b.data, "{\"a\":\"1\",\"o\":{\"n\":2.5,\"m\":[]},\"z\":null}");
	vtp_buf_free(&b);
}

static void test_raw_drops_whitespace_outside_strings_only(void **state)
{
	(void)state;
	struct vtp_buf b = {0};
	vtp_buf_puts(&b, "{");
	/* As PostgreSQL's json_agg(json_build_object(...)) writes it. */
	json_out_raw(&b, "jobs",
		     "[{\"id\" : 1, \"kind\" : \"a b\", \"s\" : \"q\\\" x\\\\\"}, \n {\"id\" : 2, \"kind\" : \" \\n \"}]",
		     "[]");
	vtp_buf_puts(&b, "}");
	assert_string_equal(b.data,
			    "{\"jobs\":[{\"id\":1,\"kind\":\"a b\",\"s\":\"q\\\" x\\\\\"},{\"id\":2,\"kind\":\" \\n \"}]}");
	/* The text parses to what it was. */
	json_object *o = json_tokener_parse(b.data);
	assert_non_null(o);
	json_object *jobs = json_object_object_get(o, "jobs");
	assert_string_equal(json_object_get_string(json_object_object_get(json_object_array_get_idx(jobs, 0), "s")),
			    "q\" x\\");
	json_object_put(o);
	vtp_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_byte_escaped_as_json_c_does),
		cmocka_unit_test(test_keys_get_commas_between_them),
		cmocka_unit_test(test_raw_drops_whitespace_outside_strings_only),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
