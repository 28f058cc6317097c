/* queue.c: all job SQL. Claims commit before work starts; later statements are fenced by (id, attempt). */
#include "queue.h"

#include "../lib/log.h"
#include "../lib/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The delay before attempt n+1: base * 2^(n-1), at most an hour. $B is the
 * base in ms, A the attempt count column. */
#define BACKOFF_SQL(A, B) "make_interval(secs => LEAST(3600, " B "::double precision / 1000 * power(2, " A " - 1)))"

/* How many times this process queued pipeline steps itself. Its own NOTIFY comes back on the connection
 * only when the supervisor next reads it, after the claim that follows the finished job: a claim hint older
 * than the last such insert is not used, or the next step (a playable job, priority 10) would be passed over
 * for a thumbnail (30) queued with it. */
static unsigned long queued_here;

void claimed_job_clear(struct claimed_job *job)
{
	free(job->payload);
	memset(job, 0, sizeof *job);
}

static void copy_field(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src ? src : "");
}

/* One claim statement; from_hint adds the lower bound of the scan. */
static enum queue_result claim_once(struct vtp_db *db, const char *queue, const char *kinds, const char *worker,
				    long lease_s, struct claim_hint *hint, bool from_hint, struct claimed_job *job)
{
	/* The ORDER BY matches jobs_claim_idx, so the claim reads the head of
	 * one queue's index (or from the hint on); SKIP LOCKED lets concurrent
	 * workers pass each other. attempts < max_attempts keeps a job whose
	 * budget an admin exhausted from breaking the claim. */
	static const char sql[] =
		"WITH next AS (SELECT id FROM jobs WHERE state = 'queued' AND queue = $1 AND run_at <= now()"
		"  AND attempts < max_attempts AND kind = ANY (string_to_array($7, ','))"
		"  AND ($4::smallint IS NULL OR (priority, run_at, id) >="
		"   ($4::smallint, timestamptz 'epoch' + $5::bigint * interval '1 microsecond', $6::bigint))"
		"  ORDER BY priority, run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED),"
		" claimed AS (UPDATE jobs j SET state = 'running', worker = $2, attempts = j.attempts + 1,"
		"  started_at = clock_timestamp(), heartbeat_at = clock_timestamp(),"
		"  lease_expires_at = clock_timestamp() + make_interval(secs => $3::integer),"
		"  progress = 0, progress_detail = NULL, updated_at = clock_timestamp()"
		"  FROM next WHERE j.id = next.id"
		"  RETURNING j.id, j.attempts, j.kind, j.queue, j.recording_id, j.payload, j.cancel_requested_at,"
		"   j.priority, j.run_at)"
		" SELECT id, attempts, kind, queue, recording_id, payload::text AS payload,"
		"  cancel_requested_at IS NOT NULL AS cancel_requested, priority,"
		"  (extract(epoch FROM run_at) * 1000000)::bigint AS run_at_us FROM claimed";
	char lease[24];
	snprintf(lease, sizeof lease, "%ld", lease_s);
	const char *params[] = {queue, worker, lease, from_hint ? hint->priority : NULL,
				from_hint ? hint->run_at_us : NULL, from_hint ? hint->id : NULL, kinds};
	PGresult *res = NULL;
	memset(job, 0, sizeof *job);
	if (vtp_db_query(db, &res, sql, 7, params) != VTP_DB_OK)
		return QUEUE_DB_ERROR;
	enum queue_result ret = QUEUE_LEASE_LOST;
	if (PQntuples(res) == 1) {
		job->id = strtoll(vtp_db_get(res, 0, "id"), NULL, 10);
		job->attempt = atoi(vtp_db_get(res, 0, "attempts"));
		copy_field(job->kind, sizeof job->kind, vtp_db_get(res, 0, "kind"));
		copy_field(job->queue, sizeof job->queue, vtp_db_get(res, 0, "queue"));
		copy_field(job->recording_id, sizeof job->recording_id, vtp_db_get(res, 0, "recording_id"));
		job->payload = xstrdup(vtp_db_get(res, 0, "payload"));
		job->cancel_requested = strcmp(vtp_db_get(res, 0, "cancel_requested"), "t") == 0;
		hint->set = true;
		hint->queued_seen = queued_here;
		copy_field(hint->priority, sizeof hint->priority, vtp_db_get(res, 0, "priority"));
		copy_field(hint->run_at_us, sizeof hint->run_at_us, vtp_db_get(res, 0, "run_at_us"));
		copy_field(hint->id, sizeof hint->id, vtp_db_get(res, 0, "id"));
		ret = QUEUE_DONE;
	}
	PQclear(res);
	return ret;
}

