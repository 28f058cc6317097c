/* url_token.c: HMAC-SHA256 URL tokens over recording id, scope, expiry (and a share id), and nginx secure_link queries (url_token.h). */
#include "url_token.h"

#include "mem.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAC_LEN 32
#define MAC_B64_LEN 43 /* base64url of 32 bytes, unpadded */

/* The signing key: url_signing_key as given, else HMAC(jwt_secret, a fixed
 * label), so that a URL token is never a valid JWT signature and vice versa. */
static int signing_key(const struct vtp_config *cfg, unsigned char *key, size_t *key_len)
{
	const char *secret = cfg->url_signing_key, *label = "vtp url token key v1";
	if (!secret || !*secret) {
		secret = cfg->jwt_secret;
		label = "vtp url token key v1 from jwt_secret";
	}
	if (!secret || !*secret)
		return -1;
	/* The derivation costs as much as the MAC itself (a third of a segment
	 * request), so each thread keeps the last key it derived, with what it was
	 * derived from: a changed secret or label derives anew. */
	static _Thread_local struct {
		char secret[256], label[64];
		unsigned char key[MAC_LEN];
	} last;
	size_t secret_len = strlen(secret);
	if (secret_len < sizeof last.secret && strcmp(last.secret, secret) == 0 && strcmp(last.label, label) == 0) {
		memcpy(key, last.key, MAC_LEN);
		*key_len = MAC_LEN;
		return 0;
	}
	unsigned int n = 0;
	HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)label, strlen(label), key, &n);
	*key_len = n;
	if (secret_len < sizeof last.secret && n == MAC_LEN) {
		memcpy(last.secret, secret, secret_len + 1);
		snprintf(last.label, sizeof last.label, "%s", label);
		memcpy(last.key, key, MAC_LEN);
	}
	return 0;
}

static void b64url(const unsigned char *in, size_t len, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = a[(v >> 18) & 63];
		out[o++] = a[(v >> 12) & 63];
		if (i + 1 < len)
			out[o++] = a[(v >> 6) & 63];
		if (i + 2 < len)
			out[o++] = a[v & 63];
	}
	out[o] = '\0';
}

/* The MAC of one (recording, scope, expiry[, share]), base64url, into out[MAC_B64_LEN + 1]. */
static int mac(const struct vtp_config *cfg, const char *recording_id, const char *scope, long long expires,
	       const char *share_id, char *out)
{
	unsigned char key[EVP_MAX_MD_SIZE], md[EVP_MAX_MD_SIZE];
	size_t key_len = 0;
	unsigned int md_len = 0;
	if (signing_key(cfg, key, &key_len) < 0)
		return -1;
	/* Newline-separated: neither an id nor a scope may hold one, so no two
	 * different tuples give the same message (a share token's has a fifth line). */
	if (strchr(recording_id, '\n') || strchr(scope, '\n'))
		return -1;
	char *msg = share_id ? xasprintf("v1\n%s\n%s\n%lld\n%s", recording_id, scope, expires, share_id)
			     : xasprintf("v1\n%s\n%s\n%lld", recording_id, scope, expires);
	HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg, strlen(msg), md, &md_len);
	free(msg);
	OPENSSL_cleanse(key, sizeof key);
	b64url(md, MAC_LEN, out);
	return 0;
}

/* A lower-case UUID: the only share id a token carries. */
static bool is_share_id(const char *s, size_t len)
{
	static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
	if (len != sizeof shape - 1)
		return false;
	for (size_t i = 0; i < len; i++)
		if (shape[i] == '-' ? s[i] != '-' : !strchr("0123456789abcdef", s[i]) || !s[i])
			return false;
	return true;
}

char *url_token_make(const struct vtp_config *cfg, const char *recording_id, const char *scope, time_t expires)
{
	char m[MAC_B64_LEN + 1];
	if (expires <= 0 || mac(cfg, recording_id, scope, (long long)expires, NULL, m) < 0)
		return NULL;
	return xasprintf("%lld.%s", (long long)expires, m);
}

char *url_token_make_share(const struct vtp_config *cfg, const char *recording_id, const char *scope,
			   const char *share_id, time_t expires)
{
	char m[MAC_B64_LEN + 1];
	if (expires <= 0 || !share_id || !is_share_id(share_id, strlen(share_id)) ||
	    mac(cfg, recording_id, scope, (long long)expires, share_id, m) < 0)
		return NULL;
	return xasprintf("%lld.%s.%s", (long long)expires, share_id, m);
}

time_t url_token_expires(const char *token)
{
	if (!token || token[0] < '1' || token[0] > '9')
		return 0;
	char *end;
	errno = 0;
	long long v = strtoll(token, &end, 10);
	if (errno || *end != '.' || end - token > 12)
		return 0;
	return (time_t)v;
}

bool url_token_share(const char *token, char *out)
{
	const char *first = token ? strchr(token, '.') : NULL;
	const char *second = first ? strchr(first + 1, '.') : NULL;
	out[0] = '\0';
	if (!second || !is_share_id(first + 1, (size_t)(second - first - 1)))
		return false;
	memcpy(out, first + 1, URL_TOKEN_SHARE_SIZE - 1);
	out[URL_TOKEN_SHARE_SIZE - 1] = '\0';
	return true;
}

enum url_token_status url_token_check(const struct vtp_config *cfg, const char *recording_id, const char *scope,
				      const char *token, time_t now)
{
	time_t expires = url_token_expires(token);
	if (expires <= 0 || strlen(token) > URL_TOKEN_MAX)
		return URL_TOKEN_INVALID;
	char share_id[URL_TOKEN_SHARE_SIZE];
	bool shared = url_token_share(token, share_id);
	const char *given = strchr(token, '.') + 1 + (shared ? URL_TOKEN_SHARE_SIZE : 0);
	char want[MAC_B64_LEN + 1];
	if (strlen(given) != MAC_B64_LEN ||
	    mac(cfg, recording_id, scope, (long long)expires, shared ? share_id : NULL, want) < 0)
		return URL_TOKEN_INVALID;
	if (CRYPTO_memcmp(want, given, MAC_B64_LEN) != 0)
		return URL_TOKEN_INVALID;
	return now > expires ? URL_TOKEN_EXPIRED : URL_TOKEN_OK;
}

int url_link_query(const char *secret, const char *path, time_t expires, char *out, size_t size)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	char m[32];
	if (!secret || strlen(secret) < URL_LINK_SECRET_MIN || !path || path[0] != '/' || expires <= 0 ||
	    size < URL_LINK_QUERY_SIZE)
		return -1;
	/* Only what nginx's $uri can hold as signed: a space or a control
	 * character would make the signed string ambiguous with the secret. */
	for (const char *p = path; *p; p++)
		if (*p <= ' ' || *p > '~')
			return -1;
	/* MD5 because that is what the module computes; the secret ends the
	 * string, so a signed link cannot be extended into another. */
	char *msg = xasprintf("%lld%s %s", (long long)expires, path, secret);
	int ok = EVP_Digest(msg, strlen(msg), md, &md_len, EVP_md5(), NULL);
	OPENSSL_cleanse(msg, strlen(msg));
	free(msg);
	if (!ok || md_len != 16)
		return -1;
	b64url(md, md_len, m);
	int n = snprintf(out, size, "md5=%s&expires=%lld", m, (long long)expires);
	return n > 0 && (size_t)n < size ? 0 : -1;
}
