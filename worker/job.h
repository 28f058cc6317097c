/* job.h: what a job kind's code sees while it runs (in a child process), and how it reports back. */
#ifndef VTP_JOB_H
#define VTP_JOB_H

#include "../lib/config.h"
#include "../lib/mem.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct job {
	int64_t id;
	char kind[32];
	char recording_id[37]; /* "" when the job has no recording */
	json_object *payload;  /* the job's payload object; owned by the job */
	int attempt;	       /* 1 for the first attempt */
	const struct vtp_config *cfg;
	int report_fd;	       /* where job_progress/job_result/job_error write (a pipe to the supervisor) */
	struct vtp_buf *sink;  /* instead of report_fd when the job runs inside the supervisor */
};

/* A kind of job. run() does the work: in a child process of its own unless
 * in_process (only for kinds that cannot crash or hang, like noop). It
 * returns 0 when the work is done, or -1 after job_error(). */
struct job_kind {
	const char *name;
	int (*run)(struct job *job);
	/* Run by the supervisor inside the transaction that marks the job
	 * succeeded, so nothing is published by a worker that lost its lease.
	 * $1 = recording id, $2 = the JSON given to job_result() (or NULL).
	 * NULL: nothing to publish. */
	const char *publish_sql;
	int timeout_s; /* default; the config may override it */
	bool in_process;
	/* Seconds between SIGTERM and SIGKILL when the job is asked to stop
	 * (cancel, timeout, shutdown); 0: half a second. A recorder needs time
	 * to finish its file. */
	double stop_grace_s;
	/* A cancel asks the job to end its work early, not to drop it (a recorder's stop is the end of the class):
	 * when the job then fails, it failed (with its error, and retried), rather than being cancelled. */
	bool finishes_on_stop;
	/* Left running when its lease cannot be renewed (the database is away), where other kinds are killed before
	 * the lease ends: a live class cannot be sent again, so killing a recorder loses everything said until the
	 * database is back. Two attempts cannot write the same part: record.c creates each part with O_EXCL,
	 * numbered after the highest on disk; a recorder taken over is killed at the first heartbeat that finds
	 * the lease lost. */
	bool outlives_lease;
};

/* The kind named name, or NULL (worker/kinds.c holds the table). */
const struct job_kind *job_kind_find(const char *name);
/* Every kind this worker can run, comma-separated, into out. */
void job_kind_names(char *out, size_t size);

/* Reports progress (0..1) to the supervisor; it travels with the next heartbeat. */
void job_progress(struct job *job, double fraction);
/* Hands the job's result to the supervisor; takes ownership of result. */
void job_result(struct job *job, json_object *result);
/* Hands over {key: null}: the job had nothing to make (an audio-only source has no pictures). */
void job_result_none(struct job *job, const char *key);
/* Publishes an intermediate result while the job goes on: the supervisor
 * runs the kind's publish_sql with it at once, fenced by the lease (a worker
 * that lost its lease publishes nothing). The final job_result() still
 * follows. Takes ownership of result. */
void job_publish(struct job *job, json_object *result);
/* After a stop request: tells the supervisor the job is still finishing what it must (a recorder joining
 * its parts), so the SIGKILL that follows its kind's stop grace waits one more grace from now (kinds with
 * a stop grace only; at most an hour after the stop: supervisor.c FINISH_LIMIT_S). A job that hangs says
 * nothing and is killed. */
void job_still_finishing(struct job *job);
/* Sets the job's readable error (its last_error); printf-style. */
void job_error(struct job *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The path of the recording's source file that the pipeline put in the
 * payload ({"source_file": ...}). Returns a new string (caller frees), or
 * NULL after job_error() when the payload names none or a name that could
 * leave the recording's folder. */
char *job_source_path(struct job *job);

/* True once the supervisor has asked this job to stop (cancel, shutdown,
 * timeout). Long loops check it; libav takes job_interrupt_cb. */
bool job_stop_requested(void);
int job_interrupt_cb(void *opaque);

/* Child side: installs the SIGTERM handler behind job_stop_requested(). */
void job_child_init(void);

#endif
