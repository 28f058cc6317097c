/* auth.c: JWT checks libjwt 1.10 leaves to us: pinned alg, exp/nbf with skew, iss/aud, typed claims. */
#include "auth.h"

#include "mem.h"

#include <errno.h>
#include <json-c/json.h>
#include <jwt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Distinguishes key sets for caches; vtp_auth_init runs before any thread starts,
 * but the counter is atomic so that a future reload needs no more care. */
static unsigned long auth_generation;

static const char *const role_names[] = {"student", "instructor", "admin"};

const char *vtp_role_name(enum vtp_role role)
{
	return role_names[role];
}

int vtp_role_parse(const char *name, enum vtp_role *role)
{
	for (int i = 0; i < 3; i++)
		if (strcmp(name, role_names[i]) == 0) {
			*role = (enum vtp_role)i;
			return 0;
		}
	return -1;
}

/* Reads a whole file into a new NUL-terminated buffer (caller frees). */
static unsigned char *read_file(const char *path, size_t *len, char **error)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		*error = xasprintf("%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	struct vtp_buf b = {0};
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len < 1 << 20)
		vtp_buf_append(&b, chunk, n);
	fclose(f);
	if (b.len == 0) {
		*error = xasprintf("%s: file is empty", path);
		vtp_buf_free(&b);
		return NULL;
	}
	*len = b.len;
	return (unsigned char *)b.data;
}

int vtp_auth_init(struct vtp_auth *auth, const struct vtp_config *cfg, char **error)
{
	memset(auth, 0, sizeof *auth);
	*error = NULL;
	auth->generation = __atomic_add_fetch(&auth_generation, 1, __ATOMIC_RELAXED);
	snprintf(auth->alg, sizeof auth->alg, "%s", cfg->jwt_alg);
	if (cfg->jwt_issuer && *cfg->jwt_issuer)
		auth->issuer = xstrdup(cfg->jwt_issuer);
	if (cfg->jwt_audience && *cfg->jwt_audience)
		auth->audience = xstrdup(cfg->jwt_audience);
	if (strcmp(auth->alg, "HS256") == 0) {
		/* An empty key would make libjwt skip verification entirely. */
		if (!cfg->jwt_secret || strlen(cfg->jwt_secret) < 16) {
			*error = xstrdup("jwt_secret (JWT_SECRET) must be set to at least 16 characters for HS256");
			goto fail;
		}
		auth->key_len = auth->sign_key_len = strlen(cfg->jwt_secret);
		auth->key = (unsigned char *)xstrdup(cfg->jwt_secret);
		auth->sign_key = (unsigned char *)xstrdup(cfg->jwt_secret);
		return 0;
	}
	if (!cfg->jwt_public_key_file || !*cfg->jwt_public_key_file) {
		*error = xasprintf("jwt_public_key_file (VTP_JWT_PUBLIC_KEY_FILE) must be set for %s", auth->alg);
		goto fail;
	}
	auth->key = read_file(cfg->jwt_public_key_file, &auth->key_len, error);
	if (!auth->key)
		goto fail;
	if (cfg->jwt_private_key_file && *cfg->jwt_private_key_file) {
		auth->sign_key = read_file(cfg->jwt_private_key_file, &auth->sign_key_len, error);
		if (!auth->sign_key)
			goto fail;
	}
	return 0;
fail:
	vtp_auth_free(auth);
	return -1;
}

void vtp_auth_free(struct vtp_auth *auth)
{
	free(auth->key);
	free(auth->sign_key);
	free(auth->issuer);
	free(auth->audience);
	memset(auth, 0, sizeof *auth);
}

const char *vtp_auth_bearer(const char *header)
{
	if (!header || strncasecmp(header, "Bearer ", 7) != 0)
		return NULL;
	header += 7;
	while (*header == ' ')
		header++;
	return *header ? header : NULL;
}

