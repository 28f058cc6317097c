-- 008_playable.sql: fast to playable: the playable job (worker/playable.c) runs right after the probe and
-- publishes a first rendition segment by segment; the ladder (transcode) follows it and replaces it.

ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('record', 'import', 'probe', 'playable', 'thumbnail', 'storyboard', 'transcode', 'mp4',
                    'purge', 'retention', 'noop'));

-- probe -> playable (before the thumbnail and storyboard: a viewer waits for it) -> transcode. The ladder
-- waits for the quick rendition so that the two never share the cores while a viewer waits for the first.
DELETE FROM pipeline_steps WHERE after = 'probe' AND kind = 'transcode';
INSERT INTO pipeline_steps (after, kind, priority) VALUES ('probe', 'playable', 10), ('playable', 'transcode', 50);

-- A pipeline step that failed for good fails its recording, with the reason; a failed playable job also takes
-- back the rendition it published while it ran (its files are gone: the job removes them when it fails).
CREATE OR REPLACE FUNCTION vtp_pipeline_failed(rec uuid, step text, error text) RETURNS void LANGUAGE sql AS $$
    UPDATE recordings r SET status = 'failed', status_detail = step || ' failed: ' || COALESCE(error, 'unknown error'),
                            renditions = CASE WHEN step = 'playable' AND NOT EXISTS
                                (SELECT 1 FROM jsonb_array_elements(r.renditions) e WHERE e ->> 'name' <> 'quick')
                                THEN NULL ELSE r.renditions END,
                            updated_at = clock_timestamp()
     WHERE r.id = rec AND r.status = 'processing'
       AND EXISTS (SELECT 1 FROM pipeline_steps s WHERE s.kind = step)
$$;