enum queue_result queue_claim(struct vtp_db *db, const char *queue, const char *kinds, const char *worker,
			      long lease_s, struct claim_hint *hint, struct claimed_job *job)
{
	if (hint->set && hint->queued_seen != queued_here)
		hint->set = false;
	if (hint->set) {
		enum queue_result r = claim_once(db, queue, kinds, worker, lease_s, hint, true, job);
		if (r != QUEUE_LEASE_LOST)
			return r;
		hint->set = false;
	}
	return claim_once(db, queue, kinds, worker, lease_s, hint, false, job);
}

long queue_next_run_ms(struct vtp_db *db, const char *queues, const char *kinds)
{
	static const char sql[] =
		"SELECT ceil(extract(epoch FROM min(run_at) - now()) * 1000)::bigint AS ms"
		" FROM jobs WHERE state = 'queued' AND queue = ANY (string_to_array($1, ','))"
		" AND kind = ANY (string_to_array($2, ',')) AND attempts < max_attempts";
	const char *params[] = {queues, kinds};
	PGresult *res = NULL;
	if (vtp_db_query(db, &res, sql, 2, params) != VTP_DB_OK)
		return -1;
	const char *ms = vtp_db_get(res, 0, "ms");
	long ret = ms ? atol(ms) : -1; /* NULL: nothing queued */
	if (ms && ret < 0)
		ret = 0;
	PQclear(res);
	return ret;
}

/* Formats the fencing parameters $1 id, $2 attempt, $3 worker. */
struct fence {
	char id[24], attempt[16];
};

static void fence_init(struct fence *f, const struct claimed_job *job)
{
	snprintf(f->id, sizeof f->id, "%lld", (long long)job->id);
	snprintf(f->attempt, sizeof f->attempt, "%d", job->attempt);
}

enum queue_result queue_heartbeat(struct vtp_db *db, const struct claimed_job *job, const char *worker,
				  long lease_s, double progress, bool *cancel)
{
	static const char sql[] =
		"UPDATE jobs SET heartbeat_at = clock_timestamp(),"
		" lease_expires_at = clock_timestamp() + make_interval(secs => $4::integer),"
		" progress = $5::real, updated_at = clock_timestamp()"
		" WHERE id = $1 AND attempts = $2 AND worker = $3 AND state = 'running'"
		" RETURNING cancel_requested_at IS NOT NULL AS cancel_requested";
	struct fence f;
	char lease[24], fraction[24];
	fence_init(&f, job);
	snprintf(lease, sizeof lease, "%ld", lease_s);
	snprintf(fraction, sizeof fraction, "%.4f", progress);
	const char *params[] = {f.id, f.attempt, worker, lease, fraction};
	PGresult *res = NULL;
	if (vtp_db_query(db, &res, sql, 5, params) != VTP_DB_OK)
		return QUEUE_DB_ERROR;
	enum queue_result ret = PQntuples(res) == 1 ? QUEUE_DONE : QUEUE_LEASE_LOST;
	*cancel = ret == QUEUE_DONE && strcmp(vtp_db_get(res, 0, "cancel_requested"), "t") == 0;
	PQclear(res);
	return ret;
}

/* Runs one statement inside the caller's transaction; QUEUE_DB_ERROR on failure. */
static enum queue_result tx_exec(struct vtp_db *db, const char *sql, int n, const char *const *params, PGresult **out)
{
	PGresult *res = NULL;
	if (vtp_db_query(db, &res, sql, n, params) != VTP_DB_OK)
		return QUEUE_DB_ERROR;
	if (out)
		*out = res;
	else
		PQclear(res);
	return QUEUE_DONE;
}

/* The columns every fenced update returns, for the attempt's history row. */
#define FINISH_RETURNING " RETURNING id, attempts, worker, started_at, state, last_error"

/* Writes the ended attempt to job_attempts from the job's row (same transaction). */
static enum queue_result close_attempt(struct vtp_db *db, const struct claimed_job *job, const char *outcome,
				       const char *error)
{
	static const char sql[] = "INSERT INTO job_attempts (job_id, attempt, worker, started_at, finished_at, outcome, error)"
				  " SELECT id, attempts, worker, started_at, clock_timestamp(), $3, $4 FROM jobs"
				  " WHERE id = $1 AND attempts = $2";
	struct fence f;
	fence_init(&f, job);
	const char *params[] = {f.id, f.attempt, outcome, error};
	return tx_exec(db, sql, 4, params, NULL);
}

