/* supervisor.c: claims jobs into per-queue slots, runs each in a child process, renews leases, reaps the
 * dead, and shuts down gracefully. All job SQL is in queue.c. */
#include "supervisor.h"

#include "../lib/db.h"
#include "../lib/log.h"
#include "../lib/mem.h"
#include "job.h"
#include "queue.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SLOTS 64
#define IDLE_POLL_MS 5000     /* the slow poll behind LISTEN/NOTIFY */
#define RECONNECT_S 0.5	      /* without a database, how often connecting is tried again */
#define KILL_AFTER_S 0.5      /* SIGTERM first; SIGKILL after this unless the kind asks for more */
/* However long a stopped job says it is still finishing (a recorder joining a day-long recording's parts
 * reads and writes tens of GB), it is killed this long after the stop: one that loops saying so is hung. */
#define FINISH_LIMIT_S 3600.0
#define PRUNE_EVERY_S 600.0
#define MAX_REPORT_BYTES (4 << 20)
#define UNTIL_IDLE_LOCK "7305870002"
#define GUARD_TICK_US 100000 /* how often the lease guard looks at the clock while children run */

enum stop_reason { STOP_NONE, STOP_CANCEL, STOP_TIMEOUT, STOP_SHUTDOWN, STOP_LEASE_LOST };

enum outcome_kind { OUTCOME_SUCCEEDED, OUTCOME_FAILED, OUTCOME_CANCELLED, OUTCOME_RELEASED, OUTCOME_DROPPED };

struct queue_slots {
	char name[33];
	int slots;
	int busy;
	struct claim_hint hint;
};

/* One job this worker holds: running in a child (pid > 0), or finished and
 * waiting for its outcome to be written (pid == 0, pending). */
struct slot {
	bool used;
	struct claimed_job job;
	const struct job_kind *kind;
	struct queue_slots *queue;
	pid_t pid;
	int report_fd;
	struct vtp_buf report; /* bytes of a line not yet complete */
	double progress;
	char *result;
	char *partial; /* an intermediate result (job_publish) not yet published */
	char *error;
	double started, deadline, kill_at, stopped_at;
	/* Until when (monotonic clock) the job's lease surely holds: the time the claim or the last successful
	 * renewal was SENT plus lease_s. The server counts the lease from when it ran the statement, which is
	 * later, so this never overestimates. */
	double lease_until;
	enum stop_reason stop;
	bool pending;	       /* the child is gone; its outcome is not yet in the database */
	enum outcome_kind outcome;
	char *outcome_error;
};

struct supervisor {
	struct vtp_config *cfg;
	const struct supervisor_options *options;
	struct vtp_db db;
	PGconn *listening; /* the connection LISTEN was issued on */
	bool listen_failed; /* the last ensure_listening failed: wait for next_connect even on an open connection */
	char worker[128];
	char queue_list[256]; /* "light,heavy" for SQL */
	char kind_list[512];  /* the kinds this worker can run, for SQL */
	struct queue_slots queues[SUPERVISOR_MAX_QUEUES];
	int n_queues;
	struct slot slots[MAX_SLOTS];
	bool want_claim;
	bool stopping;
	double stop_deadline; /* when running jobs are stopped and requeued */
	double next_heartbeat, next_reap, next_prune, next_claim, next_hint_reset, next_connect;
	double budget_end;
	int jobs_done;
	bool found_nothing; /* the last claim pass found no runnable job */
	bool claim_failed;  /* the last claim pass met a database error */
};

static int signal_pipe[2] = {-1, -1};
static volatile sig_atomic_t got_term, got_hup, got_chld;

/* The lease guard: per slot, the child and the moment it must be dead. A SIGALRM handler enforces it, so a
 * supervisor blocked in a database call (a frozen server holds a statement up to statement_timeout, longer
 * than a short lease) still kills it in time. Written by the main loop with SIGALRM blocked. */
static struct {
	volatile pid_t pid;
	volatile double kill_at;
	volatile pid_t fired; /* the child the handler killed, until it is reaped */
	volatile double fired_at;
} lease_guard[MAX_SLOTS];

