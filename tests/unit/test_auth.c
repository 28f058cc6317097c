/* test_auth.c: unit tests of JWT verification: pinned algorithm, time claims, issuer/audience, typed claims. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../lib/auth.h"
#include "../../lib/mem.h"
#include "jwt_fixture.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SECRET "unit-test-secret-0123456789"
#define NOW ((time_t)1800000000)

static char *claims(const char *extra, long exp_offset)
{
	return xasprintf("{\"sub\":\"u-17\",\"role\":\"instructor\",\"exp\":%ld%s%s}", (long)NOW + exp_offset,
			 *extra ? "," : "", extra);
}

static struct vtp_auth hs_auth;

static int setup(void **state)
{
	(void)state;
	init_hs_auth(&hs_auth, SECRET, NULL, NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	vtp_auth_free(&hs_auth);
	return 0;
}

/* Verifies token against auth; returns 0/-1 and the reason. */
static int verify(const struct vtp_auth *auth, const char *token, const char **reason)
{
	struct vtp_principal who;
	return vtp_auth_verify(auth, token, NOW, &who, reason);
}

static void test_valid_hs256(void **state)
{
	(void)state;
	char *payload = claims("\"name\":\"Ada\",\"nbf\":1799999990", 3600);
	char *token = hs256(SECRET, strlen(SECRET), "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload);
	struct vtp_principal who;
	const char *reason = NULL;
	assert_int_equal(vtp_auth_verify(&hs_auth, token, NOW, &who, &reason), 0);
	assert_string_equal(who.sub, "u-17");
	assert_string_equal(who.name, "Ada");
	assert_int_equal(who.role, VTP_ROLE_INSTRUCTOR);
	free(token);
	free(payload);
}

static void test_sign_round_trip(void **state)
{
	(void)state;
	char *error = NULL;
	char *token = vtp_auth_sign(&hs_auth, "adm", "admin", "Root", 60, NOW, &error);
	assert_non_null(token);
	struct vtp_principal who;
	const char *reason;
	assert_int_equal(vtp_auth_verify(&hs_auth, token, NOW, &who, &reason), 0);
	assert_int_equal(who.role, VTP_ROLE_ADMIN);
	free(token);
	assert_null(vtp_auth_sign(&hs_auth, "adm", "root", NULL, 60, NOW, &error));
	assert_non_null(error);
	free(error);
}

static void test_time_claims(void **state)
{
	(void)state;
	const char *reason;
	struct {
		const char *extra;
		long exp_offset;
		int expect;
	} cases[] = {
		{"", -61, -1},			 /* expired beyond the 60 s skew */
		{"", -30, 0},			 /* expired within the skew */
		{"\"nbf\":1800000061", 600, -1}, /* not yet valid */
		{"\"nbf\":1800000030", 600, 0},	 /* nbf within the skew */
		{"\"nbf\":\"soon\"", 600, -1},	 /* nbf of the wrong type */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *payload = claims(cases[i].extra, cases[i].exp_offset);
		char *token = hs256(SECRET, strlen(SECRET), "{\"alg\":\"HS256\"}", payload);
		assert_int_equal(verify(&hs_auth, token, &reason), cases[i].expect);
		free(token);
		free(payload);
	}
	/* exp missing, or a string: libjwt alone would read it as 0 or ignore it. */
	const char *payloads[] = {"{\"sub\":\"u\",\"role\":\"admin\"}", "{\"sub\":\"u\",\"role\":\"admin\",\"exp\":\"2099\"}"};
	for (size_t i = 0; i < 2; i++) {
		char *token = hs256(SECRET, strlen(SECRET), "{\"alg\":\"HS256\"}", payloads[i]);
		assert_int_equal(verify(&hs_auth, token, &reason), -1);
		free(token);
	}
}

static void test_bad_claims(void **state)
{
	(void)state;
	const char *reason;
	const char *payloads[] = {
		"{\"role\":\"admin\",\"exp\":1800003600}",		    /* no sub */
		"{\"sub\":17,\"role\":\"admin\",\"exp\":1800003600}",	    /* sub not a string */
		"{\"sub\":\"\",\"role\":\"admin\",\"exp\":1800003600}",	    /* empty sub */
		"{\"sub\":\"u\",\"role\":\"root\",\"exp\":1800003600}",	    /* unknown role */
		"{\"sub\":\"u\",\"exp\":1800003600}",			    /* no role */
		"{\"sub\":\"u\",\"role\":\"admin\",\"exp\":1800003600,\"name\":5}", /* name not a string */
		"[1,2]",						    /* not an object */
	};
	for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++) {
		char *token = hs256(SECRET, strlen(SECRET), "{\"alg\":\"HS256\"}", payloads[i]);
		assert_int_equal(verify(&hs_auth, token, &reason), -1);
		free(token);
	}
}