static int b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Decodes unpadded base64url of length len into a new NUL-terminated buffer
 * (caller frees). Returns NULL on any character outside the alphabet. */
static char *b64url_decode(const char *in, size_t len, size_t *out_len)
{
	if (len % 4 == 1)
		return NULL;
	char *out = xmalloc(len * 3 / 4 + 3);
	size_t n = 0;
	unsigned acc = 0;
	int bits = 0;
	for (size_t i = 0; i < len; i++) {
		int v = b64url_value((unsigned char)in[i]);
		if (v < 0) {
			free(out);
			return NULL;
		}
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (char)((acc >> bits) & 0xff);
		}
	}
	out[n] = '\0';
	*out_len = n;
	return out;
}

/* Parses one base64url JSON segment into an object (caller puts it), or NULL. */
static json_object *decode_segment(const char *seg, size_t len)
{
	size_t json_len;
	char *json = b64url_decode(seg, len, &json_len);
	if (!json)
		return NULL;
	json_object *obj = NULL;
	json_tokener *tok = json_tokener_new_ex(8);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, json, (int)json_len);
	if (obj && (json_tokener_get_parse_end(tok) != json_len || !json_object_is_type(obj, json_type_object))) {
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
	free(json);
	return obj;
}

/* Reads an integer NumericDate claim. Returns 1 if present and valid, 0 if
 * absent, -1 if present but not an integer. */
static int get_time_claim(json_object *claims, const char *name, int64_t *value)
{
	json_object *v;
	if (!json_object_object_get_ex(claims, name, &v))
		return 0;
	if (json_object_is_type(v, json_type_int)) {
		*value = json_object_get_int64(v);
		return 1;
	}
	if (json_object_is_type(v, json_type_double)) {
		double d = json_object_get_double(v);
		if (!isfinite(d) || d < -9e15 || d > 9e15)
			return -1;
		*value = (int64_t)d;
		return 1;
	}
	return -1;
}

/* Copies a string claim of 1..VTP_MAX_ID_LEN bytes into dst. Returns 1 if
 * present and valid, 0 if absent, -1 if present but invalid. */
static int get_string_claim(json_object *claims, const char *name, char *dst, size_t dst_size)
{
	json_object *v;
	if (!json_object_object_get_ex(claims, name, &v))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return -1;
	size_t len = (size_t)json_object_get_string_len(v);
	if (len == 0 || len >= dst_size)
		return -1;
	memcpy(dst, json_object_get_string(v), len + 1);
	return 1;
}

static int audience_matches(json_object *claims, const char *audience)
{
	json_object *aud;
	if (!json_object_object_get_ex(claims, "aud", &aud))
		return 0;
	if (json_object_is_type(aud, json_type_string))
		return strcmp(json_object_get_string(aud), audience) == 0;
	if (!json_object_is_type(aud, json_type_array))
		return 0;
	for (size_t i = 0; i < json_object_array_length(aud); i++) {
		json_object *item = json_object_array_get_idx(aud, i);
		if (json_object_is_type(item, json_type_string) && strcmp(json_object_get_string(item), audience) == 0)
			return 1;
	}
	return 0;
}

/* vtp_auth_verify(), also giving the token's exp and nbf (INT64_MIN when absent)
 * when it is accepted. */
