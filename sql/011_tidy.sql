-- 011_tidy.sql: the tidy job (worker/tidy.c) removes the quick rendition that a ladder carried over for the
-- players already on it, once every stream URL handed out before the ladder has expired. The transcode job's
-- publish (worker/kinds.c) queues it.

ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('record', 'import', 'probe', 'playable', 'thumbnail', 'storyboard', 'transcode', 'mp4',
                    'purge', 'retention', 'tidy', 'noop'));

-- A recording waiting a day for its tidy job is ready all the same.
CREATE OR REPLACE FUNCTION vtp_pipeline_settle(rec uuid) RETURNS void LANGUAGE sql AS $$
    UPDATE recordings r SET status = 'ready', updated_at = clock_timestamp()
     WHERE r.id = rec AND r.status = 'processing'
       AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.recording_id = rec
                        AND j.state IN ('queued', 'running') AND j.kind NOT IN ('purge', 'tidy'))
$$;
