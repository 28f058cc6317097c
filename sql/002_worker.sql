-- 002_worker.sql: what the worker needs: media facts on recordings, the pipeline's steps, the no-op kind for
-- benchmarks, cancellation wake-ups, and admin views and functions over the job table (docs/ADMIN.md).

ALTER TABLE recordings
    ADD COLUMN media_info  jsonb CHECK (media_info IS NULL OR jsonb_typeof(media_info) = 'object'),
    ADD COLUMN source_file text CHECK (source_file ~ '^[a-z0-9_.-]{1,64}$');  -- name under STORAGE_PATH/<id>/

ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('record', 'import', 'probe', 'thumbnail', 'storyboard', 'transcode', 'mp4', 'purge',
                    'retention', 'noop'));

-- The pipeline as data: when a step of a recording's pipeline succeeds (or its
-- source file is complete: after = 'source'), the steps that follow it are
-- queued in the same transaction. Later issues add rows, not code.
CREATE TABLE pipeline_steps (
    after     text NOT NULL CHECK (after ~ '^[a-z_]+$'),
    kind      text NOT NULL,
    priority  smallint NOT NULL DEFAULT 100 CHECK (priority BETWEEN 0 AND 1000),
    PRIMARY KEY (after, kind)
);
INSERT INTO pipeline_steps (after, kind, priority) VALUES ('source', 'probe', 20);

-- Queues the steps that follow `after` for a recording; returns how many.
-- Each job carries the recording's source file name in its payload
-- ({"source_file": ...}): a job's child process has no database connection,
-- so it learns from the payload what to open.
CREATE FUNCTION vtp_pipeline_next(rec uuid, after_step text) RETURNS integer LANGUAGE sql AS $$
    WITH queued AS (
        INSERT INTO jobs (kind, recording_id, priority, payload)
        SELECT s.kind, rec, s.priority, jsonb_strip_nulls(jsonb_build_object('source_file', r.source_file))
          FROM pipeline_steps s
          JOIN recordings r ON r.id = rec AND r.deleted_at IS NULL
         WHERE s.after = after_step
        RETURNING 1)
    SELECT count(*)::integer FROM queued
$$;

-- A recording in 'processing' is 'ready' once no pipeline job is left to run.
CREATE FUNCTION vtp_pipeline_settle(rec uuid) RETURNS void LANGUAGE sql AS $$
    UPDATE recordings r SET status = 'ready', updated_at = clock_timestamp()
     WHERE r.id = rec AND r.status = 'processing'
       AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.recording_id = rec
                        AND j.state IN ('queued', 'running') AND j.kind <> 'purge')
$$;

-- A pipeline step that failed for good fails its recording, with the reason.
CREATE FUNCTION vtp_pipeline_failed(rec uuid, step text, error text) RETURNS void LANGUAGE sql AS $$
    UPDATE recordings r SET status = 'failed', status_detail = step || ' failed: ' || COALESCE(error, 'unknown error'),
                            updated_at = clock_timestamp()
     WHERE r.id = rec AND r.status = 'processing'
       AND EXISTS (SELECT 1 FROM pipeline_steps s WHERE s.kind = step)
$$;

