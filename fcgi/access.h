/* access.h: who may read or manage a recording, decided in one query (API.md's table). */
#ifndef VTP_ACCESS_H
#define VTP_ACCESS_H

#include "http.h"

#include <libpq-fe.h>

#include <stdbool.h>
#include <time.h>

enum access_need {
	ACCESS_READ,	 /* owner, admin, participant, a user it is shared with (counted), or a valid ?share= link (counted) */
	ACCESS_MANAGE,	 /* owner or admin */
	ACCESS_DOWNLOAD, /* as ACCESS_READ, but a share (link, or the user's) must allow downloads (can_download) */
	ACCESS_PROGRESS, /* as ACCESS_READ, but a share is only checked, not counted: a player reports often */
};

bool access_is_admin(const struct vtp_ctx *ctx);

/* True when the caller came with a share link only (no Bearer token). */
bool access_is_anonymous(const struct vtp_ctx *ctx);

/* "true"/"false" for a boolean SQL parameter. */
const char *access_sql_bool(bool b);

/* Checks the caller against recording id. Returns 0 when allowed; otherwise
 * answers 404 recording_not_found (missing, deleted, or not readable: its
 * existence must not leak), 403 forbidden (readable, not manageable) or
 * 503/500, and returns -1.
 * The owner, an admin and a participant read by identity. Anyone else reads
 * through a share: the link token the router took out of ?share= (ctx->share),
 * else a share of the recording to the caller's sub (a user share). Each
 * request a share lets in (but ACCESS_PROGRESS, and a HEAD) counts as a view
 * against its max_views and is logged in recording_access_log. A revoked,
 * expired or used up share answers 403 share_revoked, share_expired or
 * share_exhausted. An anonymous caller (no Bearer token, only ?share=) gets
 * 401 for anything but reading. */
int access_check(struct vtp_ctx *ctx, const char *id, enum access_need need);

/* The share that let a caller in, for the URL tokens handed out on its
 * strength: they carry its id (url_token_make_share()) and end with it. */
struct access_share {
	char id[37];	/* a UUID; empty when the caller reads by identity */
	time_t expires; /* the share's expires_at; 0 when it has none */
};

/* until, or the share's expiry when that is sooner: no URL a share hands
 * out outlives it. */
time_t access_share_cap(const struct access_share *share, time_t until);

/* The URL token (lib/url_token.h) for recording id and scope, valid until `until` or until the share that
 * let the caller in ends if that is sooner, then carrying the share's id so that each use checks it again
 * (access_share_valid()). NULL when there is no key to sign with; the caller frees the result. */
char *access_url_token(const struct vtp_ctx *ctx, const struct access_share *share, const char *id,
		       const char *scope, time_t until);

/* access_check(), telling through *share which share let the caller in. */
int access_check_share(struct vtp_ctx *ctx, const char *id, enum access_need need, struct access_share *share);

/* access_query(), telling through *share which share let the caller in. */
PGresult *access_query_share(struct vtp_ctx *ctx, const char *id, enum access_need need, const char *sql,
			     struct access_share *share);

/* On each request that presents a URL token made for share share_id of
 * recording id: the share must still be neither revoked nor expired (its
 * max_views is not checked again: the view that made the token was counted),
 * and may not open downloads unless it allows them; the recording must
 * exist. Returns 0, or -1 after answering 403 share_revoked / share_expired /
 * forbidden, 404 or 503/500. */
int access_share_valid(struct vtp_ctx *ctx, const char *id, const char *share_id, bool download);

/* The common start of a per-recording endpoint: access_check(), then sql
 * with $1 = id. Returns the result (caller PQclear()s), or NULL after
 * answering: the access failures above, 503/500, or 404 when the statement
 * returns no row (the recording was deleted meanwhile). */
PGresult *access_query(struct vtp_ctx *ctx, const char *id, enum access_need need, const char *sql);

/* The SQL condition "the caller ($N: sub, $M: is admin) may read recording r
 * by identity": owner, admin or participant. */
#define ACCESS_CAN_READ_DIRECT_SQL(SUB, ADMIN)                                                                 \
	"(" ADMIN "::boolean OR r.owner_id = " SUB                                                            \
	" OR EXISTS (SELECT 1 FROM recording_participants p WHERE p.recording_id = r.id AND p.user_id = " SUB \
	"))"

/* The SQL condition "the caller may read recording r": by identity, or
 * through a user share that is neither revoked, expired nor used up; shared
 * by the list and the one-statement reads (access_check() counts the views of
 * a user share, these reads do not). */
#define ACCESS_CAN_READ_SQL(SUB, ADMIN)                                                                        \
	"(" ACCESS_CAN_READ_DIRECT_SQL(SUB, ADMIN)                                                            \
	" OR EXISTS (SELECT 1 FROM recording_sharing s WHERE s.recording_id = r.id AND s.user_id = " SUB     \
	" AND s.revoked_at IS NULL AND (s.expires_at IS NULL OR s.expires_at > now())"                       \
	" AND (s.max_views IS NULL OR s.views < s.max_views)))"

#endif
