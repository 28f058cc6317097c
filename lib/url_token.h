/* url_token.h: signed, short-lived URL tokens (HMAC-SHA256) that let a player or a download link open one
 * recording's files without a Bearer header. */
#ifndef VTP_URL_TOKEN_H
#define VTP_URL_TOKEN_H

#include "config.h"

#include <stdbool.h>
#include <time.h>

/* Longest token url_token_make() or url_token_make_share() returns, without the NUL. */
#define URL_TOKEN_MAX 100
/* Room for the share id a token carries (a UUID) and its NUL. */
#define URL_TOKEN_SHARE_SIZE 37

/* What url_token_check() finds. */
enum url_token_status {
	URL_TOKEN_OK = 0,
	URL_TOKEN_INVALID = -1, /* malformed, or signed for another recording, scope or key: 403 */
	URL_TOKEN_EXPIRED = -2, /* well signed but past its expiry: 403 */
};

/* A token for recording_id and scope (what it opens, e.g. "stream" or
 * "download:mp4"; the caller decides the vocabulary) valid until expires:
 * "<expires>.<43 characters of base64url HMAC>", safe in a path or a query
 * without escaping. The key is url_signing_key, else one derived from
 * jwt_secret; NULL when there is neither (the caller answers 500). The caller
 * frees the result. */
char *url_token_make(const struct vtp_config *cfg, const char *recording_id, const char *scope, time_t expires);

/* As url_token_make(), for a caller let in by the share share_id (a UUID):
 * "<expires>.<share_id>.<MAC>", the share id signed with the rest, so whoever
 * checks the token learns which share to check again (url_token_share()).
 * NULL also when share_id is not a lower-case UUID. The caller frees it. */
char *url_token_make_share(const struct vtp_config *cfg, const char *recording_id, const char *scope,
			   const char *share_id, time_t expires);

/* Checks token against recording_id and scope at time now (constant-time
 * comparison). A token of another recording or scope is URL_TOKEN_INVALID. */
enum url_token_status url_token_check(const struct vtp_config *cfg, const char *recording_id, const char *scope,
				      const char *token, time_t now);

/* The share id a token carries into out (URL_TOKEN_SHARE_SIZE bytes):
 * true for a token of url_token_make_share(), false (out empty) otherwise.
 * Not a check: read it after url_token_check() said URL_TOKEN_OK. */
bool url_token_share(const char *token, char *out);

/* The expiry written in a token (0 when malformed); not a check. */
time_t url_token_expires(const char *token);

/* Shortest web-server link secret url_link_query() accepts: a shorter one
 * could be guessed from the links it signs. */
#define URL_LINK_SECRET_MIN 32
/* Room url_link_query() needs: "md5=", 22 base64url characters, "&expires=", up to 20 digits, the NUL. */
#define URL_LINK_QUERY_SIZE 64

/* The query of a link that nginx checks itself (ngx_http_secure_link_module with
 *   secure_link $arg_md5,$arg_expires;
 *   secure_link_md5 "$secure_link_expires$uri <secret>";):
 * "md5=<base64url MD5 of expires, path, ' ', secret>&expires=<expires>" into
 * out (size >= URL_LINK_QUERY_SIZE). path is the URI path exactly as nginx's
 * $uri will be (decoded, normalised). Returns 0, or -1 when the secret is
 * shorter than URL_LINK_SECRET_MIN, path is not an absolute path of printable
 * ASCII or expires is not positive. */
int url_link_query(const char *secret, const char *path, time_t expires, char *out, size_t size);

#endif
