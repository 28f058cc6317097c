-- 009_record_failed.sql: a record job that failed for good (a full disk, a source that never came) fails its
-- recording too; until now only the steps after it did, and the recording stayed 'recording' for ever.
-- A failed playable job (008) also takes back the quick rendition it published while it ran: its files are gone.
CREATE OR REPLACE FUNCTION vtp_pipeline_failed(rec uuid, step text, error text) RETURNS void LANGUAGE sql AS $$
    UPDATE recordings r SET status = 'failed', status_detail = step || ' failed: ' || COALESCE(error, 'unknown error'),
                            renditions = CASE WHEN step = 'playable' AND NOT EXISTS
                                (SELECT 1 FROM jsonb_array_elements(r.renditions) e WHERE e ->> 'name' <> 'quick')
                                THEN NULL ELSE r.renditions END,
                            updated_at = clock_timestamp()
     WHERE r.id = rec
       AND ((r.status = 'processing' AND EXISTS (SELECT 1 FROM pipeline_steps s WHERE s.kind = step))
            OR (step = 'record' AND r.status IN ('pending', 'recording', 'stopping')))
$$;
