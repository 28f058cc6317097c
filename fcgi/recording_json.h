/* recording_json.h: the recording object of the API, shared by the endpoints that answer with one (recordings.c). */
#ifndef VTP_RECORDING_JSON_H
#define VTP_RECORDING_JSON_H

#include "http.h"

#include <libpq-fe.h>

/* The columns of recordings r that recording_answer() needs; select them
 * with "SELECT " RECORDING_COLUMNS " FROM ... r". RECORDING_OBJECT_COLUMNS
 * leaves out the list's paging key (cursor_us), which a single read does
 * not need and PostgreSQL computes in numeric arithmetic. */
#define RECORDING_OBJECT_COLUMNS                                                                               \
	"r.id, r.title, r.room_id, r.owner_id, r.status, r.source_type, r.source_url, r.retention_days,"     \
	" r.duration_s, r.size_bytes, vtp_rfc3339(r.created_at) AS created_at,"                              \
	" vtp_rfc3339(r.started_at) AS started_at, vtp_rfc3339(r.stopped_at) AS stopped_at,"                 \
	" vtp_rfc3339(r.updated_at) AS updated_at,"                                                          \
	" r.poster_s IS NOT NULL AS has_poster,"                                                             \
	" r.renditions::text AS renditions"
#define RECORDING_COLUMNS RECORDING_OBJECT_COLUMNS ", (extract(epoch FROM r.created_at) * 1000000)::bigint AS cursor_us"

/* Answers with the recording in the first row of res (RECORDING_COLUMNS),
 * its latest jobs included, with status (200/201/202); or with 503/500 when
 * the jobs cannot be read. */
void recording_answer(struct vtp_ctx *ctx, int status, const PGresult *res);

#endif
