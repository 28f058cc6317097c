/* auth.h: bearer JWT verification (algorithm pinned by configuration) and signing for vtp-token. */
#ifndef VTP_AUTH_H
#define VTP_AUTH_H

#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Tokens longer than this are refused before any decoding (libjwt uses alloca). */
#define VTP_AUTH_MAX_TOKEN 8192
/* Allowed clock difference for exp and nbf, in seconds. */
#define VTP_AUTH_SKEW_S 60
#define VTP_MAX_ID_LEN 200

enum vtp_role { VTP_ROLE_STUDENT, VTP_ROLE_INSTRUCTOR, VTP_ROLE_ADMIN };

struct vtp_principal {
	char sub[VTP_MAX_ID_LEN + 1];
	char name[VTP_MAX_ID_LEN + 1];
	enum vtp_role role;
};

struct vtp_auth {
	char alg[8];		 /* HS256, RS256 or ES256: the only algorithm accepted */
	unsigned char *key;	 /* HMAC secret, or the public key PEM */
	size_t key_len;
	unsigned char *sign_key; /* HMAC secret, or the private key PEM (NULL when not configured) */
	size_t sign_key_len;
	char *issuer;		 /* NULL: not checked */
	char *audience;		 /* NULL: not checked */
	unsigned long generation; /* new for every vtp_auth_init: caches made under other keys are void */
};

/* Tokens verified before, remembered so that a client sending the same bearer
 * token again costs a compare, not a signature check. One per thread (no locks):
 * zero-initialise it; it holds no heap memory. Only verified tokens enter it. */
#define VTP_AUTH_CACHE_SLOTS 8
#define VTP_AUTH_CACHE_TOKEN_MAX 1024 /* longer tokens are verified every time */

struct vtp_auth_cache_slot {
	size_t len; /* 0: empty */
	int64_t exp, nbf;
	struct vtp_principal who;
	char token[VTP_AUTH_CACHE_TOKEN_MAX];
};

struct vtp_auth_cache {
	const struct vtp_auth *auth; /* the keys the slots were verified with */
	unsigned long generation;
	unsigned next; /* round robin: the slot the next new token replaces */
	unsigned long hits, misses;
	struct vtp_auth_cache_slot slot[VTP_AUTH_CACHE_SLOTS];
};

/* Loads keys as cfg says. Returns 0, or -1 with *error set (caller frees).
 * Release with vtp_auth_free(). */
int vtp_auth_init(struct vtp_auth *auth, const struct vtp_config *cfg, char **error);
void vtp_auth_free(struct vtp_auth *auth);

/* Returns the token in an "Authorization: Bearer <token>" value, or NULL. */
const char *vtp_auth_bearer(const char *header);

/* Verifies a compact JWS. Returns 0 and fills *who, or -1 with *reason set to
 * a short static explanation fit to show the client. */
int vtp_auth_verify(const struct vtp_auth *auth, const char *token, time_t now, struct vtp_principal *who,
		    const char **reason);

/* vtp_auth_verify() through cache: a byte-identical token verified before
 * under the same keys is accepted again without its signature being checked,
 * while now is within its exp and nbf (with the same skew). Same results. */
int vtp_auth_verify_cached(const struct vtp_auth *auth, struct vtp_auth_cache *cache, const char *token, time_t now,
			   struct vtp_principal *who, const char **reason);

/* Signs a token for sub/role valid for ttl seconds from now. name may be NULL.
 * Returns a new string (caller frees) or NULL with *error set (caller frees). */
char *vtp_auth_sign(const struct vtp_auth *auth, const char *sub, const char *role, const char *name, long ttl,
		    time_t now, char **error);

const char *vtp_role_name(enum vtp_role role);
/* Returns 0 and sets *role for "admin", "instructor", "student"; -1 otherwise. */
int vtp_role_parse(const char *name, enum vtp_role *role);

#endif
