-- 005_hls.sql: adaptive HLS: what the transcode job publishes on a recording (its renditions, from which the
-- API derives stream_url), and its place in the pipeline (after the probe, in the heavy queue).

ALTER TABLE recordings
    -- The renditions of the published HLS ladder (docs/openapi.yaml, Rendition),
    -- highest bandwidth first; NULL until the transcode job has published one.
    ADD COLUMN renditions       jsonb CHECK (renditions IS NULL OR jsonb_typeof(renditions) = 'array'),
    -- How the segments are stored: 'fmp4' (CMAF, .m4s) or 'mpegts' (.ts).
    ADD COLUMN hls_segment_type text CHECK (hls_segment_type IN ('fmp4', 'mpegts'));

INSERT INTO pipeline_steps (after, kind, priority) VALUES ('probe', 'transcode', 50);