static void on_signal(int sig)
{
	int saved = errno;
	if (sig == SIGTERM || sig == SIGINT)
		got_term = 1;
	else if (sig == SIGHUP)
		got_hup = 1;
	else if (sig == SIGCHLD)
		got_chld = 1;
	ssize_t w = write(signal_pipe[1], "x", 1);
	(void)w;
	errno = saved;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* SIGALRM: kills the children whose lease guard has passed (only async-signal-safe calls). */
static void on_alarm(int sig)
{
	(void)sig;
	int saved = errno;
	double now = now_s();
	bool killed = false;
	for (int i = 0; i < MAX_SLOTS; i++)
		if (lease_guard[i].pid > 0 && now >= lease_guard[i].kill_at) {
			kill(lease_guard[i].pid, SIGKILL);
			lease_guard[i].fired = lease_guard[i].pid;
			lease_guard[i].fired_at = now;
			lease_guard[i].pid = 0;
			killed = true;
		}
	if (killed) {
		ssize_t w = write(signal_pipe[1], "x", 1);
		(void)w;
	}
	errno = saved;
}

/* How long before its lease ends a child whose lease was not renewed is killed. The lease is counted on the
 * database server, the kill on this host: the margin only covers this process being late to act (the guard's
 * 100 ms tick, a loaded host not scheduling it, SIGKILL reaching a child in the middle of a write) and clock
 * rates that differ slightly. It is kept small (a tenth of the lease, at least 0.5 s) so that the kill comes
 * only when the lease is about to run out anyway: a loop held up by one slow statement on a healthy database
 * does not cost running jobs a lease that was still valid. vtp_config_load makes three heartbeats fit in a
 * lease. */
static double lease_margin(const struct vtp_config *cfg)
{
	double margin = (double)cfg->lease_s / 10.0;
	return margin < 0.5 ? 0.5 : margin;
}

/* Whether the slot's child is to be killed when its lease ends without a renewal: a child that runs, has a
 * lease, is not already dropped, and is of a kind that does not outlive its lease (job_kind.outlives_lease). */
static bool lease_guarded(const struct slot *slot)
{
	return slot->pid > 0 && slot->stop != STOP_LEASE_LOST && slot->lease_until > 0 &&
	       !(slot->kind && slot->kind->outlives_lease);
}

/* Holds off the guard's handler; the previous mask goes to *old for sigprocmask(SIG_SETMASK, old). */
static void block_alarm(sigset_t *old)
{
	sigset_t alarm;
	sigemptyset(&alarm);
	sigaddset(&alarm, SIGALRM);
	sigprocmask(SIG_BLOCK, &alarm, old);
}

/* Copies the slot's lease deadline into the guard the SIGALRM handler reads. */
static void guard_set(int index, pid_t pid, double kill_at, pid_t fired)
{
	sigset_t old;
	block_alarm(&old);
	lease_guard[index].pid = pid;
	lease_guard[index].kill_at = kill_at;
	lease_guard[index].fired = fired;
	sigprocmask(SIG_SETMASK, &old, NULL);
}

/* Runs the guard's tick while any child is guarded, and stops it otherwise (an idle worker sleeps). */
static void guard_arm(bool any)
{
	static bool armed;
	if (any == armed)
		return;
	struct itimerval tick = {0};
	if (any)
		tick.it_interval.tv_usec = tick.it_value.tv_usec = GUARD_TICK_US;
	setitimer(ITIMER_REAL, &tick, NULL);
	armed = any;
}

static const char *recording_label(const struct claimed_job *job)
{
	return job->recording_id[0] ? job->recording_id : "-";
}

static int parse_queues(struct supervisor *s)
{
	char *copy = xstrdup(s->options->queues);
	char *save = NULL;
	int ret = 0;
	for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		if (s->n_queues == SUPERVISOR_MAX_QUEUES) {
			log_error("--queues: at most %d queues", SUPERVISOR_MAX_QUEUES);
			ret = -1;
			break;
		}
		struct queue_slots *q = &s->queues[s->n_queues];
		char *colon = strchr(item, ':');
		q->slots = s->options->concurrency;
		if (colon) {
			*colon = '\0';
			q->slots = atoi(colon + 1);
		}
		if (!*item || strlen(item) >= sizeof q->name || q->slots < 1 || q->slots > MAX_SLOTS) {
			log_error("--queues: \"%s\" is not NAME or NAME:SLOTS with 1 to %d slots", item, MAX_SLOTS);
			ret = -1;
			break;
		}
		snprintf(q->name, sizeof q->name, "%s", item);
		snprintf(s->queue_list + strlen(s->queue_list), sizeof s->queue_list - strlen(s->queue_list), "%s%s",
			 s->n_queues ? "," : "", item);
		s->n_queues++;
	}
	free(copy);
	return s->n_queues ? ret : -1;
}

/* (Re)connects and LISTENs when needed. Returns true when connected. */
static bool ensure_listening(struct supervisor *s)
{
	PGconn *conn = vtp_db_connect(&s->db);
	if (!conn)
		return false;
	if (conn == s->listening)
		return true;
	PGresult *res = NULL;
	if (vtp_db_query(&s->db, &res, "LISTEN vtp_jobs", 0, NULL) != VTP_DB_OK)
		return false;
	PQclear(res);
	if (vtp_db_query(&s->db, &res, "LISTEN vtp_cancel", 0, NULL) != VTP_DB_OK)
		return false;
	PQclear(res);
	if (s->options->until_idle) {
		/* One cron run at a time: a second one finds the lock taken and leaves. */
		if (vtp_db_query(&s->db, &res, "SELECT pg_try_advisory_lock(" UNTIL_IDLE_LOCK ") AS locked", 0, NULL) !=
		    VTP_DB_OK)
			return false;
		bool locked = strcmp(vtp_db_get(res, 0, "locked"), "t") == 0;
		PQclear(res);
		if (!locked) {
			log_info("another vtp-worker --until-idle is running; leaving");
			s->stopping = true;
			s->stop_deadline = now_s();
		}
	}
	s->listening = conn;
	s->want_claim = true; /* catch up on what was queued while we were away */
	log_info("connected; listening for jobs in %s", s->queue_list);
	return true;
}

