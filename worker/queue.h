/* queue.h: every statement the worker runs against the jobs table: claim, heartbeat, finish, reap, prune. */
#ifndef VTP_QUEUE_H
#define VTP_QUEUE_H

#include "../lib/db.h"

#include <stdbool.h>
#include <stdint.h>

/* A job this worker holds a lease on. (id, attempt) is the fencing token:
 * every later statement about the job names both, and updates nothing once
 * the lease was lost (reaped and claimed again by someone else). */
struct claimed_job {
	int64_t id;
	int attempt;
	char kind[32];
	char queue[33];
	char recording_id[37]; /* "" when none */
	char *payload;	       /* JSON text; owned, freed by claimed_job_clear() */
	bool cancel_requested;
};

void claimed_job_clear(struct claimed_job *job);

/* The outcome of a statement that names a leased job. */
enum queue_result {
	QUEUE_DONE = 1,	      /* the statement took effect */
	QUEUE_LEASE_LOST = 0, /* no row matched: another worker owns the job now */
	QUEUE_DB_ERROR = -1,  /* the database failed; try again later */
};

/* Where the last claim in a queue found its job, in claim order (priority,
 * run_at, id). Claimed jobs leave dead entries at the head of the claim
 * index, which an open snapshot anywhere keeps vacuum from removing; a claim
 * that starts its scan here steps over them. It may miss a job put back
 * before it, so the caller clears the hint when a NOTIFY says jobs were
 * queued, and at least once a second; queue_claim() drops it when this
 * process has queued pipeline steps since; and a hinted claim that finds
 * nothing is tried once more from the head. */
struct claim_hint {
	bool set;
	unsigned long queued_seen; /* queue.c's count of its own pipeline inserts when the hint was set */
	char priority[8];
	char run_at_us[24];
	char id[24];
};

/* Claims the most urgent runnable job of queue for worker, with a lease of
 * lease_s seconds, committed before this returns. Only jobs of kinds (a
 * comma-separated list) are taken: a worker never takes a job it has no code
 * for, so old and new workers can share a database during an upgrade. Returns QUEUE_DONE with
 * *job filled, QUEUE_LEASE_LOST when nothing is runnable, or QUEUE_DB_ERROR.
 * hint is used and updated. */
enum queue_result queue_claim(struct vtp_db *db, const char *queue, const char *kinds, const char *worker,
			      long lease_s, struct claim_hint *hint, struct claimed_job *job);

/* Milliseconds until the next queued job of these queues and kinds (comma-separated)
 * becomes runnable, 0 if one is runnable now, -1 if none is queued. */
long queue_next_run_ms(struct vtp_db *db, const char *queues, const char *kinds);

/* Renews the lease and stores progress. *cancel is set when someone asked
 * for the job to stop. */
enum queue_result queue_heartbeat(struct vtp_db *db, const struct claimed_job *job, const char *worker,
				  long lease_s, double progress, bool *cancel);

/* Marks the job succeeded, runs publish_sql ($1 recording, $2 result JSON)
 * and queues the pipeline's next steps, all in one transaction. */
enum queue_result queue_succeed(struct vtp_db *db, const struct claimed_job *job, const char *worker,
				const char *publish_sql, const char *result);

/* Runs publish_sql ($1 recording, $2 an intermediate result JSON) for a job
 * that is still running, in one transaction with a check that this worker
 * still holds the attempt's lease (QUEUE_LEASE_LOST: nothing published). */
enum queue_result queue_publish(struct vtp_db *db, const struct claimed_job *job, const char *worker,
				const char *publish_sql, const char *result);

/* Records a failed attempt: queued again after a backoff of retry_base_ms
 * doubled per attempt, or failed for good after max_attempts (or at once
 * when !retryable), which fails a pipeline's recording too. *failed tells
 * which. */
enum queue_result queue_fail(struct vtp_db *db, const struct claimed_job *job, const char *worker,
			     const char *error, bool retryable, long retry_base_ms, bool *failed);

/* Marks the job cancelled (someone asked). */
enum queue_result queue_cancelled(struct vtp_db *db, const struct claimed_job *job, const char *worker);

/* Puts the job back in its queue without spending an attempt (shutdown). */
enum queue_result queue_release(struct vtp_db *db, const struct claimed_job *job, const char *worker);

/* Requeues (with backoff) or fails the jobs whose lease expired: their worker
 * died. Returns how many, or -1. Every worker runs this. */
int queue_reap(struct vtp_db *db, long retry_base_ms);

/* Deletes finished jobs older than days. Returns how many, or -1. */
long queue_prune(struct vtp_db *db, long days);

#endif
