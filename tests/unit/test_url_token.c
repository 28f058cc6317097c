/* test_url_token.c: unit tests of signed URL tokens: round trip, expiry, and no token opening another recording,
 * scope or key; and the nginx secure_link queries of segment links. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../lib/url_token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID "5d0c9f2e-8a1b-4c3d-9e7f-0a1b2c3d4e5f"
#define OTHER "5d0c9f2e-8a1b-4c3d-9e7f-0a1b2c3d4e60"

static struct vtp_config config(const char *jwt_secret, const char *signing_key)
{
	struct vtp_config cfg;
	memset(&cfg, 0, sizeof cfg);
	cfg.jwt_secret = (char *)jwt_secret; /* read only here */
	cfg.url_signing_key = (char *)signing_key;
	return cfg;
}

static void round_trip(void **state)
{
	(void)state;
	struct vtp_config cfg = config("0123456789abcdef-secret", NULL);
	char *t = url_token_make(&cfg, ID, "stream", 2000000000);
	assert_non_null(t);
	assert_true(strlen(t) <= URL_TOKEN_MAX);
	assert_int_equal(strspn(t, "0123456789.ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_"), strlen(t));
	assert_int_equal(url_token_expires(t), 2000000000);
	assert_int_equal(url_token_check(&cfg, ID, "stream", t, 1999999999), URL_TOKEN_OK);
	assert_int_equal(url_token_check(&cfg, ID, "stream", t, 2000000000), URL_TOKEN_OK);
	assert_int_equal(url_token_check(&cfg, ID, "stream", t, 2000000001), URL_TOKEN_EXPIRED);
	free(t);
}

static void never_opens_another(void **state)
{
	(void)state;
	struct vtp_config cfg = config("0123456789abcdef-secret", NULL);
	struct vtp_config other_key = config("0123456789abcdef-secreT", NULL);
	struct vtp_config own_key = config("0123456789abcdef-secret", "a separate url signing key");
	char *t = url_token_make(&cfg, ID, "stream", 2000000000);
	assert_non_null(t);
	assert_int_equal(url_token_check(&cfg, OTHER, "stream", t, 0), URL_TOKEN_INVALID);
	assert_int_equal(url_token_check(&cfg, ID, "download:mp4", t, 0), URL_TOKEN_INVALID);
	assert_int_equal(url_token_check(&other_key, ID, "stream", t, 0), URL_TOKEN_INVALID);
	assert_int_equal(url_token_check(&own_key, ID, "stream", t, 0), URL_TOKEN_INVALID);
	/* Each thread keeps its last derived key: another secret derives anew, and so does the first one again. */
	assert_int_equal(url_token_check(&cfg, ID, "stream", t, 0), URL_TOKEN_OK);
	assert_int_equal(url_token_check(&other_key, ID, "stream", t, 0), URL_TOKEN_INVALID);
	/* A changed expiry invalidates the signature. */
	char *later = strdup(t);
	later[0] = (char)(later[0] == '2' ? '3' : '2');
	assert_int_equal(url_token_check(&cfg, ID, "stream", later, 0), URL_TOKEN_INVALID);
	/* A flipped signature character. */
	size_t n = strlen(later);
	strcpy(later, t);
	later[n - 1] = (char)(later[n - 1] == 'A' ? 'B' : 'A');
	assert_int_equal(url_token_check(&cfg, ID, "stream", later, 0), URL_TOKEN_INVALID);
	free(later);
	free(t);
}

