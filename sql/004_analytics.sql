-- 004_analytics.sql: playback progress (sessions with merged watched ranges, per-viewer resume, 5-s retention
-- counters, raw events for audits), share links, and the daily retention job. Definitions: docs/analytics.md.

-- One row per playback session (a player instance). Watched ranges are merged as they arrive (a multirange),
-- so aggregates never read the raw events. buckets holds the 5-second buckets the session touched
-- (int4multirange of bucket numbers); a bucket that becomes covered adds one to playback_buckets.
CREATE TABLE playback_sessions (
    recording_id   uuid NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    session_id     text NOT NULL CHECK (session_id ~ '^[A-Za-z0-9_-]{8,64}$'),
    user_id        text CHECK (char_length(user_id) BETWEEN 1 AND 200),  -- NULL: opened with a share link
    share_id       uuid REFERENCES recording_sharing (id) ON DELETE SET NULL,
    started_at     timestamptz NOT NULL DEFAULT now(),
    last_event_at  timestamptz,                                          -- rate limit: one event per second
    events         integer NOT NULL DEFAULT 0 CHECK (events >= 0),
    position_s     double precision NOT NULL DEFAULT 0 CHECK (position_s >= 0),
    ranges         nummultirange NOT NULL DEFAULT '{}',                  -- watched content seconds, merged
    buckets        int4multirange NOT NULL DEFAULT '{}',                 -- 5-s buckets touched
    watched_s      double precision NOT NULL DEFAULT 0 CHECK (watched_s >= 0),     -- length of ranges
    watch_time_s   double precision NOT NULL DEFAULT 0 CHECK (watch_time_s >= 0),  -- time spent playing
    ended          boolean NOT NULL DEFAULT false,
    PRIMARY KEY (recording_id, session_id)
) WITH (fillfactor = 80);  -- every event rewrites the row: keep the updates HOT

-- Resume and the per-student list: one row per (recording, signed-in viewer), all sessions merged.
CREATE TABLE playback_viewers (
    recording_id   uuid NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    user_id        text NOT NULL CHECK (char_length(user_id) BETWEEN 1 AND 200),
    ranges         nummultirange NOT NULL DEFAULT '{}',
    watched_s      double precision NOT NULL DEFAULT 0 CHECK (watched_s >= 0),
    watch_time_s   double precision NOT NULL DEFAULT 0 CHECK (watch_time_s >= 0),
    position_s     double precision NOT NULL DEFAULT 0 CHECK (position_s >= 0),
    sessions       integer NOT NULL DEFAULT 0 CHECK (sessions >= 0),
    first_at       timestamptz NOT NULL DEFAULT now(),
    last_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (recording_id, user_id)
) WITH (fillfactor = 80);

-- Distinct sessions per 5-s bucket. Spread over 16 shards (by session) so concurrent players of one
-- recording do not queue on the same counter row; the analytics query adds the shards up.
CREATE TABLE playback_buckets (
    recording_id   uuid NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    bucket         integer NOT NULL CHECK (bucket >= 0),
    shard          smallint NOT NULL CHECK (shard BETWEEN 0 AND 15),
    viewers        integer NOT NULL DEFAULT 0 CHECK (viewers >= 0),
    PRIMARY KEY (recording_id, bucket, shard)
) WITH (fillfactor = 80);

-- Every accepted event as sent, for audits; the retention job deletes those older than
-- progress_event_days (config). Aggregates never read this table.
CREATE TABLE playback_events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recording_id   uuid NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    session_id     text NOT NULL,
    user_id        text,
    event          text NOT NULL CHECK (event IN ('play', 'pause', 'seek', 'heartbeat', 'ended')),
    position_s     double precision NOT NULL,
    from_s         double precision,
    to_s           double precision,
    playback_rate  double precision NOT NULL DEFAULT 1,
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX playback_events_recording_idx ON playback_events (recording_id, at);
-- Pruning by age: rows arrive in time order, so a BRIN index finds old ones at almost no cost per insert.
CREATE INDEX playback_events_at_idx ON playback_events USING brin (at);

-- The length in seconds of a multirange of seconds.
CREATE FUNCTION vtp_ranges_length(m nummultirange) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT COALESCE(sum(upper(r) - lower(r)), 0)::double precision FROM unnest(m) r $$;

