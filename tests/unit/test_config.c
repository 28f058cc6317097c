/* test_config.c: unit tests of the settings file parser (file:line errors) and environment overrides. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../lib/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[] = "/tmp/vtp-config-XXXXXX";

static void write_config(const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup(void **state)
{
	(void)state;
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	/* The tests own these settings: the caller's environment must not leak in. */
	const char *vars[] = {"DATABASE_URL", "JWT_SECRET", "STORAGE_PATH", "PORT", "VTP_API_THREADS",
			      "VTP_LOG_LEVEL", "VTP_JWT_ALG", "VTP_MAX_BODY_BYTES", "VTP_URL_SIGNING_KEY", "VTP_LEASE_S",
			      "VTP_HEARTBEAT_MS"};
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
		unsetenv(vars[i]);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	return 0;
}

static void test_defaults(void **state)
{
	(void)state;
	struct vtp_config cfg;
	char *error = NULL;
	assert_int_equal(vtp_config_load(&cfg, NULL, &error), 0);
	assert_string_equal(cfg.jwt_alg, "HS256");
	assert_int_equal(cfg.port, 8080);
	assert_int_equal(cfg.max_body_bytes, 1048576);
	assert_null(cfg.database_url);
	vtp_config_free(&cfg);
}

static void test_file_and_environment(void **state)
{
	(void)state;
	struct vtp_config cfg;
	char *error = NULL;
	write_config("# comment\n\n  database_url = postgresql:///vtp?host=/tmp \napi_threads=8\nstorage_path = /srv/a=b\n");
	setenv("VTP_API_THREADS", "2", 1);
	assert_int_equal(vtp_config_load(&cfg, path, &error), 0);
	assert_string_equal(cfg.database_url, "postgresql:///vtp?host=/tmp");
	assert_string_equal(cfg.storage_path, "/srv/a=b");
	assert_int_equal(cfg.api_threads, 2); /* the environment wins */
	vtp_config_free(&cfg);
	unsetenv("VTP_API_THREADS");
}

static void expect_error(const char *text, const char *fragment)
{
	struct vtp_config cfg;
	char *error = NULL;
	write_config(text);
	assert_int_equal(vtp_config_load(&cfg, path, &error), -1);
	assert_non_null(error);
	if (!strstr(error, fragment))
		fail_msg("error \"%s\" lacks \"%s\"", error, fragment);
	free(error);
	vtp_config_free(&cfg);
}

static void test_file_errors(void **state)
{
	(void)state;
	char where[64];
	snprintf(where, sizeof where, "%s:3:", path);
	expect_error("port = 80\n\ndatabse_url = x\n", where);
	expect_error("port = 80\n\ndatabse_url = x\n", "unknown setting \"databse_url\"");
	snprintf(where, sizeof where, "%s:1:", path);
	expect_error("port = eighty\n", where);
	expect_error("port = 70000\n", "between 1 and 65535");
	expect_error("just words\n", "expected \"key = value\"");
	expect_error("jwt_alg = none\n", "jwt_alg must be");
	expect_error("log_level = loud\n", "log_level must be");
	expect_error("jwt_alg = RS256\n", "url_signing_key is required when jwt_alg is RS256");
	expect_error("jwt_alg = ES256\n", "url_signing_key is required when jwt_alg is ES256");
}

static void expect_loads(const char *text)
{
	struct vtp_config cfg;
	char *error = NULL;
	write_config(text);
	if (vtp_config_load(&cfg, path, &error) != 0)
		fail_msg("\"%s\" was refused: %s", text, error);
	vtp_config_free(&cfg);
}

static void test_asymmetric_jwt_with_a_url_key(void **state)
{
	(void)state;
	expect_loads("jwt_alg = RS256\nurl_signing_key = 0123456789abcdef\n");
}

static void test_environment_errors(void **state)
{
	(void)state;
	struct vtp_config cfg;
	char *error = NULL;
	setenv("PORT", "x", 1);
	assert_int_equal(vtp_config_load(&cfg, NULL, &error), -1);
	assert_non_null(strstr(error, "environment PORT"));
	free(error);
	vtp_config_free(&cfg);
	unsetenv("PORT");
	assert_int_equal(vtp_config_load(&cfg, "/nonexistent/vtp.conf", &error), -1);
	assert_non_null(strstr(error, "/nonexistent/vtp.conf: cannot open"));
	free(error);
	vtp_config_free(&cfg);
}

static void test_heartbeat_must_fit_three_times_in_a_lease(void **state)
{
	(void)state;
	expect_loads("lease_s = 3\nheartbeat_ms = 1000\n");
	expect_error("lease_s = 3\nheartbeat_ms = 1001\n", "heartbeat_ms (VTP_HEARTBEAT_MS) is 1001");
	expect_error("lease_s = 3\nheartbeat_ms = 1001\n", "lease_s (VTP_LEASE_S, 3 s)");
	setenv("VTP_LEASE_S", "2", 1);
	expect_error("heartbeat_ms = 1000\n", "heartbeat_ms (VTP_HEARTBEAT_MS) is 1000");
	unsetenv("VTP_LEASE_S");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_file_and_environment),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_environment_errors),
		cmocka_unit_test(test_asymmetric_jwt_with_a_url_key),
		cmocka_unit_test(test_heartbeat_must_fit_three_times_in_a_lease),
	};
	return cmocka_run_group_tests_name("config", tests, setup, teardown);
}