static struct slot *free_slot(struct supervisor *s)
{
	for (int i = 0; i < MAX_SLOTS; i++)
		if (!s->slots[i].used)
			return &s->slots[i];
	return NULL;
}

/* Points the slot's lease guard at its child, or clears it when the child is gone or may outlive the lease. */
static void guard_update(struct supervisor *s, struct slot *slot)
{
	int index = (int)(slot - s->slots);
	sigset_t old;
	block_alarm(&old); /* the guard is read and written as one step */
	bool guarded = slot->used && lease_guarded(slot) && lease_guard[index].fired != slot->pid;
	/* A child the handler killed stays marked until it is reaped, so its end is not taken for a crash. */
	pid_t fired = slot->pid > 0 && lease_guard[index].fired == slot->pid ? slot->pid : 0;
	if (guarded)
		guard_set(index, slot->pid, slot->lease_until - lease_margin(s->cfg), 0);
	else
		guard_set(index, 0, 0, fired);
	bool any = false;
	for (int i = 0; i < MAX_SLOTS; i++)
		any = any || lease_guard[i].pid > 0;
	guard_arm(any);
	sigprocmask(SIG_SETMASK, &old, NULL);
}

/* The claim or a renewal sent at the time sent succeeded: the lease holds until sent + lease_s. */
static void lease_renewed(struct supervisor *s, struct slot *slot, double sent)
{
	/* A renewal that got through only after the guard killed the child renews nothing that still runs: the
	 * log line about the kill keeps the times of the last renewal the child lived under. */
	if (slot->pid > 0 && lease_guard[slot - s->slots].fired == slot->pid)
		return;
	slot->lease_until = sent + (double)s->cfg->lease_s;
	guard_update(s, slot);
}

static void slot_release(struct slot *slot)
{
	if (slot->report_fd >= 0)
		close(slot->report_fd);
	claimed_job_clear(&slot->job);
	vtp_buf_free(&slot->report);
	free(slot->result);
	free(slot->partial);
	free(slot->error);
	free(slot->outcome_error);
	if (slot->queue)
		slot->queue->busy--;
	memset(slot, 0, sizeof *slot);
	slot->report_fd = -1;
}

/* A child asked to stop (cancel or shutdown) that says it is still finishing gets one more stop grace
 * before the SIGKILL, up to FINISH_LIMIT_S after the stop; a timed-out job does not. */
static void still_finishing(struct slot *slot)
{
	if (slot->kill_at <= 0 || (slot->stop != STOP_CANCEL && slot->stop != STOP_SHUTDOWN) || !slot->kind ||
	    slot->kind->stop_grace_s <= 0)
		return;
	double until = now_s() + slot->kind->stop_grace_s;
	slot->kill_at = until < slot->stopped_at + FINISH_LIMIT_S ? until : slot->stopped_at + FINISH_LIMIT_S;
}

/* Parses the complete report lines in slot->report (see job.c). */
static void parse_reports(struct slot *slot)
{
	char *line = slot->report.data;
	char *nl;
	while (line && (nl = strchr(line, '\n')) != NULL) {
		*nl = '\0';
		if (line[0] && line[1] == ' ') {
			const char *text = line + 2;
			if (line[0] == 'P') {
				slot->progress = strtod(text, NULL);
			} else if (line[0] == 'R') {
				free(slot->result);
				slot->result = xstrdup(text);
			} else if (line[0] == 'U') {
				free(slot->partial);
				slot->partial = xstrdup(text);
			} else if (line[0] == 'E') {
				free(slot->error);
				slot->error = xstrdup(text);
			} else if (line[0] == 'F') {
				still_finishing(slot);
			}
		}
		line = nl + 1;
	}
	if (line) {
		size_t rest = strlen(line);
		memmove(slot->report.data, line, rest + 1);
		slot->report.len = rest;
	}
}

static void read_reports(struct slot *slot)
{
	char chunk[8192];
	ssize_t n;
	while (slot->report_fd >= 0 && (n = read(slot->report_fd, chunk, sizeof chunk)) > 0) {
		if (slot->report.len + (size_t)n > MAX_REPORT_BYTES) {
			log_warn("job %lld: report too large; ignoring the rest", (long long)slot->job.id);
			continue;
		}
		vtp_buf_append(&slot->report, chunk, (size_t)n);
		parse_reports(slot);
	}
}

/* Writes a finished job's outcome. Keeps the slot pending (to try again)
 * when the database is unreachable. */
