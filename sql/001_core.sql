-- 001_core.sql: recordings, participants, sharing, access log and the job queue.
-- Migrations are never edited once landed: add a new numbered file instead.

-- Timestamps in API answers: RFC 3339 in UTC, to the second.
CREATE FUNCTION vtp_rfc3339(t timestamptz) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') $$;

CREATE TABLE recordings (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    title           text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    room_id         text NOT NULL CHECK (char_length(room_id) BETWEEN 1 AND 200),
    owner_id        text NOT NULL CHECK (char_length(owner_id) BETWEEN 1 AND 200),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'recording', 'stopping', 'processing', 'ready', 'failed')),
    source_type     text NOT NULL CHECK (source_type IN ('sdp', 'url', 'upload')),
    source_sdp      text CHECK (octet_length(source_sdp) <= 65536),
    source_url      text CHECK (char_length(source_url) <= 2048),
    profiles        text[] NOT NULL DEFAULT '{1080p,720p,480p,360p}',
    retention_days  integer NOT NULL DEFAULT 365 CHECK (retention_days BETWEEN 1 AND 36500),
    legal_hold      boolean NOT NULL DEFAULT false,
    duration_s      double precision CHECK (duration_s >= 0),
    size_bytes      bigint NOT NULL DEFAULT 0 CHECK (size_bytes >= 0),
    status_detail   text,
    -- clock_timestamp, not now(): the list is ordered by it, and rows of one
    -- long transaction should still sort in the order they were made.
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at      timestamptz,
    stopped_at      timestamptz,
    deleted_at      timestamptz,
    CHECK (source_type <> 'sdp' OR source_sdp IS NOT NULL),
    CHECK (source_type <> 'url' OR source_url IS NOT NULL),
    CHECK (stopped_at IS NULL OR started_at IS NULL OR stopped_at >= started_at)
);