static int verify_full(const struct vtp_auth *auth, const char *token, time_t now, struct vtp_principal *who,
		       const char **reason, int64_t *exp_out, int64_t *nbf_out)
{
	json_object *header = NULL, *claims = NULL;
	jwt_t *jwt = NULL;
	int ret = -1;
	char role[32];

	memset(who, 0, sizeof *who);
	*reason = "malformed token";
	if (!token || !*token)
		goto out;
	size_t len = strnlen(token, VTP_AUTH_MAX_TOKEN + 1);
	if (len > VTP_AUTH_MAX_TOKEN) {
		*reason = "token too long";
		goto out;
	}
	const char *dot1 = strchr(token, '.');
	const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	if (!dot1 || !dot2 || strchr(dot2 + 1, '.') || dot2[1] == '\0')
		goto out;

	/* Pin the algorithm before libjwt sees the token: it would otherwise
	 * take it from the header (alg "none", or HS256 keyed with our public PEM). */
	header = decode_segment(token, (size_t)(dot1 - token));
	json_object *alg;
	if (!header || !json_object_object_get_ex(header, "alg", &alg) || !json_object_is_type(alg, json_type_string))
		goto out;
	if (strcmp(json_object_get_string(alg), auth->alg) != 0) {
		*reason = "token algorithm not accepted";
		goto out;
	}
	if (jwt_decode(&jwt, token, auth->key, (int)auth->key_len) != 0 || !jwt) {
		*reason = "invalid signature";
		goto out;
	}
	if (strcmp(jwt_alg_str(jwt_get_alg(jwt)), auth->alg) != 0) {
		*reason = "token algorithm not accepted";
		goto out;
	}

	/* Claims are read with json-c so their types are checked: libjwt's
	 * jwt_get_grant_int returns 0 for a string "exp". */
	claims = decode_segment(dot1 + 1, (size_t)(dot2 - dot1 - 1));
	if (!claims)
		goto out;
	int64_t exp, nbf;
	int has = get_time_claim(claims, "exp", &exp);
	if (has <= 0) {
		*reason = has == 0 ? "token has no exp claim" : "exp claim is not a number";
		goto out;
	}
	if ((int64_t)now > exp + VTP_AUTH_SKEW_S) {
		*reason = "token expired";
		goto out;
	}
	has = get_time_claim(claims, "nbf", &nbf);
	if (has < 0) {
		*reason = "nbf claim is not a number";
		goto out;
	}
	if (has > 0 && nbf > (int64_t)now + VTP_AUTH_SKEW_S) {
		*reason = "token not yet valid";
		goto out;
	}
	*exp_out = exp;
	*nbf_out = has > 0 ? nbf : INT64_MIN;
	if (get_string_claim(claims, "sub", who->sub, sizeof who->sub) <= 0) {
		*reason = "token needs a sub claim of 1 to 200 characters";
		goto out;
	}
	if (get_string_claim(claims, "role", role, sizeof role) <= 0 || vtp_role_parse(role, &who->role) < 0) {
		*reason = "token needs a role claim: admin, instructor or student";
		goto out;
	}
	if (get_string_claim(claims, "name", who->name, sizeof who->name) < 0) {
		*reason = "name claim is not a string of at most 200 characters";
		goto out;
	}
	if (auth->issuer) {
		char iss[512];
		if (get_string_claim(claims, "iss", iss, sizeof iss) <= 0 || strcmp(iss, auth->issuer) != 0) {
			*reason = "token issuer not accepted";
			goto out;
		}
	}
	if (auth->audience && !audience_matches(claims, auth->audience)) {
		*reason = "token audience not accepted";
		goto out;
	}
	*reason = NULL;
	ret = 0;
out:
	if (jwt)
		jwt_free(jwt);
	if (header)
		json_object_put(header);
	if (claims)
		json_object_put(claims);
	if (ret < 0)
		memset(who, 0, sizeof *who);
	return ret;
}

int vtp_auth_verify(const struct vtp_auth *auth, const char *token, time_t now, struct vtp_principal *who,
		    const char **reason)
{
	int64_t exp, nbf;
	return verify_full(auth, token, now, who, reason, &exp, &nbf);
}

/* Compares in time independent of where the bytes differ, so that response
 * times do not tell a client how much of another user's cached token it guessed. */
