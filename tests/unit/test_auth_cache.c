/* test_auth_cache.c: unit tests of the per-thread cache of verified JWTs: hits, misses, expiry, rejected tokens, key changes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../lib/auth.h"
#include "../../lib/mem.h"
#include "jwt_fixture.h"

#include <stdlib.h>
#include <string.h>

#define SECRET "unit-test-secret-0123456789"
#define OTHER_SECRET "another-unit-test-secret-9876"
#define NOW ((time_t)1800000000)
#define HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* An HS256 token for sub with the given exp and extra claims; caller frees. */
static char *token_for(const char *key, const char *sub, time_t exp, const char *extra)
{
	char *payload = xasprintf("{\"sub\":\"%s\",\"role\":\"student\",\"exp\":%ld%s}", sub, (long)exp, extra);
	char *token = hs256(key, strlen(key), HEADER, payload);
	free(payload);
	return token;
}

static size_t used_slots(const struct vtp_auth_cache *cache)
{
	size_t n = 0;
	for (size_t i = 0; i < VTP_AUTH_CACHE_SLOTS; i++)
		n += cache->slot[i].len != 0;
	return n;
}

static void test_hit_and_miss(void **state)
{
	(void)state;
	struct vtp_auth auth;
	static struct vtp_auth_cache cache;
	init_hs_auth(&auth, SECRET, NULL, NULL);
	char *a = token_for(SECRET, "u-a", NOW + 3600, ",\"name\":\"Ada\"");
	char *b = token_for(SECRET, "u-b", NOW + 3600, "");
	struct vtp_principal who;
	const char *reason = "unset";

	assert_int_equal(vtp_auth_verify_cached(&auth, &cache, a, NOW, &who, &reason), 0);
	assert_int_equal(cache.misses, 1);
	assert_int_equal(cache.hits, 0);
	memset(&who, 0x55, sizeof who);
	assert_int_equal(vtp_auth_verify_cached(&auth, &cache, a, NOW + 10, &who, &reason), 0);
	assert_int_equal(cache.hits, 1);
	assert_null(reason);
	assert_string_equal(who.sub, "u-a");
	assert_string_equal(who.name, "Ada");
	assert_int_equal(who.role, VTP_ROLE_STUDENT);

	/* Another token, and a prefix of a cached one, are misses. */
	assert_int_equal(vtp_auth_verify_cached(&auth, &cache, b, NOW, &who, &reason), 0);
	assert_string_equal(who.sub, "u-b");
	assert_int_equal(cache.misses, 2);
	char *prefix = xstrndup(a, strlen(a) - 1);
	assert_int_equal(vtp_auth_verify_cached(&auth, &cache, prefix, NOW, &who, &reason), -1);
	assert_string_equal(reason, "invalid signature");
	assert_string_equal(who.sub, "");
	assert_int_equal(cache.misses, 3);
	assert_int_equal(cache.hits, 1);
	free(prefix);
	free(a);
	free(b);
	vtp_auth_free(&auth);
}

static void test_rejected_never_cached(void **state)
{
	(void)state;
	struct vtp_auth auth;
	static struct vtp_auth_cache cache;
	init_hs_auth(&auth, SECRET, NULL, NULL);
	char *forged = token_for(OTHER_SECRET, "u-a", NOW + 3600, "");
	char *expired = token_for(SECRET, "u-a", NOW - 3600, "");
	char *early = token_for(SECRET, "u-a", NOW + 3600, ",\"nbf\":1800000900");
	struct vtp_principal who;
	const char *reason;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(vtp_auth_verify_cached(&auth, &cache, forged, NOW, &who, &reason), -1);
		assert_string_equal(reason, "invalid signature");
		assert_int_equal(vtp_auth_verify_cached(&auth, &cache, expired, NOW, &who, &reason), -1);
		assert_string_equal(reason, "token expired");
		assert_int_equal(vtp_auth_verify_cached(&auth, &cache, early, NOW, &who, &reason), -1);
		assert_string_equal(reason, "token not yet valid");
	}
	assert_int_equal(cache.hits, 0);
	assert_int_equal(cache.misses, 9);
	assert_int_equal(used_slots(&cache), 0);
	/* The early token is cached once it is valid, and only then. */
	assert_int_equal(vtp_auth_verify_cached(&auth, &cache, early, NOW + 900, &who, &reason), 0);
	assert_int_equal(used_slots(&cache), 1);
	free(forged);
	free(expired);
	free(early);
	vtp_auth_free(&auth);
}