-- The list is newest first, paged by (created_at, id); these serve it for
-- everyone, per owner and per room. Soft-deleted rows are never listed.
CREATE INDEX recordings_list_idx ON recordings (created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX recordings_owner_idx ON recordings (owner_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX recordings_room_idx ON recordings (room_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX recordings_status_idx ON recordings (status, created_at DESC, id DESC) WHERE deleted_at IS NULL;

CREATE TABLE recording_participants (
    recording_id        uuid NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    user_id             text NOT NULL CHECK (char_length(user_id) BETWEEN 1 AND 200),
    display_name        text CHECK (char_length(display_name) <= 200),
    joined_at           timestamptz NOT NULL DEFAULT now(),  -- first join
    left_at             timestamptz,                         -- last leave; NULL while present
    present_since       timestamptz,                         -- start of the current stay
    total_s             double precision NOT NULL DEFAULT 0 CHECK (total_s >= 0),
    -- Counters: an SFU reports running totals per connection; a rejoin opens a
    -- new connection, so closed connections' totals are kept in *_closed.
    bytes_sent          bigint NOT NULL DEFAULT 0 CHECK (bytes_sent >= 0),
    bytes_received      bigint NOT NULL DEFAULT 0 CHECK (bytes_received >= 0),
    packets_lost        bigint NOT NULL DEFAULT 0 CHECK (packets_lost >= 0),
    bytes_sent_closed     bigint NOT NULL DEFAULT 0 CHECK (bytes_sent_closed >= 0),
    bytes_received_closed bigint NOT NULL DEFAULT 0 CHECK (bytes_received_closed >= 0),
    packets_lost_closed   bigint NOT NULL DEFAULT 0 CHECK (packets_lost_closed >= 0),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (recording_id, user_id),
    CHECK (left_at IS NULL OR left_at >= joined_at)
);
-- "Recordings I took part in" for the list's visibility rule.
CREATE INDEX recording_participants_user_idx ON recording_participants (user_id, recording_id);

CREATE TABLE recording_sharing (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    recording_id  uuid NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    created_by    text NOT NULL CHECK (char_length(created_by) BETWEEN 1 AND 200),
    user_id       text CHECK (char_length(user_id) BETWEEN 1 AND 200),  -- NULL: a link share
    token_hash    bytea UNIQUE CHECK (octet_length(token_hash) = 32),    -- SHA-256 of the link token
    expires_at    timestamptz,
    max_views     integer CHECK (max_views > 0),
    views         integer NOT NULL DEFAULT 0 CHECK (views >= 0),
    can_download  boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    CHECK (user_id IS NOT NULL OR token_hash IS NOT NULL)
);
CREATE INDEX recording_sharing_recording_idx ON recording_sharing (recording_id, created_at DESC);
CREATE INDEX recording_sharing_user_idx ON recording_sharing (user_id, recording_id)
    WHERE user_id IS NOT NULL AND revoked_at IS NULL;

CREATE TABLE recording_access_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recording_id  uuid NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    user_id       text,
    share_id      uuid REFERENCES recording_sharing (id) ON DELETE SET NULL,
    action        text NOT NULL CHECK (action IN ('download', 'download_url', 'stream', 'share_redeem', 'view')),
    rendition     text,
    bytes         bigint CHECK (bytes >= 0),
    user_agent    text CHECK (char_length(user_agent) <= 1024),
    remote_addr   inet,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recording_access_log_recording_idx ON recording_access_log (recording_id, at DESC);

-- The job queue: a public interface that admins read and change with SQL
-- (sql/admin.sql). CHECKs keep a hand-written UPDATE from breaking invariants.
CREATE TABLE jobs (
    id                  bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    kind                text NOT NULL CHECK (kind IN ('record', 'import', 'probe', 'thumbnail', 'storyboard',
                                                      'transcode', 'mp4', 'purge', 'retention')),
    queue               text NOT NULL CHECK (queue ~ '^[a-z][a-z0-9_]{0,31}$'),
    recording_id        uuid REFERENCES recordings (id) ON DELETE SET NULL,
    payload             jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
    state               text NOT NULL DEFAULT 'queued'
                        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    priority            smallint NOT NULL DEFAULT 100 CHECK (priority BETWEEN 0 AND 1000),  -- lower runs first
    run_at              timestamptz NOT NULL DEFAULT now(),
    attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts        integer NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 100),
    worker              text,
    heartbeat_at        timestamptz,
    lease_expires_at    timestamptz,
    progress            real NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    progress_detail     jsonb,
    cancel_requested_at timestamptz,
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    CHECK (attempts <= max_attempts),
    CHECK (state <> 'running' OR (worker IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CHECK ((state IN ('succeeded', 'failed', 'cancelled')) = (finished_at IS NOT NULL))
) WITH (fillfactor = 80);  -- room on each page so heartbeats stay HOT updates

-- Only the states that are scanned are indexed, and no column a heartbeat
-- writes (heartbeat_at, lease_expires_at, progress) is indexed, so heartbeats
-- stay HOT. The reaper scans the few running rows through jobs_running_idx.
-- It is on id, not worker: on worker, the planner preferred it to the primary
-- key for the worker's fenced updates (WHERE id = $1 AND worker = $3 AND
-- state = 'running') and walked every dead entry of past running rows, which
-- an open snapshot keeps from being vacuumed (throughput fell to 0.6x).
CREATE INDEX jobs_claim_idx ON jobs (queue, priority, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_running_idx ON jobs (id) WHERE state = 'running';
CREATE INDEX jobs_recording_idx ON jobs (recording_id, id DESC) WHERE recording_id IS NOT NULL;
CREATE INDEX jobs_finished_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- The queue a kind runs in when an INSERT names none: light work never waits
-- behind hour-long transcodes, and recorders have slots of their own.
CREATE FUNCTION vtp_job_default_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.queue IS NULL THEN
        NEW.queue := CASE NEW.kind
            WHEN 'record' THEN 'record'
            WHEN 'transcode' THEN 'heavy'
            WHEN 'mp4' THEN 'heavy'
            WHEN 'import' THEN 'heavy'
            ELSE 'light'
        END;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER jobs_default_queue BEFORE INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION vtp_job_default_queue();

-- Wake workers when jobs become runnable: on insert (once per statement, so a
-- bulk insert sends one notification per queue), and on any update back to
-- 'queued', an admin's retry by SQL included. The update trigger is a row
-- trigger with a WHEN clause: PostgreSQL tests the clause without calling the
-- function, so the claims, heartbeats and completions that make up nearly all
-- updates cost nothing extra (a statement trigger with transition tables cost
-- 7 % of the queue's throughput here). pg_notify sends one notification per
-- distinct payload per transaction, so a bulk update also wakes each queue once.
-- The payload is the queue's name (comma-separated names for bulk inserts).
CREATE FUNCTION vtp_jobs_notify_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE queues text;
BEGIN
    SELECT string_agg(DISTINCT queue, ',') INTO queues FROM new_rows WHERE state = 'queued';
    IF queues IS NOT NULL THEN
        PERFORM pg_notify('vtp_jobs', queues);
    END IF;
    RETURN NULL;
END $$;
CREATE FUNCTION vtp_jobs_notify_requeue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('vtp_jobs', NEW.queue);
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_notify_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION vtp_jobs_notify_insert();
CREATE TRIGGER jobs_notify_requeue AFTER UPDATE ON jobs FOR EACH ROW
    WHEN (NEW.state = 'queued' AND (OLD.state <> 'queued' OR NEW.run_at < OLD.run_at))
    EXECUTE FUNCTION vtp_jobs_notify_requeue();

-- Append-only history: one row per finished attempt (the attempt under way is
-- the job's own row), so admins can see why something failed three times.
-- Written once, when the attempt ends, in the statement that ends it.
CREATE TABLE job_attempts (
    job_id       bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt      integer NOT NULL CHECK (attempt >= 1),
    worker       text NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('succeeded', 'failed', 'cancelled', 'lease_expired', 'requeued')),
    error        text,
    PRIMARY KEY (job_id, attempt)
);