-- Applies one progress event (shape validated by vtp-api). Returns 'ok', 'rate_limited' (the session
-- already had an event in this second: nothing is written), 'session_conflict' (the session id belongs
-- to another viewer) or 'beyond_duration' (a position past the recording's known duration; up to one
-- second past it is taken as the end, players report a little over). A range (from_s < to_s) is watched content on heartbeat, pause and ended; on seek it
-- is the jump and is not watched. rate is the playback rate: watch time is content seconds / rate.
CREATE FUNCTION vtp_progress_apply(rec uuid, sess text, who text, share uuid, ev text, pos double precision,
                                   from_s double precision, to_s double precision, rate double precision)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s playback_sessions%ROWTYPE;
    watched boolean;
    r nummultirange := '{}';
    b int4multirange := '{}';
    fresh int4multirange;
    played double precision := 0;
    new_ranges nummultirange;
    new_viewer boolean := false;
    dur double precision;
BEGIN
    -- Progress is telemetry: its transaction commits without waiting for the WAL flush, so a crash of the
    -- database may lose the last fraction of a second of events (never corrupt anything), and players
    -- never queue behind disk flushes. Only this event's own transaction is affected (is_local).
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT duration_s INTO dur FROM recordings WHERE id = rec;
    IF dur IS NOT NULL THEN
        IF pos > dur + 1 OR from_s > dur + 1 OR to_s > dur + 1 THEN
            RETURN 'beyond_duration';
        END IF;
        pos := LEAST(pos, dur);
        from_s := CASE WHEN from_s IS NOT NULL THEN LEAST(from_s, dur) END;  -- LEAST would turn NULL into dur
        to_s := CASE WHEN to_s IS NOT NULL THEN LEAST(to_s, dur) END;
    END IF;
    watched := ev IN ('heartbeat', 'pause', 'ended') AND from_s IS NOT NULL AND to_s > from_s;
    IF watched THEN
        r := nummultirange(numrange(round(from_s::numeric, 3), round(to_s::numeric, 3)));
        b := int4multirange(int4range(floor(from_s / 5)::integer, ceil(to_s / 5)::integer));
        played := (to_s - from_s) / rate;
    END IF;
    SELECT * INTO s FROM playback_sessions p WHERE p.recording_id = rec AND p.session_id = sess FOR UPDATE;
    IF NOT FOUND THEN
        -- A new session is written once, whole (the common case under load: no second write of the row).
        INSERT INTO playback_sessions (recording_id, session_id, user_id, share_id, last_event_at, events, position_s,
                                       ranges, buckets, watched_s, watch_time_s, ended)
        VALUES (rec, sess, who, share, now(), 1, pos, r, b, vtp_ranges_length(r), played, ev = 'ended')
            ON CONFLICT DO NOTHING;
        IF FOUND THEN
            new_viewer := true;
            fresh := b;
        ELSE  -- a concurrent first event of the same session won
            SELECT * INTO s FROM playback_sessions p WHERE p.recording_id = rec AND p.session_id = sess FOR UPDATE;
        END IF;
    END IF;
    IF NOT new_viewer THEN
        IF s.user_id IS DISTINCT FROM who THEN
            RETURN 'session_conflict';
        END IF;
        IF s.last_event_at IS NOT NULL AND date_trunc('second', s.last_event_at) >= date_trunc('second', now()) THEN
            RETURN 'rate_limited';
        END IF;
        new_ranges := s.ranges + r;
        fresh := (s.buckets + b) - s.buckets;
        UPDATE playback_sessions p SET ranges = new_ranges, buckets = s.buckets + b,
               watched_s = vtp_ranges_length(new_ranges), watch_time_s = p.watch_time_s + played,
               position_s = pos, last_event_at = now(), events = p.events + 1, ended = p.ended OR ev = 'ended'
         WHERE p.recording_id = rec AND p.session_id = sess;
    END IF;
    IF NOT isempty(fresh) THEN
        -- In bucket order, so two sessions of one shard always lock counters in the same order.
        INSERT INTO playback_buckets AS c (recording_id, bucket, shard, viewers)
        SELECT rec, k, (abs(hashtext(sess)) % 16)::smallint, 1
          FROM unnest(fresh) f, generate_series(lower(f), upper(f) - 1) k ORDER BY k
            ON CONFLICT (recording_id, bucket, shard) DO UPDATE SET viewers = c.viewers + 1;
    END IF;
    IF who IS NOT NULL THEN
        -- Nearly always the viewer's row exists: a plain UPDATE is cheaper than a speculative INSERT.
        UPDATE playback_viewers v SET ranges = v.ranges + r, watched_s = vtp_ranges_length(v.ranges + r),
               watch_time_s = v.watch_time_s + played, position_s = pos,
               sessions = v.sessions + CASE WHEN new_viewer THEN 1 ELSE 0 END, last_at = now()
         WHERE v.recording_id = rec AND v.user_id = who;
        IF NOT FOUND THEN
            INSERT INTO playback_viewers AS v (recording_id, user_id, ranges, watched_s, watch_time_s, position_s,
                                               sessions)
            VALUES (rec, who, r, vtp_ranges_length(r), played, pos, 1)
                ON CONFLICT (recording_id, user_id) DO UPDATE SET
                   ranges = v.ranges + r, watched_s = vtp_ranges_length(v.ranges + r),
                   watch_time_s = v.watch_time_s + played, position_s = pos,
                   sessions = v.sessions + CASE WHEN new_viewer THEN 1 ELSE 0 END, last_at = now();
        END IF;
    END IF;
    INSERT INTO playback_events (recording_id, session_id, user_id, event, position_s, from_s, to_s, playback_rate)
    VALUES (rec, sess, who, ev, pos, from_s, to_s, rate);
    RETURN 'ok';
