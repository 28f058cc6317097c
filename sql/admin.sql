-- admin.sql: queries for administrators of the job table and recordings (psql "$DATABASE_URL" -f, or copy one).
-- Not a migration: nothing here runs by itself. Every statement is safe to run on a live system.

-- What is queued or running, per queue and kind.
SELECT queue, kind, state, count(*) AS jobs, min(run_at) AS oldest_run_at
  FROM jobs WHERE state IN ('queued', 'running')
 GROUP BY queue, kind, state ORDER BY queue, kind, state;

-- Running jobs with their worker, lease and progress; an expired lease means a worker died.
SELECT id, kind, recording_id, worker, attempts, progress, heartbeat_at, lease_expires_at,
       lease_expires_at < now() AS lease_expired
  FROM jobs WHERE state = 'running' ORDER BY started_at;

-- Failed jobs of the last day with their last error, newest first.
SELECT id, kind, recording_id, attempts, max_attempts, finished_at, last_error
  FROM jobs WHERE state = 'failed' AND finished_at > now() - interval '1 day'
 ORDER BY finished_at DESC;

-- Why did job :id fail? One row per attempt.
-- SELECT attempt, worker, started_at, finished_at, outcome, error FROM job_attempts WHERE job_id = :id ORDER BY attempt;

-- Retry a failed or cancelled job (workers are woken by the NOTIFY trigger).
-- UPDATE jobs SET state = 'queued', run_at = now(), finished_at = NULL, last_error = NULL,
--        attempts = 0, cancel_requested_at = NULL, updated_at = now()
--  WHERE id = :id AND state IN ('failed', 'cancelled');

-- Cancel a queued job at once, or ask the worker running it to stop.
-- UPDATE jobs SET state = 'cancelled', finished_at = now(), updated_at = now() WHERE id = :id AND state = 'queued';
-- UPDATE jobs SET cancel_requested_at = now(), updated_at = now() WHERE id = :id AND state = 'running';

-- Recordings deleted by users whose files are still waiting for their purge job.
SELECT r.id, r.title, r.deleted_at, j.id AS purge_job, j.state
  FROM recordings r LEFT JOIN jobs j ON j.recording_id = r.id AND j.kind = 'purge'
 WHERE r.deleted_at IS NOT NULL AND (j.state IS DISTINCT FROM 'succeeded')
 ORDER BY r.deleted_at;

-- Which migrations are applied.
SELECT version, applied_at FROM schema_migrations ORDER BY version;