static void write_outcome(struct supervisor *s, struct slot *slot)
{
	enum queue_result r = QUEUE_DONE;
	bool failed = false;
	const char *what = "";
	double took = now_s() - slot->started;
	switch (slot->outcome) {
	case OUTCOME_SUCCEEDED:
		r = queue_succeed(&s->db, &slot->job, s->worker, slot->kind ? slot->kind->publish_sql : NULL,
				  slot->result);
		what = "succeeded";
		break;
	case OUTCOME_FAILED:
		r = queue_fail(&s->db, &slot->job, s->worker, slot->outcome_error, slot->kind != NULL,
			       s->cfg->retry_base_ms, &failed);
		what = failed ? "failed for good" : "failed; will be retried";
		break;
	case OUTCOME_CANCELLED:
		r = queue_cancelled(&s->db, &slot->job, s->worker);
		what = "cancelled";
		break;
	case OUTCOME_RELEASED:
		r = queue_release(&s->db, &slot->job, s->worker);
		what = "requeued (shutdown)";
		break;
	case OUTCOME_DROPPED:
		what = "dropped: the lease was lost, nothing published";
		break;
	}
	if (r == QUEUE_DB_ERROR) {
		slot->pending = true;
		return;
	}
	if (r == QUEUE_LEASE_LOST)
		what = "finished, but the lease was lost: nothing published";
	if (slot->outcome == OUTCOME_FAILED && r == QUEUE_DONE)
		log_warn("job %lld %s recording %s attempt %d: %s after %.2f s: %s", (long long)slot->job.id,
			 slot->job.kind, recording_label(&slot->job), slot->job.attempt, what, took,
			 slot->outcome_error);
	else
		log_info("job %lld %s recording %s attempt %d: %s after %.2f s", (long long)slot->job.id, slot->job.kind,
			 recording_label(&slot->job), slot->job.attempt, what, took);
	s->jobs_done++;
	slot_release(slot);
}

static void set_outcome(struct slot *slot, enum outcome_kind outcome, const char *error)
{
	slot->outcome = outcome;
	free(slot->outcome_error);
	slot->outcome_error = error ? xstrdup(error) : NULL;
	slot->pending = true;
}

/* Decides a child's outcome from how it ended and why it was stopped. */
static void child_ended(struct slot *slot, int status)
{
	char why[1200];
	read_reports(slot);
	slot->pid = 0;
	if (slot->stop == STOP_LEASE_LOST) {
		set_outcome(slot, OUTCOME_DROPPED, NULL);
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		set_outcome(slot, OUTCOME_SUCCEEDED, NULL);
	} else if (slot->stop == STOP_SHUTDOWN) {
		set_outcome(slot, OUTCOME_RELEASED, NULL);
	} else if (slot->stop == STOP_CANCEL && !(slot->kind && slot->kind->finishes_on_stop)) {
		set_outcome(slot, OUTCOME_CANCELLED, NULL);
	} else if (slot->stop == STOP_TIMEOUT) {
		snprintf(why, sizeof why, "timed out after %.0f s", slot->deadline - slot->started);
		set_outcome(slot, OUTCOME_FAILED, why);
	} else if (WIFSIGNALED(status)) {
		snprintf(why, sizeof why, "crashed: killed by signal %d (%s)%s%s", WTERMSIG(status),
			 strsignal(WTERMSIG(status)), slot->error ? "; last report: " : "", slot->error ? slot->error : "");
		set_outcome(slot, OUTCOME_FAILED, why);
	} else {
		snprintf(why, sizeof why, "%s", slot->error ? slot->error : "exited with an error but said nothing");
		set_outcome(slot, OUTCOME_FAILED, why);
	}
}

/* The child's lease can no longer be counted on (no renewal got through): it is killed now, as for a lost
 * lease, since the job is about to be another worker's. Also called once the guard's handler killed it. */
static void lease_unsure(struct supervisor *s, struct slot *slot, double now, bool still_running)
{
	double renewed = slot->lease_until - (double)s->cfg->lease_s;
	if (still_running) {
		log_warn("job %lld %s recording %s attempt %d: database unreachable for %.1f s; its lease ends in %.1f s:"
			 " stopping it",
			 (long long)slot->job.id, slot->job.kind, recording_label(&slot->job), slot->job.attempt,
			 now - renewed, slot->lease_until - now);
	} else {
		/* Found at reap time: the guard's handler killed it while the loop was held up. */
		int index = (int)(slot - s->slots);
		double at = lease_guard[index].fired_at;
		log_warn("job %lld %s recording %s attempt %d: database unreachable for %.1f s; the lease guard killed it"
			 " %.1f s ago, %.1f s before its lease's end",
			 (long long)slot->job.id, slot->job.kind, recording_label(&slot->job), slot->job.attempt,
			 at - renewed, now - at, slot->lease_until - at);
	}
	slot->stop = STOP_LEASE_LOST;
	slot->kill_at = 0;
	if (still_running)
		kill(slot->pid, SIGKILL);
	guard_update(s, slot);
}

/* Kills the children whose lease ends within the margin without a renewal. */
static void watch_leases(struct supervisor *s, double now)
{
	for (int i = 0; i < MAX_SLOTS; i++) {
		struct slot *slot = &s->slots[i];
		if (!slot->used || !lease_guarded(slot))
			continue;
		if (lease_guard[i].fired == slot->pid || now >= slot->lease_until - lease_margin(s->cfg))
			lease_unsure(s, slot, now, true);
	}
}

