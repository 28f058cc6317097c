-- 010_playable_coord.sql: the playable job and the ladder coordinated through the queue: a failed attempt takes
-- back the quick rendition at once, a ladder asked for while the playable job runs waits for it, and a playable
-- job run again after a ladder does not queue a second one.

-- A playable attempt that ends without success (failed, to be retried; stopped; lease expired) has removed, or
-- will replace, the quick rendition's files: until a new attempt publishes it again, the recording must not
-- answer a stream_url whose master is gone. A published ladder is not the playable job's to take back.
CREATE FUNCTION vtp_playable_attempt_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE recordings r SET renditions = NULL, updated_at = clock_timestamp()
     WHERE r.id = NEW.recording_id AND r.renditions IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(r.renditions) e WHERE e ->> 'name' <> 'quick');
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_playable_attempt_ended AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (OLD.kind = 'playable' AND OLD.state = 'running' AND NEW.state IN ('queued', 'failed', 'cancelled')
                       AND NEW.recording_id IS NOT NULL)
    EXECUTE FUNCTION vtp_playable_attempt_ended();

-- A ladder queued while the recording's playable job is queued or running (POST /recordings/{id}/transcode)
-- waits for it: the two would write the same hls/ folder (the ladder's publish swaps it away under the
-- growing quick rendition, and the quick job's master would replace the ladder's). It is held by run_at, no
-- later than the playable job's timeout (6 h: by then that job's lease has expired), and released as soon as
-- the playable job is over.
CREATE FUNCTION vtp_transcode_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM jobs j WHERE j.recording_id = NEW.recording_id AND j.kind = 'playable'
                AND j.state IN ('queued', 'running')) THEN
        NEW.run_at := clock_timestamp() + interval '6 hours';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER jobs_transcode_hold BEFORE INSERT ON jobs
    FOR EACH ROW WHEN (NEW.kind = 'transcode' AND NEW.recording_id IS NOT NULL)
    EXECUTE FUNCTION vtp_transcode_hold();

CREATE FUNCTION vtp_transcode_release() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE jobs j SET run_at = clock_timestamp(), updated_at = clock_timestamp()
     WHERE j.recording_id = NEW.recording_id AND j.kind = 'transcode' AND j.state = 'queued'
       AND j.run_at > clock_timestamp()
       AND NOT EXISTS (SELECT 1 FROM jobs p WHERE p.recording_id = NEW.recording_id AND p.kind = 'playable'
                        AND p.state IN ('queued', 'running'));
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_transcode_release AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (OLD.kind = 'playable' AND NEW.state IN ('succeeded', 'failed', 'cancelled')
                       AND OLD.state <> NEW.state AND NEW.recording_id IS NOT NULL)
    EXECUTE FUNCTION vtp_transcode_release();

-- The ladder that follows the playable step is not queued again when one is already published, queued or
-- running for the recording (an admin's retry of the playable job after the ladder; a ladder asked for by
-- POST .../transcode while the playable job ran: its profiles are the ones wanted). Nor is the playable step
-- when a ladder is already published, queued or running (asked for before the probe ended): the two would
-- write hls/ at the same time, and the ladder is what was asked for.
CREATE OR REPLACE FUNCTION vtp_pipeline_next(rec uuid, after_step text) RETURNS integer LANGUAGE sql AS $$
    WITH queued AS (
        INSERT INTO jobs (kind, recording_id, priority, payload)
        SELECT s.kind, rec, s.priority, jsonb_strip_nulls(jsonb_build_object('source_file', r.source_file))
          FROM pipeline_steps s
          JOIN recordings r ON r.id = rec AND r.deleted_at IS NULL
         WHERE s.after = after_step
           AND NOT (s.kind IN ('transcode', 'playable')
                    AND (EXISTS (SELECT 1 FROM jsonb_array_elements(COALESCE(r.renditions, '[]'::jsonb)) e
                                  WHERE e ->> 'name' <> 'quick')
                         OR EXISTS (SELECT 1 FROM jobs j WHERE j.recording_id = rec AND j.kind = 'transcode'
                                     AND j.state IN ('queued', 'running'))))
        RETURNING 1)
    SELECT count(*)::integer FROM queued
$$;