/* What a fenced statement is given: $1 id, $2 attempt, $3 worker, then up to 5 extra parameters and
 * room for 2 more (finish()'s single-statement form). */
#define FENCED_MAX_PARAMS 10

static int fenced_params(const char *params[FENCED_MAX_PARAMS], const struct fence *f, const char *worker, int n_extra,
			 const char *const *extra)
{
	memset(params, 0, FENCED_MAX_PARAMS * sizeof *params);
	params[0] = f->id;
	params[1] = f->attempt;
	params[2] = worker;
	int n = 3;
	for (int i = 0; i < n_extra && n < FENCED_MAX_PARAMS - 2; i++)
		params[n++] = extra[i];
	return n;
}

/* A step run after the fenced statement, in its transaction, with the row it returned. */
typedef enum queue_result (*fenced_step)(struct vtp_db *db, const struct claimed_job *job, PGresult *row,
					 const void *arg);

/* Runs sql, fenced by the job's attempt and worker ($1-$3, then extra), then step(db, job, row, arg), in
 * one transaction that commits only when both succeed. QUEUE_LEASE_LOST (nothing committed) when sql
 * matched no row: the attempt is not this worker's any more. This is what keeps a worker that lost its
 * lease from finishing or publishing for the one that holds it now. */
static enum queue_result fenced_tx(struct vtp_db *db, const struct claimed_job *job, const char *worker, const char *sql,
				   int n_extra, const char *const *extra, fenced_step step, const void *arg)
{
	struct fence f;
	const char *params[FENCED_MAX_PARAMS];
	PGresult *row = NULL;
	enum queue_result ret = QUEUE_DB_ERROR;
	fence_init(&f, job);
	int n = fenced_params(params, &f, worker, n_extra, extra);
	if (vtp_db_begin(db) != VTP_DB_OK)
		return QUEUE_DB_ERROR;
	if (tx_exec(db, sql, n, params, &row) != QUEUE_DONE)
		goto out;
	if (PQntuples(row) == 0) {
		ret = QUEUE_LEASE_LOST;
		goto out;
	}
	if (step && step(db, job, row, arg) != QUEUE_DONE)
		goto out;
	if (vtp_db_commit(db) != VTP_DB_OK)
		goto out;
	ret = QUEUE_DONE;
out:
	if (ret != QUEUE_DONE)
		vtp_db_rollback(db);
	PQclear(row);
	return ret;
}

/* How an attempt ends: its history row, then after() when given. */
struct ending {
	const char *outcome, *error;
	fenced_step after;
	const void *arg;
};

static enum queue_result close_then_after(struct vtp_db *db, const struct claimed_job *job, PGresult *row,
					  const void *arg)
{
	const struct ending *e = arg;
	if (close_attempt(db, job, e->outcome, e->error) != QUEUE_DONE)
		return QUEUE_DB_ERROR;
	return e->after ? e->after(db, job, row, e->arg) : QUEUE_DONE;
}

/* Runs update (fenced by $1 id, $2 attempt, $3 worker, then extra params) and
 * closes the attempt, in one transaction, plus after(db, result row) when
 * given. Returns QUEUE_LEASE_LOST (and commits nothing) when no row matched. */
static enum queue_result finish(struct vtp_db *db, const struct claimed_job *job, const char *worker, const char *update,
				int n_extra, const char *const *extra, const char *outcome, const char *error,
				fenced_step after, const void *arg)
{
	struct ending e = {outcome, error, after, arg};
	if (job->recording_id[0])
		return fenced_tx(db, job, worker, update, n_extra, extra, close_then_after, &e);
	/* Nothing else to change: the job's row and its attempt in one
	 * statement, one round trip (data-modifying CTEs always run). */
	struct fence f;
	const char *params[FENCED_MAX_PARAMS];
	PGresult *row = NULL;
	char sql[2048];
	fence_init(&f, job);
	int n = fenced_params(params, &f, worker, n_extra, extra);
	snprintf(sql, sizeof sql,
		 "WITH j AS (%s), a AS (INSERT INTO job_attempts (job_id, attempt, worker, started_at, finished_at,"
		 " outcome, error) SELECT id, attempts, worker, started_at, clock_timestamp(), $%d, $%d FROM j)"
		 " SELECT * FROM j",
		 update, n + 1, n + 2);
	params[n] = outcome;
	params[n + 1] = error;
	if (tx_exec(db, sql, n + 2, params, &row) != QUEUE_DONE)
		return QUEUE_DB_ERROR;
	enum queue_result ret = PQntuples(row) == 0 ? QUEUE_LEASE_LOST : QUEUE_DONE;
	if (ret == QUEUE_DONE && after)
		after(db, job, row, arg); /* reads the row only: no recording, nothing to write */
	PQclear(row);
	return ret;
}