-- Wake the worker running a job as soon as someone asks to cancel it (API or
-- SQL); a row trigger with WHEN, for the reason given in 001 for requeues.
CREATE FUNCTION vtp_jobs_notify_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('vtp_cancel', NEW.id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_notify_cancel AFTER UPDATE ON jobs FOR EACH ROW
    WHEN (NEW.state = 'running' AND NEW.cancel_requested_at IS NOT NULL AND OLD.cancel_requested_at IS NULL)
    EXECUTE FUNCTION vtp_jobs_notify_cancel();

-- Admin views (docs/ADMIN.md). -------------------------------------------------------------------

CREATE VIEW vtp_queue_depth AS
SELECT queue, count(*) FILTER (WHERE state = 'queued' AND run_at <= now()) AS runnable,
       count(*) FILTER (WHERE state = 'queued' AND run_at > now()) AS scheduled,
       count(*) FILTER (WHERE state = 'running') AS running,
       min(run_at) FILTER (WHERE state = 'queued') AS oldest_queued_run_at,
       now() - min(run_at) FILTER (WHERE state = 'queued' AND run_at <= now()) AS oldest_wait
  FROM jobs WHERE state IN ('queued', 'running') GROUP BY queue;

CREATE VIEW vtp_running_jobs AS
SELECT id, kind, queue, recording_id, worker, attempts, max_attempts, progress, progress_detail,
       started_at, now() - started_at AS running_for, now() - heartbeat_at AS heartbeat_age,
       lease_expires_at, lease_expires_at < now() AS lease_expired, cancel_requested_at
  FROM jobs WHERE state = 'running';

CREATE VIEW vtp_failed_jobs AS
SELECT id, kind, queue, recording_id, attempts, max_attempts, finished_at, last_error
  FROM jobs WHERE state = 'failed';

-- Admin functions. Each returns the ids it changed. --------------------------------------------------

-- Queue a failed or cancelled job again with three more attempts. attempts
-- only ever grows: it is the fencing token of a lease (a worker that lost its
-- lease finds no row with its attempt number and publishes nothing).
CREATE FUNCTION vtp_retry_job(job_id bigint) RETURNS SETOF bigint LANGUAGE sql AS $$
    UPDATE jobs SET state = 'queued', max_attempts = LEAST(attempts + 3, 100), run_at = now(), finished_at = NULL, last_error = NULL,
                    cancel_requested_at = NULL, worker = NULL, lease_expires_at = NULL, heartbeat_at = NULL,
                    progress = 0, progress_detail = NULL, updated_at = now()
     WHERE id = job_id AND state IN ('failed', 'cancelled') RETURNING id
$$;

-- Retry every failed job (three more attempts each), optionally of one kind.
CREATE FUNCTION vtp_retry_failed(only_kind text DEFAULT NULL) RETURNS SETOF bigint LANGUAGE sql AS $$
    UPDATE jobs SET state = 'queued', max_attempts = LEAST(attempts + 3, 100), run_at = now(), finished_at = NULL,
                    last_error = NULL, cancel_requested_at = NULL, worker = NULL, lease_expires_at = NULL,
                    heartbeat_at = NULL, progress = 0, progress_detail = NULL, updated_at = now()
     WHERE state = 'failed' AND (only_kind IS NULL OR kind = only_kind) RETURNING id
$$;

-- Cancel a job: a queued one at once, a running one by asking its worker.
-- A cancelled pipeline step fails its recording (nothing else would finish
-- the pipeline); the worker does the same when it stops a running one.
CREATE FUNCTION vtp_cancel_job(job_id bigint) RETURNS SETOF bigint LANGUAGE sql AS $$
    WITH c AS (
        UPDATE jobs SET state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
                        finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END,
                        cancel_requested_at = COALESCE(cancel_requested_at, now()), updated_at = now()
         WHERE id = job_id AND state IN ('queued', 'running') RETURNING id, state, kind, recording_id),
    failed AS (SELECT vtp_pipeline_failed(recording_id, kind, 'cancelled') FROM c
                WHERE state = 'cancelled' AND recording_id IS NOT NULL)
    SELECT id FROM c WHERE (SELECT count(*) FROM failed) >= 0  -- naming "failed" makes it run
$$;

-- Change the priority of a queued job (lower runs first).
CREATE FUNCTION vtp_reprioritise_job(job_id bigint, new_priority integer) RETURNS SETOF bigint LANGUAGE sql AS $$
    UPDATE jobs SET priority = new_priority, updated_at = now() WHERE id = job_id AND state = 'queued' RETURNING id
$$;

-- Delete finished jobs (and their attempt history) older than max_age.
CREATE FUNCTION vtp_prune_jobs(max_age interval) RETURNS bigint LANGUAGE sql AS $$
    WITH gone AS (DELETE FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled')
                   AND finished_at < now() - max_age RETURNING 1)
    SELECT count(*) FROM gone
$$;