static void reap_children(struct supervisor *s)
{
	int status;
	pid_t pid;
	/* The guard's handler must not signal a pid between its reaping here and the guard's clearing. */
	sigset_t old;
	block_alarm(&old);
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		for (int i = 0; i < MAX_SLOTS; i++)
			if (s->slots[i].used && s->slots[i].pid == pid) {
				struct slot *slot = &s->slots[i];
				/* Killed by the guard before the loop saw it: dropped, not crashed. */
				if (lease_guard[i].fired == slot->pid && slot->stop != STOP_LEASE_LOST)
					lease_unsure(s, slot, now_s(), false);
				child_ended(slot, status);
				guard_update(s, slot);
			}
	sigprocmask(SIG_SETMASK, &old, NULL);
}

static void request_stop(struct slot *slot, enum stop_reason reason)
{
	if (slot->pid <= 0 || slot->stop == STOP_LEASE_LOST)
		return;
	if (reason == STOP_LEASE_LOST) {
		/* Someone else owns the job now: no grace, even for a child already stopping (a recorder joining
		 * its parts after a cancel), whose outcome can no longer be written. */
		slot->stop = reason;
		slot->kill_at = 0;
		kill(slot->pid, SIGKILL);
		return;
	}
	if (slot->stop != STOP_NONE)
		return;
	slot->stop = reason;
	kill(slot->pid, SIGTERM);
	/* A recorder asked to stop finalises its file: it gets its kind's grace. */
	double grace = slot->kind && slot->kind->stop_grace_s > 0 ? slot->kind->stop_grace_s : KILL_AFTER_S;
	slot->stopped_at = now_s();
	slot->kill_at = slot->stopped_at + grace;
}

/* Runs the job in this process: for kinds that cannot crash or hang. */
static void run_in_process(struct supervisor *s, struct slot *slot, json_object *payload)
{
	struct vtp_buf sink = {0};
	struct job job = {.id = slot->job.id, .attempt = slot->job.attempt, .cfg = s->cfg, .report_fd = -1, .sink = &sink};
	snprintf(job.kind, sizeof job.kind, "%s", slot->job.kind);
	snprintf(job.recording_id, sizeof job.recording_id, "%s", slot->job.recording_id);
	job.payload = payload;
	int rc = slot->kind->run(&job);
	vtp_buf_append(&slot->report, sink.data ? sink.data : "", sink.len);
	parse_reports(slot);
	vtp_buf_free(&sink);
	set_outcome(slot, rc == 0 ? OUTCOME_SUCCEEDED : OUTCOME_FAILED, rc == 0 ? NULL : slot->error ? slot->error : "failed");
}

/* Sanitizer builds: a job child leaves by _exit(), which skips LeakSanitizer's check at exit; run it here, so
 * leaks in job code reach the worker's log like the supervisor's own (a no-op with detect_leaks=0). */
static void child_leak_check(void)
{
#if defined(__SANITIZE_ADDRESS__)
	__lsan_do_recoverable_leak_check();
#endif
}

/* Starts the child that runs a claimed job; when it cannot, records the
 * failure as the job's outcome. */
static void start_child(struct supervisor *s, struct slot *slot, json_object *payload)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0) {
		set_outcome(slot, OUTCOME_FAILED, "cannot create a pipe for the job");
		return;
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		set_outcome(slot, OUTCOME_FAILED, "cannot fork a process for the job");
		return;
	}
	if (pid == 0) {
		/* Child: dies with the supervisor, so a killed worker leaves no
		 * orphan publishing anything behind its back. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		signal(SIGALRM, SIG_DFL); /* the lease guard is the supervisor's; its copy here names siblings */
		job_child_init();
		close(fds[0]);
		struct job job = {.id = slot->job.id, .attempt = slot->job.attempt, .cfg = s->cfg, .report_fd = fds[1]};
		snprintf(job.kind, sizeof job.kind, "%s", slot->job.kind);
		snprintf(job.recording_id, sizeof job.recording_id, "%s", slot->job.recording_id);
		job.payload = payload;
		int rc = slot->kind->run(&job) == 0 ? 0 : 1;
		child_leak_check();
		_exit(rc);
	}
	close(fds[1]);
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	slot->pid = pid;
	slot->report_fd = fds[0];
}

static long timeout_for(const struct supervisor *s, const struct job_kind *kind)
{
	return s->cfg->job_timeout_s > 0 ? s->cfg->job_timeout_s : kind->timeout_s;
}

