/* jwt_fixture.h: what the JWT unit tests share: base64url, HS256 signing of given JSON, an HS256 verifier. */
#ifndef VTP_TEST_JWT_FIXTURE_H
#define VTP_TEST_JWT_FIXTURE_H

/* Included after cmocka.h (assert_int_equal) by each test that signs tokens; static inline, so a test that
 * uses only some of these still builds under -Werror. */
#include "../../lib/auth.h"
#include "../../lib/mem.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

/* Unpadded base64url of data; the caller frees. */
static inline char *b64url(const unsigned char *data, size_t len)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char *out = xmalloc(len * 4 / 3 + 4);
	size_t n = 0;
	unsigned acc = 0;
	int bits = 0;
	for (size_t i = 0; i < len; i++) {
		acc = (acc << 8) | data[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[n++] = alphabet[(acc >> bits) & 63];
		}
	}
	if (bits > 0)
		out[n++] = alphabet[(acc << (6 - bits)) & 63];
	out[n] = '\0';
	return out;
}

/* header.payload.HMAC-SHA256(key) with the JSON given verbatim (a test may sign what a real issuer would
 * not); the caller frees. */
static inline char *hs256(const char *key, size_t key_len, const char *header, const char *payload)
{
	char *h = b64url((const unsigned char *)header, strlen(header));
	char *p = b64url((const unsigned char *)payload, strlen(payload));
	char *signing_input = xasprintf("%s.%s", h, p);
	unsigned char mac[32];
	unsigned mac_len = 0;
	HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)signing_input, strlen(signing_input), mac,
	     &mac_len);
	char *sig = b64url(mac, mac_len);
	char *token = xasprintf("%s.%s", signing_input, sig);
	free(h);
	free(p);
	free(signing_input);
	free(sig);
	return token;
}

/* auth set up for HS256 with secret, and issuer and audience when not NULL; vtp_auth_free() frees it. */
static inline void init_hs_auth(struct vtp_auth *auth, const char *secret, const char *issuer, const char *audience)
{
	struct vtp_config cfg = {0};
	char *error = NULL;
	cfg.jwt_alg = (char *)"HS256";
	cfg.jwt_secret = (char *)secret;
	cfg.jwt_issuer = (char *)issuer;
	cfg.jwt_audience = (char *)audience;
	assert_int_equal(vtp_auth_init(auth, &cfg, &error), 0);
}

#endif
