/* jobs.c: the jobs API: list, read, cancel and retry jobs of the PostgreSQL job queue. */
#include "routes.h"

#include "../lib/db.h"
#include "../lib/log.h"
#include "access.h"
#include "router.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The columns every job answer is built from (see job_json). */
#define JOB_COLUMNS                                                                                            \
	"j.id, j.kind, j.queue, j.recording_id, j.state, j.priority, j.attempts, j.max_attempts, j.progress,"  \
	" j.last_error, j.worker, vtp_rfc3339(j.run_at) AS run_at, vtp_rfc3339(j.started_at) AS started_at,"  \
	" vtp_rfc3339(j.finished_at) AS finished_at,"                                                         \
	" vtp_rfc3339(j.cancel_requested_at) AS cancel_requested_at,"                                         \
	" vtp_rfc3339(j.created_at) AS created_at, vtp_rfc3339(j.updated_at) AS updated_at"

/* The SQL condition "the caller (SUB: sub, ADMIN: is admin) may read job j":
 * admins every job, everyone else the jobs of the recordings they own. A
 * soft-deleted recording answers 404 everywhere, and so do its jobs; jobs of
 * no recording (retention, noop) are for admins only. */
#define JOB_READABLE_SQL(SUB, ADMIN)                                                                           \
	"(" ADMIN "::boolean OR EXISTS (SELECT 1 FROM recordings r WHERE r.id = j.recording_id"               \
	" AND r.deleted_at IS NULL AND r.owner_id = " SUB "))"

static const char *const states[] = {"queued", "running", "succeeded", "failed", "cancelled"};

enum job_need {
	JOB_READ,   /* admin, or the owner of the job's recording */
	JOB_MANAGE, /* admin only: cancel and retry change the shared queue */
};

static bool in_list(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

static json_object *string_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

static json_object *int64_of(const PGresult *res, int row, const char *column)
{
	return json_object_new_int64(strtoll(vtp_db_get(res, row, column), NULL, 10));
}

/* Builds one job object from row of res (JOB_COLUMNS); the caller owns it. */
static json_object *job_json(const PGresult *res, int row)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "id", int64_of(res, row, "id"));
	json_object_object_add(o, "kind", json_object_new_string(vtp_db_get(res, row, "kind")));
	json_object_object_add(o, "queue", json_object_new_string(vtp_db_get(res, row, "queue")));
	json_object_object_add(o, "recording_id", string_or_null(vtp_db_get(res, row, "recording_id")));
	json_object_object_add(o, "state", json_object_new_string(vtp_db_get(res, row, "state")));
	json_object_object_add(o, "priority", int64_of(res, row, "priority"));
	json_object_object_add(o, "attempts", int64_of(res, row, "attempts"));
	json_object_object_add(o, "max_attempts", int64_of(res, row, "max_attempts"));
	json_object_object_add(o, "progress", json_object_new_double(strtod(vtp_db_get(res, row, "progress"), NULL)));
	json_object_object_add(o, "run_at", string_or_null(vtp_db_get(res, row, "run_at")));
	json_object_object_add(o, "started_at", string_or_null(vtp_db_get(res, row, "started_at")));
	json_object_object_add(o, "finished_at", string_or_null(vtp_db_get(res, row, "finished_at")));
	json_object_object_add(o, "cancel_requested_at", string_or_null(vtp_db_get(res, row, "cancel_requested_at")));
	json_object_object_add(o, "last_error", string_or_null(vtp_db_get(res, row, "last_error")));
	json_object_object_add(o, "worker", string_or_null(vtp_db_get(res, row, "worker")));
	json_object_object_add(o, "created_at", string_or_null(vtp_db_get(res, row, "created_at")));
	json_object_object_add(o, "updated_at", string_or_null(vtp_db_get(res, row, "updated_at")));
	return o;
}

/* Reads job id as the caller may see it. Returns the one-row result (caller
 * PQclear()s), or NULL after answering: 404 job_not_found when it does not
 * exist or the caller may not read it (its existence must not leak), 403 when
 * the caller may read it but need is JOB_MANAGE, or 503/500. */
