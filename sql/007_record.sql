-- 007_record.sql: a finished live recording (the record job) is probed like an upload.
INSERT INTO pipeline_steps (after, kind, priority) VALUES ('record', 'probe', 20);