static bool same_bytes(const char *a, const char *b, size_t len)
{
	unsigned char diff = 0;
	for (size_t i = 0; i < len; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

/* exp and nbf exactly as verify_full() checks them. */
static bool slot_in_time(const struct vtp_auth_cache_slot *slot, time_t now)
{
	return (int64_t)now <= slot->exp + VTP_AUTH_SKEW_S &&
	       (slot->nbf == INT64_MIN || slot->nbf <= (int64_t)now + VTP_AUTH_SKEW_S);
}

int vtp_auth_verify_cached(const struct vtp_auth *auth, struct vtp_auth_cache *cache, const char *token, time_t now,
			   struct vtp_principal *who, const char **reason)
{
	if (cache->auth != auth || cache->generation != auth->generation) {
		memset(cache, 0, sizeof *cache);
		cache->auth = auth;
		cache->generation = auth->generation;
	}
	size_t len = token ? strnlen(token, VTP_AUTH_CACHE_TOKEN_MAX) : 0;
	bool cacheable = len > 0 && len < VTP_AUTH_CACHE_TOKEN_MAX;
	for (unsigned i = 0; cacheable && i < VTP_AUTH_CACHE_SLOTS; i++) {
		struct vtp_auth_cache_slot *slot = &cache->slot[i];
		if (slot->len != len || !same_bytes(slot->token, token, len))
			continue;
		if (!slot_in_time(slot, now)) {
			/* Expired (or the clock went back before nbf): the full
			 * check below gives the client the reason. */
			slot->len = 0;
			break;
		}
		*who = slot->who;
		*reason = NULL;
		cache->hits++;
		return 0;
	}
	cache->misses++;
	int64_t exp, nbf;
	if (verify_full(auth, token, now, who, reason, &exp, &nbf) < 0)
		return -1;
	if (cacheable) {
		struct vtp_auth_cache_slot *slot = &cache->slot[cache->next];
		cache->next = (cache->next + 1) % VTP_AUTH_CACHE_SLOTS;
		memcpy(slot->token, token, len);
		slot->len = len;
		slot->exp = exp;
		slot->nbf = nbf;
		slot->who = *who;
	}
	return 0;
}

char *vtp_auth_sign(const struct vtp_auth *auth, const char *sub, const char *role, const char *name, long ttl,
		    time_t now, char **error)
{
	jwt_t *jwt = NULL;
	char *token = NULL, *out = NULL;
	enum vtp_role parsed;

	*error = NULL;
	if (!auth->sign_key) {
		*error = xasprintf("no signing key: set jwt_private_key_file (VTP_JWT_PRIVATE_KEY_FILE) for %s", auth->alg);
		goto out;
	}
	if (vtp_role_parse(role, &parsed) < 0) {
		*error = xasprintf("role must be admin, instructor or student, not \"%.32s\"", role);
		goto out;
	}
	if (!*sub || strlen(sub) > VTP_MAX_ID_LEN || (name && strlen(name) > VTP_MAX_ID_LEN)) {
		*error = xstrdup("sub and name must be 1 to 200 characters");
		goto out;
	}
	if (jwt_new(&jwt) != 0)
		abort();
	if (jwt_set_alg(jwt, jwt_str_alg(auth->alg), auth->sign_key, (int)auth->sign_key_len) != 0 ||
	    jwt_add_grant(jwt, "sub", sub) != 0 || jwt_add_grant(jwt, "role", role) != 0 ||
	    (name && jwt_add_grant(jwt, "name", name) != 0) || jwt_add_grant_int(jwt, "iat", (long)now) != 0 ||
	    jwt_add_grant_int(jwt, "exp", (long)now + ttl) != 0 ||
	    (auth->issuer && jwt_add_grant(jwt, "iss", auth->issuer) != 0) ||
	    (auth->audience && jwt_add_grant(jwt, "aud", auth->audience) != 0)) {
		*error = xstrdup("cannot build the token");
		goto out;
	}
	token = jwt_encode_str(jwt);
	if (!token) {
		*error = xasprintf("cannot sign with the configured %s key", auth->alg);
		goto out;
	}
	out = xstrdup(token);
out:
	free(token);
	if (jwt)
		jwt_free(jwt);
	return out;
}
