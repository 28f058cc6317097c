"""The retention job (worker/retention.c, vtp_retention_run() in sql/004_analytics.sql) against the real
PostgreSQL of the test stack, run by `vtp-worker --once` on a queue of the test's own.

Under test: a recording past its retention_days is soft-deleted (404 through the API) and gets a purge job;
one on legal hold, one still within its retention, and one still recording are left alone; the dry-run view
lists exactly what would go; raw progress events older than progress_event_days are dropped; the daily
job queues the next one for a day later when it succeeds, and at most one daily job is ever queued."""

import json
import subprocess
import uuid

import psycopg2
import pytest

from helpers import API, Client, assert_problem, make_token, unique


def run_worker(stack, queue):
    proc = subprocess.run([str(stack.build_dir / "vtp-worker"), "--once", "--queues", queue], env=dict(stack.env),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def recording(db, owner, age_days, retention_days=30, status="ready", legal_hold=False):
    with db.cursor() as cur:
        cur.execute("INSERT INTO recordings (title, room_id, owner_id, status, source_type, retention_days, legal_hold,"
                    " created_at) VALUES ('r', 'room', %s, %s, 'upload', %s, %s, now() - make_interval(days => %s))"
                    " RETURNING id::text", (owner, status, retention_days, legal_hold, age_days))
        return cur.fetchone()[0]


def job_row(db, job_id):
    with db.cursor() as cur:
        cur.execute("SELECT state, last_error FROM jobs WHERE id = %s", (job_id,))
        return cur.fetchone()


@pytest.fixture
def queue():
    return "t" + uuid.uuid4().hex[:12]


def test_expired_recordings_go_unless_on_hold(stack, db, queue):
    owner = unique("own")
    expired = recording(db, owner, age_days=31)
    held = recording(db, owner, age_days=400, legal_hold=True)
    young = recording(db, owner, age_days=29)
    live = recording(db, owner, age_days=400, status="recording")
    with db.cursor() as cur:
        cur.execute("SELECT id::text FROM vtp_retention_due WHERE owner_id = %s", (owner,))
        assert [r for (r,) in cur.fetchall()] == [expired]  # the dry run
        cur.execute("INSERT INTO jobs (kind, queue) VALUES ('retention', %s) RETURNING id", (queue,))
        job_id = cur.fetchone()[0]
    run_worker(stack, queue)
    assert job_row(db, job_id) == ("succeeded", None)
    with db.cursor() as cur:
        cur.execute("SELECT id::text, deleted_at IS NOT NULL FROM recordings WHERE owner_id = %s", (owner,))
        deleted = dict(cur.fetchall())
        assert deleted == {expired: True, held: False, young: False, live: False}, deleted
        cur.execute("SELECT recording_id::text, state FROM jobs WHERE kind = 'purge' AND recording_id = ANY(%s::uuid[])",
                    ([expired, held, young, live],))
        assert cur.fetchall() == [(expired, "queued")]
    client = Client(stack.frontends["nginx"], make_token(stack, owner, "instructor"))
    assert_problem(client.get(f"{API}/recordings/{expired}"), 404, "recording_not_found")
    assert client.get(f"{API}/recordings/{held}").status_code == 200
    # Lifting the hold lets the next run take it.
    with db.cursor() as cur:
        cur.execute("UPDATE recordings SET legal_hold = false WHERE id = %s", (held,))
        cur.execute("INSERT INTO jobs (kind, queue) VALUES ('retention', %s) RETURNING id", (queue,))
        job_id = cur.fetchone()[0]
    run_worker(stack, queue)
    assert job_row(db, job_id) == ("succeeded", None)
    with db.cursor() as cur:
        cur.execute("SELECT deleted_at IS NOT NULL FROM recordings WHERE id = %s", (held,))
        assert cur.fetchone() == (True,)


def test_old_raw_events_are_dropped(stack, db, queue):
    rid = recording(db, unique("own"), age_days=0)
    with db.cursor() as cur:
        cur.execute("INSERT INTO playback_events (recording_id, session_id, event, position_s, at) VALUES"
                    " (%s, 'old-session', 'play', 0, now() - interval '31 days'),"
                    " (%s, 'new-session', 'play', 0, now() - interval '29 days')", (rid, rid))
        cur.execute("INSERT INTO jobs (kind, queue) VALUES ('retention', %s) RETURNING id", (queue,))
        job_id = cur.fetchone()[0]
    run_worker(stack, queue)  # progress_event_days defaults to 30
    assert job_row(db, job_id) == ("succeeded", None)
    with db.cursor() as cur:
        cur.execute("SELECT session_id FROM playback_events WHERE recording_id = %s", (rid,))
        assert cur.fetchall() == [("new-session",)]


def test_daily_job_schedules_the_next(stack, db, queue):
    with db.cursor() as cur:
        # The migration seeded one; another test's worker may have run it already (then the next is queued).
        cur.execute("SELECT id FROM jobs WHERE kind = 'retention' AND payload ? 'daily' AND state = 'queued'")
        rows = cur.fetchall()
        assert len(rows) == 1, rows
        daily = rows[0][0]
        with pytest.raises(psycopg2.errors.UniqueViolation):
            cur.execute("INSERT INTO jobs (kind, payload) VALUES ('retention', '{\"daily\": true}')")
        cur.execute("UPDATE jobs SET queue = %s, run_at = now() WHERE id = %s", (queue, daily))
    run_worker(stack, queue)
    assert job_row(db, daily) == ("succeeded", None)
    with db.cursor() as cur:
        cur.execute("SELECT j.queue, j.payload, j.run_at - d.started_at FROM jobs j, jobs d"
                    " WHERE d.id = %s AND j.kind = 'retention' AND j.payload ? 'daily' AND j.state = 'queued'", (daily,))
        rows = cur.fetchall()
    assert len(rows) == 1, rows
    next_queue, payload, delay = rows[0]
    assert next_queue == "light" and payload == {"daily": True} and delay.total_seconds() == 86400, rows
    assert json.dumps(payload)
