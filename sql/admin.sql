-- admin.sql: the queries an administrator runs on the job table and recordings with psql alone (docs/ADMIN.md).
-- Not a migration: nothing here runs by itself.
--
-- Part 1 (reports) only reads; run it whole with  psql "$DATABASE_URL" -f sql/admin.sql
-- Part 2 (actions) changes jobs, so it is commented out: copy one statement into psql after setting the
-- psql variables it names, e.g.  \set id 42   or   \set kind probe   (then :id, :'kind' are filled in).
-- The views and functions used here are defined in sql/002_worker.sql.
-- tests/integration/test_admin_sql.py runs every statement of this file, commented or not, and checks what it does.

-- ============================================================ Part 1: reports

-- Queue depth and the oldest job per queue: runnable now, scheduled for later, running, and how long
-- the oldest runnable job has been waiting. A growing oldest_wait means too few workers for that queue.
SELECT queue, runnable, scheduled, running, oldest_queued_run_at, oldest_wait
  FROM vtp_queue_depth ORDER BY queue;

-- What is queued or running, per queue and kind.
SELECT queue, kind, state, count(*) AS jobs, min(run_at) AS oldest_run_at
  FROM jobs WHERE state IN ('queued', 'running')
 GROUP BY queue, kind, state ORDER BY queue, kind, state;

-- Running jobs with their progress and heartbeat age. A heartbeat older than a few seconds, or an
-- expired lease, means the worker is stuck or dead: the reaper of any worker requeues such a job.
SELECT id, kind, queue, recording_id, worker, attempts, max_attempts, round(progress::numeric * 100, 1) AS percent,
       running_for, heartbeat_age, lease_expired, cancel_requested_at
  FROM vtp_running_jobs ORDER BY started_at;

-- Failed jobs of the last day with their last error, newest first.
SELECT id, kind, queue, recording_id, attempts, max_attempts, finished_at, last_error
  FROM vtp_failed_jobs WHERE finished_at > now() - interval '1 day'
 ORDER BY finished_at DESC;

-- Failed jobs per kind, with the most recent error of each kind.
SELECT DISTINCT ON (kind) kind, count(*) OVER (PARTITION BY kind) AS failed, finished_at AS last_failed_at,
       last_error
  FROM vtp_failed_jobs ORDER BY kind, finished_at DESC;

-- Attempts that went wrong in the last day (failed, lease expired, cancelled), from the attempt history.
SELECT a.job_id, j.kind, a.attempt, a.worker, a.started_at, a.finished_at, a.outcome, a.error
  FROM job_attempts a JOIN jobs j ON j.id = a.job_id
 WHERE a.outcome IN ('failed', 'lease_expired', 'cancelled') AND a.finished_at > now() - interval '1 day'
 ORDER BY a.finished_at DESC LIMIT 100;

-- Recordings deleted by users whose files are still waiting for their purge job (its latest one).
SELECT r.id, r.title, r.deleted_at, p.id AS purge_job, p.state AS purge_state, p.last_error
  FROM recordings r
  LEFT JOIN LATERAL (SELECT j.id, j.state, j.last_error FROM jobs j
                      WHERE j.recording_id = r.id AND j.kind = 'purge' ORDER BY j.id DESC LIMIT 1) p ON true
 WHERE r.deleted_at IS NOT NULL AND p.state IS DISTINCT FROM 'succeeded'
 ORDER BY r.deleted_at;

-- Recordings in 'processing' with no queued or running job left: nothing will move them on (a purge or a
-- tidy job does not: neither is a pipeline step).
SELECT r.id, r.title, r.updated_at
  FROM recordings r
 WHERE r.status = 'processing' AND r.deleted_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.recording_id = r.id AND j.state IN ('queued', 'running')
                      AND j.kind NOT IN ('purge', 'tidy'))
 ORDER BY r.updated_at;

-- Retention dry run: the recordings the daily retention job would soft-delete (and purge) if it ran now:
-- past retention_days since they were created, not on legal hold, not recording, not deleted yet.
SELECT id, title, owner_id, created_at, retention_days, expired_at, size_bytes
  FROM vtp_retention_due ORDER BY expired_at;

-- Which migrations are applied.
SELECT version, applied_at FROM schema_migrations ORDER BY version;

-- ============================================================ Part 2: one job or recording (\set first)

-- One job in full (\set id 42).
-- SELECT * FROM jobs WHERE id = :id;

-- Why did job :id fail? One row per attempt (\set id 42).
-- SELECT attempt, worker, started_at, finished_at, finished_at - started_at AS took, outcome, error
--   FROM job_attempts WHERE job_id = :id ORDER BY attempt;

-- The jobs of one recording, newest first (\set recording_id 5d0c9f2e-8a1b-4c3d-9e7f-0a1b2c3d4e5f).
-- SELECT id, kind, state, attempts, max_attempts, progress, run_at, finished_at, last_error
--   FROM jobs WHERE recording_id = :'recording_id' ORDER BY id DESC;

-- Retry a failed or cancelled job: queued again now, with three more attempts. attempts never goes
-- back (it fences out a worker that lost its lease). Returns the id, or nothing if the job was not
-- failed or cancelled. Workers are woken at once by the NOTIFY trigger.
-- SELECT * FROM vtp_retry_job(:id);

-- Retry every failed job; returns their ids.
-- SELECT * FROM vtp_retry_failed();

-- Retry every failed job of one kind (\set kind probe).
-- SELECT * FROM vtp_retry_failed(:'kind');

-- Cancel a job: a queued one is cancelled at once, a running one is stopped by its worker within a
-- second (cancel_requested_at is set and the worker is woken by NOTIFY vtp_cancel).
-- SELECT * FROM vtp_cancel_job(:id);

-- Reprioritise a queued job: lower runs first, 0 to 1000, default 100 (\set priority 10).
-- SELECT * FROM vtp_reprioritise_job(:id, :priority);

-- Run a job that is scheduled for later now (the NOTIFY trigger wakes a worker).
-- UPDATE jobs SET run_at = now(), updated_at = now() WHERE id = :id AND state = 'queued' AND run_at > now() RETURNING id;

-- Queue a job by hand, e.g. probe a recording again: the queue is filled in by a trigger (probe ->
-- light) and workers are woken by NOTIFY vtp_jobs (\set recording_id 5d0c9f2e-...).
-- INSERT INTO jobs (kind, recording_id) VALUES ('probe', :'recording_id') RETURNING id, queue, state;

-- Put a recording on legal hold: the retention job never deletes it until the hold is lifted (set it to
-- false again) (\set recording_id 5d0c9f2e-...).
-- UPDATE recordings SET legal_hold = true, updated_at = now() WHERE id = :'recording_id' RETURNING id, legal_hold;

-- Delete finished jobs (succeeded, failed, cancelled) older than 30 days with their attempt history;
-- returns how many.
-- SELECT vtp_prune_jobs(interval '30 days');