struct publish {
	const char *sql;
	const char *result;
};

/* After success: publish the result, queue the pipeline's next steps, and
 * settle the recording (ready once nothing is left to run). */
static enum queue_result publish_and_continue(struct vtp_db *db, const struct claimed_job *job, PGresult *row,
					      const void *arg)
{
	(void)row;
	const struct publish *p = arg;
	if (!job->recording_id[0])
		return QUEUE_DONE;
	const char *publish[] = {job->recording_id, p->result};
	const char *step[] = {job->recording_id, job->kind};
	if (p->sql && tx_exec(db, p->sql, 2, publish, NULL) != QUEUE_DONE)
		return QUEUE_DB_ERROR;
	PGresult *next = NULL;
	if (tx_exec(db, "SELECT vtp_pipeline_next($1, $2) AS n", 2, step, &next) != QUEUE_DONE)
		return QUEUE_DB_ERROR;
	if (atoi(vtp_db_get(next, 0, "n")) > 0)
		queued_here++;
	PQclear(next);
	return tx_exec(db, "SELECT vtp_pipeline_settle($1)", 1, step, NULL);
}

enum queue_result queue_succeed(struct vtp_db *db, const struct claimed_job *job, const char *worker,
				const char *publish_sql, const char *result)
{
	static const char sql[] =
		"UPDATE jobs SET state = 'succeeded', progress = 1, finished_at = clock_timestamp(),"
		" lease_expires_at = NULL, last_error = NULL, updated_at = clock_timestamp()"
		" WHERE id = $1 AND attempts = $2 AND worker = $3 AND state = 'running'" FINISH_RETURNING;
	struct publish p = {publish_sql, result};
	return finish(db, job, worker, sql, 0, NULL, "succeeded", NULL, publish_and_continue, &p);
}

/* Runs the publication's statement ($1 recording, $2 result). */
static enum queue_result publish_result(struct vtp_db *db, const struct claimed_job *job, PGresult *row, const void *arg)
{
	(void)row;
	const struct publish *p = arg;
	const char *params[] = {job->recording_id, p->result};
	return tx_exec(db, p->sql, 2, params, NULL);
}

enum queue_result queue_publish(struct vtp_db *db, const struct claimed_job *job, const char *worker,
				const char *publish_sql, const char *result)
{
	/* FOR UPDATE: the job cannot be finished or reaped by another worker
	 * between the check and the publication. */
	static const char sql[] = "SELECT 1 FROM jobs WHERE id = $1 AND attempts = $2 AND worker = $3 AND state = 'running'"
				  " FOR UPDATE";
	struct publish p = {publish_sql, result};
	if (!publish_sql || !job->recording_id[0])
		return QUEUE_DONE;
	return fenced_tx(db, job, worker, sql, 0, NULL, publish_result, &p);
}

static enum queue_result fail_recording(struct vtp_db *db, const struct claimed_job *job, PGresult *row, const void *arg)
{
	bool *failed = (bool *)arg;
	const char *state = vtp_db_get(row, 0, "state");
	*failed = strcmp(state, "failed") == 0 || strcmp(state, "cancelled") == 0;
	if (!*failed || !job->recording_id[0])
		return QUEUE_DONE;
	const char *params[] = {job->recording_id, job->kind, vtp_db_get(row, 0, "last_error")};
	return tx_exec(db, "SELECT vtp_pipeline_failed($1, $2, $3)", 3, params, NULL);
}

enum queue_result queue_fail(struct vtp_db *db, const struct claimed_job *job, const char *worker,
			     const char *error, bool retryable, long retry_base_ms, bool *failed)
{
	static const char sql[] =
		"UPDATE jobs SET"
		" state = CASE WHEN $5::boolean AND attempts < max_attempts THEN 'queued' ELSE 'failed' END,"
		" run_at = CASE WHEN $5::boolean AND attempts < max_attempts"
		"   THEN clock_timestamp() + " BACKOFF_SQL("attempts", "$6") " ELSE run_at END,"
		" finished_at = CASE WHEN $5::boolean AND attempts < max_attempts THEN NULL ELSE clock_timestamp() END,"
		" last_error = $4, lease_expires_at = NULL, updated_at = clock_timestamp()"
		" WHERE id = $1 AND attempts = $2 AND worker = $3 AND state = 'running'" FINISH_RETURNING;
	char base[24];
	snprintf(base, sizeof base, "%ld", retry_base_ms);
	const char *extra[] = {error, retryable ? "true" : "false", base};
	*failed = false;
	return finish(db, job, worker, sql, 3, extra, "failed", error, fail_recording, failed);
}