/* Claims jobs until every queue's slots are full or nothing is runnable. */
static void claim_pass(struct supervisor *s)
{
	s->want_claim = false;
	s->found_nothing = true;
	s->claim_failed = false;
	for (int q = 0; q < s->n_queues; q++) {
		struct queue_slots *queue = &s->queues[q];
		while (queue->busy < queue->slots && !s->stopping) {
			if (s->options->once && s->jobs_done + (queue->busy ? 1 : 0) > 0)
				return;
			struct slot *slot = free_slot(s);
			if (!slot)
				return;
			double sent = now_s();
			enum queue_result r =
				queue_claim(&s->db, queue->name, s->kind_list, s->worker, s->cfg->lease_s, &queue->hint,
					    &slot->job);
			if (r != QUEUE_DONE) {
				if (r == QUEUE_DB_ERROR) {
					s->claim_failed = true;
					s->found_nothing = false; /* unknown: --once and --until-idle must not leave */
				}
				break;
			}
			s->found_nothing = false;
			slot->used = true;
			slot->report_fd = -1;
			slot->queue = queue;
			queue->busy++;
			slot->started = now_s();
			slot->kind = job_kind_find(slot->job.kind);
			log_info("job %lld %s recording %s attempt %d: started", (long long)slot->job.id, slot->job.kind,
				 recording_label(&slot->job), slot->job.attempt);
			json_object *payload = json_tokener_parse(slot->job.payload);
			if (!slot->kind) {
				set_outcome(slot, OUTCOME_FAILED, "this worker has no code for this kind of job");
			} else {
				slot->deadline = slot->started + (double)timeout_for(s, slot->kind);
				if (slot->kind->in_process && json_object_object_length(payload) == 0)
					run_in_process(s, slot, payload);
				else
					start_child(s, slot, payload);
				lease_renewed(s, slot, sent);
			}
			json_object_put(payload);
			if (slot->pending)
				write_outcome(s, slot);
			if (s->options->once)
				return;
		}
	}
}

static void heartbeat_all(struct supervisor *s)
{
	for (int i = 0; i < MAX_SLOTS; i++) {
		struct slot *slot = &s->slots[i];
		if (!slot->used || slot->pid <= 0 || slot->stop == STOP_LEASE_LOST)
			continue;
		bool cancel = false;
		double sent = now_s();
		enum queue_result r = queue_heartbeat(&s->db, &slot->job, s->worker, s->cfg->lease_s, slot->progress, &cancel);
		if (r == QUEUE_LEASE_LOST) {
			log_warn("job %lld: lease lost (another worker took it over); stopping it", (long long)slot->job.id);
			request_stop(slot, STOP_LEASE_LOST);
		} else if (r == QUEUE_DONE) {
			lease_renewed(s, slot, sent);
			if (cancel)
				request_stop(slot, STOP_CANCEL);
		}
	}
}

/* A NOTIFY on vtp_cancel carries job ids separated by commas. */
static void cancel_ids(struct supervisor *s, const char *ids)
{
	char *copy = xstrdup(ids), *save = NULL;
	for (char *id = strtok_r(copy, ",", &save); id; id = strtok_r(NULL, ",", &save))
		for (int i = 0; i < MAX_SLOTS; i++)
			if (s->slots[i].used && s->slots[i].pid > 0 && s->slots[i].job.id == strtoll(id, NULL, 10)) {
				log_info("job %s: cancel requested", id);
				request_stop(&s->slots[i], STOP_CANCEL);
			}
	free(copy);
}

static void clear_hints(struct supervisor *s)
{
	for (int q = 0; q < s->n_queues; q++)
		s->queues[q].hint.set = false;
}

static void read_notifications(struct supervisor *s)
{
	PGconn *conn = s->db.conn;
	if (!conn)
		return;
	if (PQconsumeInput(conn) == 0 || PQstatus(conn) != CONNECTION_OK) {
		log_warn("database connection lost; reconnecting");
		vtp_db_close(&s->db);
		s->listening = NULL;
		return;
	}
	PGnotify *note;
	while ((note = PQnotifies(conn)) != NULL) {
		if (strcmp(note->relname, "vtp_cancel") == 0) {
			cancel_ids(s, note->extra);
		} else {
			s->want_claim = true;
			clear_hints(s); /* what was queued may sort before a hint */
		}
		PQfreemem(note);
	}
}

static int running_count(const struct supervisor *s)
{
	int n = 0;
	for (int i = 0; i < MAX_SLOTS; i++)
		n += s->slots[i].used;
	return n;
}

static void begin_shutdown(struct supervisor *s, const char *why)
{
	if (s->stopping)
		return;
	s->stopping = true;
	s->stop_deadline = now_s() + (double)s->cfg->shutdown_grace_s;
	log_info("%s: stopping; no new jobs, %d running may finish within %ld s", why, running_count(s),
		 s->cfg->shutdown_grace_s);
}

static void reload_config(struct supervisor *s)
{
	struct vtp_config fresh;
	if (vtp_config_load_default(&fresh) < 0) {
		log_error("SIGHUP: the new configuration has errors; keeping the old one");
		return;
	}
	vtp_config_free(s->cfg);
	*s->cfg = fresh;
	log_info("SIGHUP: configuration reloaded");
}

/* Publishes the intermediate results of running jobs (job_publish) as soon
 * as they arrive; one the database refused is tried again next time. */