static void malformed(void **state)
{
	(void)state;
	struct vtp_config cfg = config("0123456789abcdef-secret", NULL);
	const char *bad[] = {"", ".", "0.abc", "-1.abc", "2000000000", "2000000000.", "x.y",
			     "2000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(url_token_check(&cfg, ID, "stream", bad[i], 0), URL_TOKEN_INVALID);
	/* No key at all: no token is made, none is accepted. */
	struct vtp_config none = config(NULL, NULL);
	assert_null(url_token_make(&none, ID, "stream", 2000000000));
	char *t = url_token_make(&cfg, ID, "stream", 2000000000);
	assert_int_equal(url_token_check(&none, ID, "stream", t, 0), URL_TOKEN_INVALID);
	free(t);
	assert_null(url_token_make(&cfg, ID, "a\nb", 2000000000));
}

/* A share's token carries the share id, signed: changing or dropping it breaks the signature. */
static void share_tokens(void **state)
{
	(void)state;
	struct vtp_config cfg = config("0123456789abcdef-secret", NULL);
	const char *share = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
	char out[URL_TOKEN_SHARE_SIZE];
	char *t = url_token_make_share(&cfg, ID, "stream", share, 2000000000);
	assert_non_null(t);
	assert_true(strlen(t) <= URL_TOKEN_MAX);
	assert_int_equal(url_token_check(&cfg, ID, "stream", t, 0), URL_TOKEN_OK);
	assert_int_equal(url_token_check(&cfg, ID, "stream", t, 2000000001), URL_TOKEN_EXPIRED);
	assert_int_equal(url_token_check(&cfg, OTHER, "stream", t, 0), URL_TOKEN_INVALID);
	assert_true(url_token_share(t, out));
	assert_string_equal(out, share);
	assert_int_equal(url_token_expires(t), 2000000000);
	char *other = strdup(t);
	other[11] = '1'; /* another share id, same signature */
	assert_int_equal(url_token_check(&cfg, ID, "stream", other, 0), URL_TOKEN_INVALID);
	/* The share id cut out: the signature was over it. */
	char *plain = url_token_make(&cfg, ID, "stream", 2000000000);
	snprintf(other, strlen(t) + 1, "2000000000.%s", strrchr(t, '.') + 1);
	assert_int_equal(url_token_check(&cfg, ID, "stream", other, 0), URL_TOKEN_INVALID);
	assert_false(url_token_share(plain, out));
	assert_string_equal(out, "");
	assert_null(url_token_make_share(&cfg, ID, "stream", "not-a-uuid", 2000000000));
	assert_null(url_token_make_share(&cfg, ID, "stream", "0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D", 2000000000));
	free(plain);
	free(other);
	free(t);
}

/* The query nginx's secure_link_md5 "$secure_link_expires$uri <secret>" accepts: the expected MD5 was
 * computed outside (echo -n '<expires><path> <secret>' | openssl md5 -binary | base64url). */
static void nginx_link(void **state)
{
	(void)state;
	const char *secret = "0123456789abcdef0123456789abcdef";
	const char *path = "/api/v1/recordings/" ID "/stream/360p/seg_00000.m4s";
	char q[URL_LINK_QUERY_SIZE], other[URL_LINK_QUERY_SIZE];
	assert_int_equal(url_link_query(secret, path, 2000000000, q, sizeof q), 0);
	assert_string_equal(q, "md5=UZ_q2fwiCiQ3vQOlDfNyZg&expires=2000000000");
	/* Another recording, rendition, expiry or secret: another MD5. */
	assert_int_equal(url_link_query(secret, "/api/v1/recordings/" OTHER "/stream/360p/seg_00000.m4s", 2000000000,
					other, sizeof other), 0);
	assert_string_not_equal(q, other);
	assert_int_equal(url_link_query(secret, "/api/v1/recordings/" ID "/stream/720p/seg_00000.m4s", 2000000000,
					other, sizeof other), 0);
	assert_string_not_equal(q, other);
	assert_int_equal(url_link_query("0123456789abcdef0123456789abcdeF", path, 2000000000, other, sizeof other), 0);
	assert_string_not_equal(q, other);
	/* Refused: a short secret, a relative or odd path, no expiry, no room. */
	assert_int_equal(url_link_query("0123456789abcdef0123456789abcde", path, 2000000000, q, sizeof q), -1);
	assert_int_equal(url_link_query(NULL, path, 2000000000, q, sizeof q), -1);
	assert_int_equal(url_link_query(secret, "api/v1/x", 2000000000, q, sizeof q), -1);
	assert_int_equal(url_link_query(secret, "/a b", 2000000000, q, sizeof q), -1);
	assert_int_equal(url_link_query(secret, "/a\nb", 2000000000, q, sizeof q), -1);
	assert_int_equal(url_link_query(secret, path, 0, q, sizeof q), -1);
	assert_int_equal(url_link_query(secret, path, 2000000000, q, 20), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip),
		cmocka_unit_test(never_opens_another),
		cmocka_unit_test(malformed),
		cmocka_unit_test(share_tokens),
		cmocka_unit_test(nginx_link),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