static PGresult *read_job(struct vtp_ctx *ctx, const char *id, enum job_need need)
{
	static const char sql[] =
		"SELECT " JOB_COLUMNS ","
		" EXISTS (SELECT 1 FROM recordings r WHERE r.id = j.recording_id AND r.deleted_at IS NOT NULL)"
		"  AS recording_deleted"
		" FROM jobs j WHERE j.id = $1 AND " JOB_READABLE_SQL("$2", "$3");
	const char *params[] = {id, ctx->who.sub, access_sql_bool(access_is_admin(ctx))};
	PGresult *res = http_query(ctx, sql, 3, params);
	if (!res)
		return NULL;
	if (PQntuples(res) != 1) {
		http_problem(ctx, 404, "job_not_found", "no job %s", id);
		goto fail;
	}
	if (need == JOB_MANAGE && !access_is_admin(ctx)) {
		http_problem(ctx, 403, "forbidden", "only an admin may cancel or retry jobs");
		goto fail;
	}
	return res;
fail:
	PQclear(res);
	return NULL;
}

void jobs_get(struct vtp_ctx *ctx)
{
	PGresult *res = read_job(ctx, ctx->params[0], JOB_READ);
	if (!res)
		goto out;
	http_json(ctx, 200, job_json(res, 0));
out:
	PQclear(res);
}

/* Cancel and retry share one shape: check access, run the admin SQL function
 * (sql/002_worker.sql) so that the API and an admin's psql session change a
 * job in exactly the same way, then answer 202 with the job as it is now, or
 * 409 when the function changed nothing because of the job's state. */
struct job_action {
	const char *sql;	  /* $1 = job id; returns the ids it changed */
	const char *verb;	  /* past participle, for the log and the 409 detail */
	const char *conflict;	  /* the 409 code */
	const char *allowed;	  /* the states it acts on, for the 409 detail */
	bool only_live_recording; /* refuse (409) a job of a deleted recording, but for its purge */
};

static void job_act(struct vtp_ctx *ctx, const struct job_action *act)
{
	const char *id = ctx->params[0];
	PGresult *before = NULL, *changed = NULL, *after = NULL;

	before = read_job(ctx, id, JOB_MANAGE);
	if (!before)
		goto out;
	if (act->only_live_recording && strcmp(vtp_db_get(before, 0, "recording_deleted"), "t") == 0 &&
	    strcmp(vtp_db_get(before, 0, "kind"), "purge") != 0) {
		http_problem(ctx, 409, act->conflict, "job %s belongs to a deleted recording; only its purge can be %s",
			     id, act->verb);
		goto out;
	}
	const char *params[] = {id};
	changed = http_query(ctx, act->sql, 1, params);
	if (!changed)
		goto out;
	/* Read again: the function's update is not visible to the statement
	 * that ran it, and the answer must show the job as it now is. */
	after = read_job(ctx, id, JOB_MANAGE);
	if (!after)
		goto out;
	if (PQntuples(changed) == 0) {
		http_problem(ctx, 409, act->conflict, "job %s is %s; only a %s job can be %s", id,
			     vtp_db_get(after, 0, "state"), act->allowed, act->verb);
		goto out;
	}
	log_info("job %s (%s) %s by %s", id, vtp_db_get(after, 0, "kind"), act->verb, ctx->who.sub);
	http_json(ctx, 202, job_json(after, 0));
out:
	PQclear(before);
	PQclear(changed);
	PQclear(after);
}

void jobs_cancel(struct vtp_ctx *ctx)
{
	/* A queued job is cancelled at once; a running one gets
	 * cancel_requested_at, and 002's trigger NOTIFYs its worker, which stops
	 * it. Asking again while it stops is still 202. */
	static const struct job_action cancel = {
		"SELECT id FROM vtp_cancel_job($1::bigint) AS id",
		"cancelled",
		"job_not_cancellable",
		"queued or running",
		false,
	};
	job_act(ctx, &cancel);
}

void jobs_retry(struct vtp_ctx *ctx)
{
	/* The job of a deleted recording would only fail again (or worse,
	 * recreate files a purge removed): only its purge may be retried. */
	static const struct job_action retry = {
		"SELECT id FROM vtp_retry_job($1::bigint) AS id",
		"retried",
		"job_not_retryable",
		"failed or cancelled",
		true,
	};
	job_act(ctx, &retry);
}

/* A job id as text: a positive decimal integer of at most 18 digits without
 * leading zeros (what the router accepts for {job_id}). */
static bool is_job_id(const char *s)
{
	size_t n = strspn(s, "0123456789");
	return n >= 1 && n <= 18 && s[n] == '\0' && s[0] != '0';
}

/* A cursor is "<id of the last job on the page>.<check>", check being 8 hex
 * digits of an FNV-1a hash of the id: an edited or truncated cursor is then
 * refused (400 invalid_cursor) rather than silently paging from elsewhere.
 * It guards against mistakes, not forgery, and needs not: the access rule
 * applies to every page whatever the cursor. */