static void publish_partials(struct supervisor *s)
{
	for (int i = 0; i < MAX_SLOTS; i++) {
		struct slot *slot = &s->slots[i];
		if (!slot->used || !slot->partial || slot->pid <= 0 || slot->stop != STOP_NONE)
			continue;
		enum queue_result r = queue_publish(&s->db, &slot->job, s->worker, slot->kind ? slot->kind->publish_sql : NULL,
						    slot->partial);
		if (r == QUEUE_DB_ERROR)
			continue;
		free(slot->partial);
		slot->partial = NULL;
		if (r == QUEUE_LEASE_LOST) {
			log_warn("job %lld: lease lost (another worker took it over); stopping it", (long long)slot->job.id);
			request_stop(slot, STOP_LEASE_LOST);
		}
	}
}

/* The children's own timers: job deadlines, shutdown and kills after a stop's grace. They need no database,
 * so they run on every pass: a job past its deadline during an outage is still stopped and killed. */
static void run_child_timers(struct supervisor *s, double now)
{
	for (int i = 0; i < MAX_SLOTS; i++) {
		struct slot *slot = &s->slots[i];
		if (!slot->used || slot->pid <= 0)
			continue;
		if (slot->stop == STOP_NONE && now >= slot->deadline)
			request_stop(slot, STOP_TIMEOUT);
		if (s->stopping && slot->stop == STOP_NONE && now >= s->stop_deadline)
			request_stop(slot, STOP_SHUTDOWN);
		if (slot->stop != STOP_NONE && slot->kill_at > 0 && now >= slot->kill_at) {
			kill(slot->pid, SIGKILL);
			slot->kill_at = 0;
		}
		if (slot->stop == STOP_NONE && s->stopping && s->cfg->shutdown_grace_s == 0)
			request_stop(slot, STOP_SHUTDOWN);
	}
}

/* Timers that need the database: leases, the reaper, pruning, the time budget. */
static void run_timers(struct supervisor *s, double now)
{
	publish_partials(s);
	if (now >= s->next_heartbeat) {
		heartbeat_all(s);
		s->next_heartbeat = now + (double)s->cfg->heartbeat_ms / 1000.0;
	}
	if (now >= s->next_reap) {
		if (queue_reap(&s->db, s->cfg->retry_base_ms) > 0)
			s->want_claim = true;
		double every = (double)s->cfg->lease_s / 4.0;
		s->next_reap = now + (every < 1.0 ? 1.0 : every);
	}
	if (now >= s->next_hint_reset) {
		/* Bounds how long a job that became runnable ahead of a hint
		 * (a scheduled one of a higher priority) can be stepped over. */
		clear_hints(s);
		s->next_hint_reset = now + 1.0;
	}
	if (now >= s->next_prune) {
		long n = queue_prune(&s->db, s->cfg->job_history_days);
		if (n > 0)
			log_info("pruned %ld finished jobs older than %ld days", n, s->cfg->job_history_days);
		s->next_prune = now + PRUNE_EVERY_S;
	}
	if (s->options->until_idle && s->options->budget_s > 0 && now >= s->budget_end)
		begin_shutdown(s, "time budget spent");
}

/* How long poll() may sleep. */
static int poll_timeout_ms(struct supervisor *s, double now)
{
	double next = now + IDLE_POLL_MS / 1000.0;
	/* Without a connection the database's timers wait for the next try to connect: they are overdue, and
	 * waking for them would spin. */
	bool up = s->db.conn != NULL && !s->listen_failed;
	if (!up && s->next_connect < next)
		next = s->next_connect;
	if (up && running_count(s) > 0 && s->next_heartbeat < next)
		next = s->next_heartbeat;
	if (up && s->next_reap < next)
		next = s->next_reap;
	if (up && s->next_claim < next)
		next = s->next_claim;
	for (int i = 0; i < MAX_SLOTS; i++) {
		const struct slot *slot = &s->slots[i];
		if (!slot->used)
			continue;
		if (up && slot->pending)
			next = now + 0.5; /* retry writing the outcome soon */
		if (slot->kill_at > 0 && slot->kill_at < next)
			next = slot->kill_at;
		if (slot->stop == STOP_NONE && slot->deadline < next)
			next = slot->deadline;
		double unsure = slot->lease_until - lease_margin(s->cfg);
		if (lease_guarded(slot) && unsure < next)
			next = unsure;
	}
	if (s->stopping && s->stop_deadline > now && s->stop_deadline < next)
		next = s->stop_deadline;
	double ms = (next - now) * 1000.0;
	return ms < 0 ? 0 : ms > IDLE_POLL_MS ? IDLE_POLL_MS : (int)ms + 1;
}

/* Plans the next claim pass for a job scheduled in the future (a backoff). */
static void schedule_next_claim(struct supervisor *s, double now)
{
	long ms = queue_next_run_ms(&s->db, s->queue_list, s->kind_list);
	s->next_claim = ms < 0 ? now + IDLE_POLL_MS / 1000.0 : now + (double)ms / 1000.0;
}

