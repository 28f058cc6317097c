-- 003_media.sql: pipeline jobs carry the recording's source file name in their payload ({"source_file": ...}):
-- a job's child process has no database connection, so it learns from the payload what to open.

CREATE OR REPLACE FUNCTION vtp_pipeline_next(rec uuid, after_step text) RETURNS integer LANGUAGE sql AS $$
    WITH queued AS (
        INSERT INTO jobs (kind, recording_id, priority, payload)
        SELECT s.kind, rec, s.priority, jsonb_strip_nulls(jsonb_build_object('source_file', r.source_file))
          FROM pipeline_steps s
          JOIN recordings r ON r.id = rec AND r.deleted_at IS NULL
         WHERE s.after = after_step
        RETURNING 1)
    SELECT count(*)::integer FROM queued
$$;