END $$;

-- Share links: a link share is only ever looked up by its token's hash.
CREATE INDEX recording_sharing_live_idx ON recording_sharing (recording_id) WHERE revoked_at IS NULL;

-- Retention ---------------------------------------------------------------------------------------

-- Recordings past their retention: retention_days after they were created, not on legal hold, not
-- recording, not deleted yet. The retention job deletes exactly these; docs/ADMIN.md shows the dry run.
CREATE VIEW vtp_retention_due AS
SELECT r.id, r.title, r.owner_id, r.created_at, r.retention_days,
       r.created_at + make_interval(days => r.retention_days) AS expired_at, r.size_bytes
  FROM recordings r
 WHERE r.deleted_at IS NULL AND NOT r.legal_hold
   AND r.status NOT IN ('pending', 'recording', 'stopping')
   AND r.created_at + make_interval(days => r.retention_days) <= now();

-- What the retention job does, in one transaction: soft-delete what is due and queue a purge for each,
-- then drop raw progress events older than event_days. Returns the deleted recordings' ids.
CREATE FUNCTION vtp_retention_run(event_days integer) RETURNS SETOF uuid LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM playback_events WHERE at < now() - make_interval(days => event_days);
    RETURN QUERY
    WITH due AS (
        UPDATE recordings r SET deleted_at = now(), updated_at = clock_timestamp()
          FROM vtp_retention_due d
         WHERE r.id = d.id AND r.deleted_at IS NULL AND NOT r.legal_hold
        RETURNING r.id),
    purge AS (INSERT INTO jobs (kind, recording_id) SELECT 'purge', id FROM due RETURNING recording_id)
    SELECT recording_id FROM purge;
END $$;

-- The daily run: a retention job with payload {"daily": true} queues the next one for the same time
-- tomorrow when it succeeds (in the transaction that marks it succeeded). At most one daily job is ever
-- queued or running; the migration seeds the first. A daily job that fails for good stops the schedule
-- until an admin retries it (it shows in vtp_failed_jobs).
CREATE UNIQUE INDEX jobs_retention_daily_idx ON jobs ((true))
    WHERE kind = 'retention' AND state IN ('queued', 'running') AND payload ? 'daily';

CREATE FUNCTION vtp_retention_reschedule() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO jobs (kind, payload, run_at, priority)
    VALUES ('retention', '{"daily": true}', NEW.started_at + interval '1 day', NEW.priority)
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_retention_reschedule AFTER UPDATE ON jobs FOR EACH ROW
    WHEN (NEW.kind = 'retention' AND NEW.state = 'succeeded' AND OLD.state <> 'succeeded' AND NEW.payload ? 'daily')
    EXECUTE FUNCTION vtp_retention_reschedule();

INSERT INTO jobs (kind, payload) VALUES ('retention', '{"daily": true}') ON CONFLICT DO NOTHING;