static void test_wrong_key_and_alg_none(void **state)
{
	(void)state;
	const char *reason;
	char *payload = claims("", 600);
	char *token = hs256("another-secret-0123456789", 25, "{\"alg\":\"HS256\"}", payload);
	assert_int_equal(verify(&hs_auth, token, &reason), -1);
	free(token);

	char *h = b64url((const unsigned char *)"{\"alg\":\"none\"}", 14);
	char *p = b64url((const unsigned char *)payload, strlen(payload));
	char *unsigned_token = xasprintf("%s.%s.", h, p);
	assert_int_equal(verify(&hs_auth, unsigned_token, &reason), -1);
	free(unsigned_token);
	unsigned_token = xasprintf("%s.%s.c2ln", h, p);
	assert_int_equal(verify(&hs_auth, unsigned_token, &reason), -1);
	assert_string_equal(reason, "token algorithm not accepted");
	free(unsigned_token);
	free(h);
	free(p);
	free(payload);
}

static void test_garbage(void **state)
{
	(void)state;
	const char *reason;
	const char *tokens[] = {"", "abc", "a.b", "a.b.c", "...", "a.b.c.d", "e30.e30.", "!!!.###.$$$",
				"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0"};
	for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++)
		assert_int_equal(verify(&hs_auth, tokens[i], &reason), -1);
	char *huge = xmalloc(VTP_AUTH_MAX_TOKEN + 2);
	memset(huge, 'a', VTP_AUTH_MAX_TOKEN + 1);
	huge[VTP_AUTH_MAX_TOKEN + 1] = '\0';
	huge[10] = '.';
	huge[20] = '.';
	assert_int_equal(verify(&hs_auth, huge, &reason), -1);
	assert_string_equal(reason, "token too long");
	free(huge);
}