enum queue_result queue_cancelled(struct vtp_db *db, const struct claimed_job *job, const char *worker)
{
	static const char sql[] =
		"UPDATE jobs SET state = 'cancelled', finished_at = clock_timestamp(), lease_expires_at = NULL,"
		" last_error = 'cancelled', updated_at = clock_timestamp()"
		" WHERE id = $1 AND attempts = $2 AND worker = $3 AND state = 'running'" FINISH_RETURNING;
	bool failed = false;
	return finish(db, job, worker, sql, 0, NULL, "cancelled", NULL, fail_recording, &failed);
}

enum queue_result queue_release(struct vtp_db *db, const struct claimed_job *job, const char *worker)
{
	/* attempts stays (it is the fencing token); the attempt is given back
	 * by raising max_attempts instead. */
	static const char sql[] =
		"UPDATE jobs SET state = 'queued', run_at = clock_timestamp(), lease_expires_at = NULL,"
		" max_attempts = LEAST(max_attempts + 1, 100), updated_at = clock_timestamp()"
		" WHERE id = $1 AND attempts = $2 AND worker = $3 AND state = 'running'" FINISH_RETURNING;
	return finish(db, job, worker, sql, 0, NULL, "requeued", "worker shut down", NULL, NULL);
}

int queue_reap(struct vtp_db *db, long retry_base_ms)
{
	static const char sql[] =
		"WITH expired AS (SELECT id FROM jobs WHERE state = 'running' AND lease_expires_at < clock_timestamp()"
		"  FOR UPDATE SKIP LOCKED),"
		" upd AS (UPDATE jobs j SET"
		"  state = CASE WHEN j.attempts < j.max_attempts THEN 'queued' ELSE 'failed' END,"
		"  run_at = CASE WHEN j.attempts < j.max_attempts"
		"    THEN clock_timestamp() + " BACKOFF_SQL("j.attempts", "$1") " ELSE j.run_at END,"
		"  finished_at = CASE WHEN j.attempts < j.max_attempts THEN NULL ELSE clock_timestamp() END,"
		"  last_error = 'lease expired: worker ' || j.worker || ' stopped renewing it (crashed or cut off?)',"
		"  lease_expires_at = NULL, updated_at = clock_timestamp()"
		"  FROM expired WHERE j.id = expired.id"
		"  RETURNING j.id, j.attempts, j.state, j.kind, j.recording_id, j.last_error, j.worker, j.started_at),"
		" history AS (INSERT INTO job_attempts (job_id, attempt, worker, started_at, finished_at, outcome, error)"
		"  SELECT id, attempts, worker, started_at, clock_timestamp(), 'lease_expired', last_error FROM upd),"
		" recordings_failed AS (SELECT vtp_pipeline_failed(recording_id, kind, last_error) FROM upd"
		"  WHERE state = 'failed' AND recording_id IS NOT NULL)"
		" SELECT upd.id, upd.state, (SELECT count(*) FROM recordings_failed) AS n FROM upd";
	char base[24];
	snprintf(base, sizeof base, "%ld", retry_base_ms);
	const char *params[] = {base};
	PGresult *res = NULL;
	if (vtp_db_query(db, &res, sql, 1, params) != VTP_DB_OK)
		return -1;
	int n = PQntuples(res);
	for (int i = 0; i < n; i++)
		log_warn("job %s: lease expired; %s", vtp_db_get(res, i, "id"),
			 strcmp(vtp_db_get(res, i, "state"), "queued") == 0 ? "queued again" : "failed for good");
	PQclear(res);
	return n;
}

long queue_prune(struct vtp_db *db, long days)
{
	char interval[32];
	snprintf(interval, sizeof interval, "%ld days", days);
	const char *params[] = {interval};
	PGresult *res = NULL;
	if (vtp_db_query(db, &res, "SELECT vtp_prune_jobs($1::interval) AS n", 1, params) != VTP_DB_OK)
		return -1;
	long n = atol(vtp_db_get(res, 0, "n"));
	PQclear(res);
	return n;
}