static void cursor_check(const char *id, char out[9])
{
	uint32_t h = 2166136261u;
	for (const char *p = "vtp-jobs:"; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	for (const char *p = id; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	snprintf(out, 9, "%08x", h);
}

/* Splits a cursor in place into its job id; returns false when it is not one this server made. */
static bool parse_cursor(char *cursor)
{
	char *dot = strchr(cursor, '.');
	char check[9];
	if (!dot)
		return false;
	*dot = '\0';
	if (!is_job_id(cursor))
		return false;
	cursor_check(cursor, check);
	return strcmp(dot + 1, check) == 0;
}

/* A kind as the jobs table spells one; an unknown kind just lists nothing. */
static bool is_kind(const char *s)
{
	size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_");
	return n >= 1 && n <= 32 && s[n] == '\0' && s[0] >= 'a' && s[0] <= 'z';
}

void jobs_list(struct vtp_ctx *ctx)
{
	static const char *const allowed[] = {"recording_id", "state", "kind", "limit", "cursor", NULL};
	/* Newest first by id: ids come from one sequence, so the keyset "id <
	 * cursor" is stable while jobs are added. */
	static const char sql[] =
		"SELECT " JOB_COLUMNS " FROM jobs j"
		" WHERE ($1::uuid IS NULL OR j.recording_id = $1::uuid)"
		" AND ($2::text IS NULL OR j.state = $2)"
		" AND ($3::text IS NULL OR j.kind = $3)"
		" AND ($4::bigint IS NULL OR j.id < $4::bigint)"
		" AND " JOB_READABLE_SQL("$5", "$6")
		" ORDER BY j.id DESC LIMIT $7";
	char recording_id[64], state[32], kind[64], cursor[128], limit_plus_one[24];
	PGresult *res = NULL;
	long limit;
	int has_recording, has_state, has_kind, has_cursor;

	if (http_query_only(ctx, allowed) < 0)
		goto out;
	if ((has_recording = http_query_filter(ctx, "recording_id", recording_id, sizeof recording_id)) < 0 ||
	    (has_state = http_query_filter(ctx, "state", state, sizeof state)) < 0 ||
	    (has_kind = http_query_filter(ctx, "kind", kind, sizeof kind)) < 0 ||
	    (has_cursor = http_query_filter(ctx, "cursor", cursor, sizeof cursor)) < 0)
		goto out;
	if (has_recording && !route_is_uuid(recording_id)) {
		http_problem(ctx, 400, "invalid_query", "recording_id must be a lower-case UUID");
		goto out;
	}
	if (has_state && !in_list(state, states, sizeof states / sizeof states[0])) {
		http_problem(ctx, 400, "invalid_query", "state must be one of queued, running, succeeded, failed, cancelled");
		goto out;
	}
	if (has_kind && !is_kind(kind)) {
		http_problem(ctx, 400, "invalid_query", "kind must be a job kind such as probe or transcode");
		goto out;
	}
	if (http_query_limit(ctx, &limit) < 0)
		goto out;
	if (has_cursor && !parse_cursor(cursor)) {
		http_problem(ctx, 400, "invalid_cursor", "cursor is not one this server returned");
		goto out;
	}
	snprintf(limit_plus_one, sizeof limit_plus_one, "%ld", limit + 1);
	const char *params[] = {
		has_recording ? recording_id : NULL,
		has_state ? state : NULL,
		has_kind ? kind : NULL,
		has_cursor ? cursor : NULL,
		ctx->who.sub,
		access_sql_bool(access_is_admin(ctx)),
		limit_plus_one,
	};
	res = http_query(ctx, sql, 7, params);
	if (!res)
		goto out;
	int rows = PQntuples(res);
	bool more = rows > limit;
	if (more)
		rows = (int)limit;
	json_object *items = json_object_new_array();
	for (int i = 0; i < rows; i++)
		json_object_array_add(items, job_json(res, i));
	char *next = NULL;
	if (more) {
		const char *last = vtp_db_get(res, rows - 1, "id");
		char check[9];
		cursor_check(last, check);
		next = xasprintf("%s.%s", last, check);
	}
	http_page(ctx, items, next);
	free(next);
out:
	PQclear(res);
}

void jobs_answer_one(struct vtp_ctx *ctx, int status, const char *job_id)
{
	static const char sql[] = "SELECT " JOB_COLUMNS " FROM jobs j WHERE j.id = $1";
	const char *params[] = {job_id};
	PGresult *res = http_query(ctx, sql, 1, params);
	if (!res)
		return;
	if (PQntuples(res) == 1) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "job", job_json(res, 0));
		http_json(ctx, status, o);
	} else {
		http_problem(ctx, 500, "internal_error", "the request could not be completed");
	}
	PQclear(res);
}