static void test_issuer_and_audience(void **state)
{
	(void)state;
	struct vtp_auth auth;
	const char *reason;
	init_hs_auth(&auth, SECRET, "https://lms.example", "vtp");
	struct {
		const char *extra;
		int expect;
	} cases[] = {
		{"\"iss\":\"https://lms.example\",\"aud\":\"vtp\"", 0},
		{"\"iss\":\"https://lms.example\",\"aud\":[\"x\",\"vtp\"]", 0},
		{"\"iss\":\"https://evil.example\",\"aud\":\"vtp\"", -1},
		{"\"iss\":\"https://lms.example\",\"aud\":\"other\"", -1},
		{"\"aud\":\"vtp\"", -1},
		{"\"iss\":\"https://lms.example\"", -1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *payload = claims(cases[i].extra, 600);
		char *token = hs256(SECRET, strlen(SECRET), "{\"alg\":\"HS256\"}", payload);
		assert_int_equal(verify(&auth, token, &reason), cases[i].expect);
		free(token);
		free(payload);
	}
	vtp_auth_free(&auth);
}

/* Writes a new key pair's PEM files; returns 0. */
static void write_key_pair(EVP_PKEY *key, const char *pub_path, const char *priv_path)
{
	FILE *f = fopen(pub_path, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PUBKEY(f, key), 1);
	fclose(f);
	f = fopen(priv_path, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
}

static void check_public_key_alg(const char *alg, EVP_PKEY *key)
{
	char dir[] = "/tmp/vtp-auth-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char *pub = xasprintf("%s/pub.pem", dir), *priv = xasprintf("%s/priv.pem", dir);
	write_key_pair(key, pub, priv);

	struct vtp_config cfg = {0};
	struct vtp_auth auth;
	char *error = NULL;
	const char *reason;
	cfg.jwt_alg = (char *)alg;
	cfg.jwt_public_key_file = pub;
	cfg.jwt_private_key_file = priv;
	assert_int_equal(vtp_auth_init(&auth, &cfg, &error), 0);

	char *token = vtp_auth_sign(&auth, "u-1", "student", NULL, 600, NOW, &error);
	assert_non_null(token);
	assert_int_equal(verify(&auth, token, &reason), 0);
	if (strcmp(alg, "ES256") == 0) /* JWS wants raw R||S (64 bytes = 86 chars), not DER */
		assert_int_equal(strlen(strrchr(token, '.') + 1), 86);
	/* A flipped signature byte fails. */
	char *last = token + strlen(token) - 2;
	*last = *last == 'A' ? 'B' : 'A';
	assert_int_equal(verify(&auth, token, &reason), -1);
	free(token);

	/* HS256 keyed with our public PEM: the classic confusion attack. */
	char *payload = claims("", 600);
	token = hs256((const char *)auth.key, auth.key_len, "{\"alg\":\"HS256\"}", payload);
	assert_int_equal(verify(&auth, token, &reason), -1);
	assert_string_equal(reason, "token algorithm not accepted");
	free(token);
	/* And a valid HS256 token signed with some secret is refused too. */
	token = hs256(SECRET, strlen(SECRET), "{\"alg\":\"HS256\"}", payload);
	assert_int_equal(verify(&auth, token, &reason), -1);
	free(token);
	free(payload);

	vtp_auth_free(&auth);
	unlink(pub);
	unlink(priv);
	rmdir(dir);
	free(pub);
	free(priv);
}

static void test_rs256(void **state)
{
	(void)state;
	EVP_PKEY *key = EVP_RSA_gen(2048);
	assert_non_null(key);
	check_public_key_alg("RS256", key);
	EVP_PKEY_free(key);
}

static void test_es256(void **state)
{
	(void)state;
	EVP_PKEY *key = EVP_EC_gen("P-256");
	assert_non_null(key);
	check_public_key_alg("ES256", key);
	EVP_PKEY_free(key);
}

static void test_config_errors(void **state)
{
	(void)state;
	struct vtp_config cfg = {0};
	struct vtp_auth auth;
	char *error = NULL;
	cfg.jwt_alg = (char *)"HS256";
	cfg.jwt_secret = (char *)"";
	/* An empty HS256 key would make libjwt skip verification. */
	assert_int_equal(vtp_auth_init(&auth, &cfg, &error), -1);
	assert_non_null(strstr(error, "JWT_SECRET"));
	free(error);
	cfg.jwt_alg = (char *)"RS256";
	cfg.jwt_public_key_file = (char *)"/nonexistent/key.pem";
	assert_int_equal(vtp_auth_init(&auth, &cfg, &error), -1);
	assert_non_null(strstr(error, "/nonexistent/key.pem"));
	free(error);
}

static void test_bearer(void **state)
{
	(void)state;
	assert_string_equal(vtp_auth_bearer("Bearer abc"), "abc");
	assert_string_equal(vtp_auth_bearer("bearer   abc"), "abc");
	assert_null(vtp_auth_bearer("Basic abc"));
	assert_null(vtp_auth_bearer("Bearer "));
	assert_null(vtp_auth_bearer("Bearerabc"));
	assert_null(vtp_auth_bearer(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_hs256),	    cmocka_unit_test(test_sign_round_trip),
		cmocka_unit_test(test_time_claims),	    cmocka_unit_test(test_bad_claims),
		cmocka_unit_test(test_wrong_key_and_alg_none), cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_issuer_and_audience), cmocka_unit_test(test_rs256),
		cmocka_unit_test(test_es256),		    cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_bearer),
	};
	return cmocka_run_group_tests_name("auth", tests, setup, teardown);
}