static bool finished(struct supervisor *s)
{
	int running = running_count(s);
	if (s->stopping)
		return running == 0;
	if (s->options->once)
		return running == 0 && (s->jobs_done > 0 || s->found_nothing);
	if (s->options->until_idle)
		return running == 0 && s->found_nothing && s->next_claim > now_s();
	return false;
}

static void loop_once(struct supervisor *s)
{
	struct pollfd fds[MAX_SLOTS + 2];
	struct slot *by_fd[MAX_SLOTS + 2] = {0};
	int n = 0;
	double now = now_s();

	fds[n++] = (struct pollfd){.fd = signal_pipe[0], .events = POLLIN};
	if (s->db.conn)
		fds[n++] = (struct pollfd){.fd = PQsocket(s->db.conn), .events = POLLIN};
	for (int i = 0; i < MAX_SLOTS; i++)
		if (s->slots[i].used && s->slots[i].report_fd >= 0) {
			by_fd[n] = &s->slots[i];
			fds[n++] = (struct pollfd){.fd = s->slots[i].report_fd, .events = POLLIN};
		}
	if (poll(fds, (nfds_t)n, poll_timeout_ms(s, now)) < 0 && errno != EINTR)
		log_warn("poll: %s", strerror(errno));
	if (fds[0].revents) {
		char drain[64];
		while (read(signal_pipe[0], drain, sizeof drain) > 0)
			;
	}
	for (int i = 0; i < n; i++)
		if (by_fd[i] && fds[i].revents)
			read_reports(by_fd[i]);
	if (got_chld) {
		got_chld = 0;
		reap_children(s);
	}
	if (got_term) {
		got_term = 0;
		begin_shutdown(s, "SIGTERM");
	}
	if (got_hup) {
		got_hup = 0;
		reload_config(s);
	}
	read_notifications(s);
}

int supervisor_run(struct vtp_config *cfg, const struct supervisor_options *options)
{
	struct supervisor *s = xcalloc(1, sizeof *s);
	int ret = 1;
	s->cfg = cfg;
	s->options = options;
	for (int i = 0; i < MAX_SLOTS; i++)
		s->slots[i].report_fd = -1;
	if (parse_queues(s) < 0)
		goto out;
	job_kind_names(s->kind_list, sizeof s->kind_list);
	char host[64] = "localhost";
	gethostname(host, sizeof host - 1);
	snprintf(s->worker, sizeof s->worker, "%s:%d", host, (int)getpid());
	vtp_db_init(&s->db, cfg, "vtp-worker");
	/* Job state is at-least-once anyway: a commit lost in a database crash
	 * only means a job runs again (its lease expires), so the worker does not
	 * wait for each commit's WAL flush. Outputs are published idempotently. */
	s->db.session_options = "-c synchronous_commit=off";

	if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		log_error("pipe: %s", strerror(errno));
		goto out;
	}
	struct sigaction sa = {0};
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	double start = now_s();
	s->budget_end = start + (double)options->budget_s;
	s->next_prune = start + 5.0;
	log_info("worker %s starting: queues %s", s->worker, options->queues);
	while (!finished(s)) {
		double now = now_s();
		watch_leases(s, now);
		bool up = false;
		if ((s->db.conn && !s->listen_failed) || now >= s->next_connect) {
			up = ensure_listening(s);
			s->listen_failed = !up;
			if (!up)
				s->next_connect = now + RECONNECT_S;
		}
		/* A dropped job has nothing to write: its slot is freed without the database, so that SIGTERM can
		 * end a worker during an outage. */
		for (int i = 0; i < MAX_SLOTS; i++)
			if (s->slots[i].used && s->slots[i].pending && (up || s->slots[i].outcome == OUTCOME_DROPPED))
				write_outcome(s, &s->slots[i]);
		if (up) {
			if (!s->stopping && (s->want_claim || now >= s->next_claim)) {
				claim_pass(s);
				if (s->claim_failed)
					s->next_claim = now + 1.0; /* the database refused: no busy loop */
				else if (s->found_nothing)
					schedule_next_claim(s, now);
				else
					s->next_claim = now; /* more may be waiting */
			}
			run_timers(s, now);
		} else if (s->stopping) {
			/* No database: jobs cannot be requeued; stop the children and
			 * let their leases expire for another worker to pick up. */
			for (int i = 0; i < MAX_SLOTS; i++)
				if (s->slots[i].used && s->slots[i].pid > 0 && now >= s->stop_deadline)
					request_stop(&s->slots[i], STOP_SHUTDOWN);
		}
		run_child_timers(s, now);
		if (finished(s))
			break;
		loop_once(s);
	}
	log_info("stopped after %d job(s)", s->jobs_done);
	ret = 0;
out:
	guard_arm(false);
	for (int i = 0; i < MAX_SLOTS; i++)
		if (s->slots[i].used)
			slot_release(&s->slots[i]);
	vtp_db_close(&s->db);
	free(s);
	return ret;
}
