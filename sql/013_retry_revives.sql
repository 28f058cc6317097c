-- 013_retry_revives.sql: retrying the job that failed a recording brings the recording back. Until now the
-- recording stayed 'failed' after a successful retry (only 'processing' recordings move on and settle), and a
-- retried record job of a stopped class listened for a stream again for record_inactivity_s (the retry cleared
-- the stop) before it joined the parts it already had.

-- The recording of a retried job (step: the job's kind) leaves 'failed' when no other job of its pipeline is
-- still failed or cancelled: a record job to 'stopping' (the class was stopped: the retry joins its parts) or
-- 'pending' (it listens again), any later step to 'processing'.
CREATE FUNCTION vtp_retry_revive(rec uuid, step text, retried bigint) RETURNS void LANGUAGE sql AS $$
    UPDATE recordings r
       SET status = CASE WHEN step <> 'record' THEN 'processing'
                         WHEN r.stopped_at IS NOT NULL THEN 'stopping' ELSE 'pending' END,
           status_detail = NULL, updated_at = clock_timestamp()
     WHERE r.id = rec AND r.status = 'failed' AND r.deleted_at IS NULL
       AND (step = 'record' OR EXISTS (SELECT 1 FROM pipeline_steps s WHERE s.kind = step))
       AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.recording_id = rec AND j.id <> retried
                        AND j.state IN ('failed', 'cancelled')
                        AND (j.kind = 'record' OR j.kind IN (SELECT kind FROM pipeline_steps)))
$$;

-- As in 002, plus: a record job keeps its stop when its class was stopped (the stop is the end of the class,
-- not a cancel to undo), and the recording is revived.
CREATE OR REPLACE FUNCTION vtp_retry_job(job_id bigint) RETURNS SETOF bigint LANGUAGE sql AS $$
    WITH retried AS (
        UPDATE jobs j SET state = 'queued', max_attempts = LEAST(attempts + 3, 100), run_at = now(), finished_at = NULL,
                          last_error = NULL, worker = NULL, lease_expires_at = NULL, heartbeat_at = NULL,
                          progress = 0, progress_detail = NULL, updated_at = now(),
                          cancel_requested_at = CASE WHEN j.kind = 'record' AND EXISTS
                              (SELECT 1 FROM recordings r WHERE r.id = j.recording_id AND r.stopped_at IS NOT NULL)
                              THEN now() END
         WHERE j.id = job_id AND j.state IN ('failed', 'cancelled') RETURNING j.id, j.kind, j.recording_id),
    revived AS (SELECT vtp_retry_revive(recording_id, kind, id) FROM retried WHERE recording_id IS NOT NULL)
    SELECT id FROM retried WHERE (SELECT count(*) FROM revived) >= 0  -- naming "revived" makes it run
$$;

-- One job after another (each call sees the ones before it retried), so a recording that two failed steps
-- failed is revived with the second.
CREATE OR REPLACE FUNCTION vtp_retry_failed(only_kind text DEFAULT NULL) RETURNS SETOF bigint LANGUAGE sql AS $$
    SELECT r.id FROM (SELECT id FROM jobs WHERE state = 'failed' AND (only_kind IS NULL OR kind = only_kind)
                       ORDER BY id) f, LATERAL vtp_retry_job(f.id) AS r(id)
$$;
