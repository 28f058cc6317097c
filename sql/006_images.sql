-- 006_images.sql: posters, thumbnails and storyboards: what the thumbnail and storyboard jobs publish on a
-- recording, and their place in the pipeline (both right after the probe, in the light queue).

ALTER TABLE recordings
    -- Time of the automatically chosen poster frame (not black, not blank);
    -- NULL until the thumbnail job has made one (or for audio-only media).
    ADD COLUMN poster_s   double precision CHECK (poster_s >= 0),
    -- The storyboard's JSON form (docs/openapi.yaml, Storyboard); NULL until made.
    ADD COLUMN storyboard jsonb CHECK (storyboard IS NULL OR jsonb_typeof(storyboard) = 'object');

-- The queue comes from vtp_job_default_queue(): 'light' for both, so a new
-- recording has its poster within seconds, long before any transcode ends.
INSERT INTO pipeline_steps (after, kind, priority) VALUES ('probe', 'thumbnail', 30), ('probe', 'storyboard', 40);
