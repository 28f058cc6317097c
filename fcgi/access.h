/* access.h: who may read or manage a recording, decided in one query (API.md's table). */
#ifndef VTP_ACCESS_H
#define VTP_ACCESS_H

#include "http.h"

#include <libpq-fe.h>

#include <stdbool.h>

enum access_need {
	ACCESS_READ,	 /* owner, admin, participant, a user it is shared with, or a valid ?share= link (counted) */
	ACCESS_MANAGE,	 /* owner or admin */
	ACCESS_DOWNLOAD, /* as ACCESS_READ, but a ?share= link must allow downloads (can_download) */
	ACCESS_PROGRESS, /* as ACCESS_READ, but a ?share= link is only checked, not counted: a player reports often */
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
 * A caller who may not read the recording by identity may still read it with
 * the link token the router took out of ?share= (ctx->share): each request it
 * lets in (but ACCESS_PROGRESS) counts as a view against the share's
 * max_views and is logged in recording_access_log. A revoked, expired or used
 * up share answers 403 share_revoked, share_expired or share_exhausted. An
 * anonymous caller (no Bearer token, only ?share=) gets 401 for anything but
 * reading. */
int access_check(struct vtp_ctx *ctx, const char *id, enum access_need need);

/* The common start of a per-recording endpoint: access_check(), then sql
 * with $1 = id. Returns the result (caller PQclear()s), or NULL after
 * answering: the access failures above, 503/500, or 404 when the statement
 * returns no row (the recording was deleted meanwhile). */
PGresult *access_query(struct vtp_ctx *ctx, const char *id, enum access_need need, const char *sql);

/* The SQL condition "the caller ($N: sub, $M: is admin) may read recording r",
 * shared by the list and the check above. */
#define ACCESS_CAN_READ_SQL(SUB, ADMIN)                                                                        \
	"(" ADMIN "::boolean OR r.owner_id = " SUB                                                            \
	" OR EXISTS (SELECT 1 FROM recording_participants p WHERE p.recording_id = r.id AND p.user_id = " SUB \
	")"                                                                                                   \
	" OR EXISTS (SELECT 1 FROM recording_sharing s WHERE s.recording_id = r.id AND s.user_id = " SUB     \
	" AND s.revoked_at IS NULL AND (s.expires_at IS NULL OR s.expires_at > now())))"

#endif