static void test_expiry(void **state)
{
	(void)state;
	struct vtp_auth auth;
	static struct vtp_auth_cache cache;
	init_hs_auth(&auth, SECRET, NULL, NULL);
	char *token = token_for(SECRET, "u-a", NOW + 100, "");
	struct vtp_principal who;
	const char *reason;
	assert_int_equal(vtp_auth_verify_cached(&auth, &cache, token, NOW, &who, &reason), 0);
	/* Accepted from the cache up to exp plus the same skew as vtp_auth_verify. */
	assert_int_equal(vtp_auth_verify_cached(&auth, &cache, token, NOW + 100 + VTP_AUTH_SKEW_S, &who, &reason), 0);
	assert_int_equal(cache.hits, 1);
	assert_int_equal(vtp_auth_verify_cached(&auth, &cache, token, NOW + 101 + VTP_AUTH_SKEW_S, &who, &reason), -1);
	assert_string_equal(reason, "token expired");
	assert_string_equal(who.sub, "");
	assert_int_equal(used_slots(&cache), 0);
	assert_int_equal(vtp_auth_verify_cached(&auth, &cache, token, NOW + 200 + VTP_AUTH_SKEW_S, &who, &reason), -1);
	assert_int_equal(cache.hits, 1);
	free(token);
	vtp_auth_free(&auth);
}

static void test_key_change_empties(void **state)
{
	(void)state;
	struct vtp_auth auth;
	static struct vtp_auth_cache cache;
	init_hs_auth(&auth, SECRET, NULL, NULL);
	char *token = token_for(SECRET, "u-a", NOW + 3600, "");
	struct vtp_principal who;
	const char *reason;
	assert_int_equal(vtp_auth_verify_cached(&auth, &cache, token, NOW, &who, &reason), 0);
	assert_int_equal(vtp_auth_verify_cached(&auth, &cache, token, NOW, &who, &reason), 0);
	assert_int_equal(cache.hits, 1);
	/* Reloaded with another key, possibly at the same address. */
	vtp_auth_free(&auth);
	init_hs_auth(&auth, OTHER_SECRET, NULL, NULL);
	assert_int_equal(vtp_auth_verify_cached(&auth, &cache, token, NOW, &who, &reason), -1);
	assert_string_equal(reason, "invalid signature");
	assert_int_equal(cache.hits, 0);
	assert_int_equal(used_slots(&cache), 0);
	free(token);
	vtp_auth_free(&auth);
}

static void test_bounded(void **state)
{
	(void)state;
	struct vtp_auth auth;
	static struct vtp_auth_cache cache;
	init_hs_auth(&auth, SECRET, NULL, NULL);
	char *tokens[VTP_AUTH_CACHE_SLOTS + 1];
	struct vtp_principal who;
	const char *reason;
	for (int i = 0; i <= VTP_AUTH_CACHE_SLOTS; i++) {
		char sub[16];
		snprintf(sub, sizeof sub, "u-%d", i);
		tokens[i] = token_for(SECRET, sub, NOW + 3600, "");
		assert_int_equal(vtp_auth_verify_cached(&auth, &cache, tokens[i], NOW, &who, &reason), 0);
	}
	assert_int_equal(used_slots(&cache), VTP_AUTH_CACHE_SLOTS);
	/* The oldest went to make room; the newest is still there. */
	assert_int_equal(vtp_auth_verify_cached(&auth, &cache, tokens[VTP_AUTH_CACHE_SLOTS], NOW, &who, &reason), 0);
	assert_int_equal(cache.hits, 1);
	assert_int_equal(vtp_auth_verify_cached(&auth, &cache, tokens[0], NOW, &who, &reason), 0);
	assert_int_equal(cache.hits, 1);
	assert_string_equal(who.sub, "u-0");

	/* A token too long for a slot is verified every time. */
	char *pad = xmalloc(VTP_AUTH_CACHE_TOKEN_MAX + 1);
	memset(pad, 'x', VTP_AUTH_CACHE_TOKEN_MAX);
	pad[VTP_AUTH_CACHE_TOKEN_MAX] = '\0';
	char *extra = xasprintf(",\"pad\":\"%s\"", pad);
	char *big = token_for(SECRET, "u-big", NOW + 3600, extra);
	unsigned long misses = cache.misses;
	for (int i = 0; i < 2; i++)
		assert_int_equal(vtp_auth_verify_cached(&auth, &cache, big, NOW, &who, &reason), 0);
	assert_int_equal(cache.misses, misses + 2);
	assert_string_equal(who.sub, "u-big");
	free(pad);
	free(extra);
	free(big);
	for (int i = 0; i <= VTP_AUTH_CACHE_SLOTS; i++)
		free(tokens[i]);
	vtp_auth_free(&auth);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hit_and_miss), cmocka_unit_test(test_rejected_never_cached),
		cmocka_unit_test(test_expiry),	     cmocka_unit_test(test_key_change_empties),
		cmocka_unit_test(test_bounded),
	};
	return cmocka_run_group_tests_name("auth_cache", tests, NULL, NULL);
}
