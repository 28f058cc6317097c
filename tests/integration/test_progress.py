"""Playback progress and resume, through every frontend: POST and GET /api/v1/recordings/{id}/progress.

Semantics under test (fcgi/progress.c, sql/004_analytics.sql, docs/analytics.md): watched ranges are merged
per session and per viewer, so watching the same part twice covers it once; coverage is the union over the
duration, completed means coverage >= 90 %; the resume point is the last reported position over all the
caller's sessions, or one session's with ?session_id=; at most one event per session per second (429
rate_limited with Retry-After: 1, nothing stored); positions are checked against the duration; a session id
belongs to the viewer who used it first; raw events are kept for audits. Plus validation errors."""

import time
import uuid

import pytest

from helpers import API, Client, assert_json, assert_problem, make_token, unique


def sid():
    return str(uuid.uuid4())


@pytest.fixture
def ctx(stack, base_url, db):
    """An owner with a recording of 100 s that a student attended live (so the student may read it)."""
    class Ctx:
        pass

    c = Ctx()
    c.db = db
    c.owner_sub, c.s_sub, c.other_sub = unique("own"), unique("stu"), unique("oth")
    c.owner = Client(base_url, make_token(stack, c.owner_sub, "instructor"))
    c.student = Client(base_url, make_token(stack, c.s_sub, "student"))
    c.other = Client(base_url, make_token(stack, c.other_sub, "student"))
    c.rid = c.owner.start_ok()["id"]
    set_duration(db, c.rid, 100)
    c.owner.event_ok(c.rid, c.s_sub, "join")
    c.path = f"{API}/recordings/{c.rid}/progress"
    return c


def set_duration(db, rid, seconds):
    with db.cursor() as cur:
        cur.execute("UPDATE recordings SET duration_s = %s, status = 'ready' WHERE id = %s", (seconds, rid))


def post_ok(client, path, session, event, position, **extra):
    body = {"session_id": session, "event": event, "position_s": position, **extra}
    r = client.post(path, body)
    assert r.status_code == 204, r.text
    return r


def next_second():
    """Sleeps to just after the next whole second: the rate limit is per calendar second."""
    time.sleep(1.02 - time.time() % 1)


def resume(client, path, **params):
    body = assert_json(client.get(path, params=params), 200)
    assert set(body) == {"position_s", "watched_s", "coverage", "completed"}, body
    return body


def test_nothing_reported_yet(ctx):
    assert resume(ctx.student, ctx.path) == {"position_s": 0, "watched_s": 0, "coverage": 0, "completed": False}


def test_watching_half_twice_at_2x_covers_half(ctx):
    # Two passes over 0-50 % at 2x, in two sessions (two devices): the union is 50 s.
    for s in (sid(), sid()):
        post_ok(ctx.student, ctx.path, s, "play", 0, playback_rate=2)
    a, b = sid(), sid()
    post_ok(ctx.student, ctx.path, a, "heartbeat", 25, from_s=0, to_s=25, playback_rate=2)
    post_ok(ctx.student, ctx.path, b, "heartbeat", 30, from_s=0, to_s=30, playback_rate=2)
    next_second()
    post_ok(ctx.student, ctx.path, a, "pause", 50, from_s=25, to_s=50, playback_rate=2)
    post_ok(ctx.student, ctx.path, b, "ended", 50, from_s=30, to_s=50, playback_rate=2)
    r = resume(ctx.student, ctx.path)
    assert r == {"position_s": 50, "watched_s": 50, "coverage": 0.5, "completed": False}, r
    # One session's own view.
    assert resume(ctx.student, ctx.path, session_id=a)["watched_s"] == 50


def test_completed_at_90_percent_and_resume_is_last_position(ctx):
    s = sid()
    post_ok(ctx.student, ctx.path, s, "heartbeat", 89, from_s=0, to_s=89)
    assert resume(ctx.student, ctx.path)["completed"] is False
    next_second()
    post_ok(ctx.student, ctx.path, s, "seek", 95, from_s=89, to_s=95)  # a jump is not watched
    r = resume(ctx.student, ctx.path)
    assert r["watched_s"] == 89 and r["position_s"] == 95 and r["completed"] is False, r
    next_second()
    post_ok(ctx.student, ctx.path, s, "heartbeat", 96, from_s=95, to_s=96)
    r = resume(ctx.student, ctx.path)
    assert r == {"position_s": 96, "watched_s": 90, "coverage": 0.9, "completed": True}, r
    # The owner's own resume point is separate.
    assert resume(ctx.owner, ctx.path)["watched_s"] == 0


def test_one_event_per_session_per_second(ctx):
    s = sid()
    next_second()
    post_ok(ctx.student, ctx.path, s, "heartbeat", 10, from_s=0, to_s=10)
    r = ctx.student.post(ctx.path, {"session_id": s, "event": "heartbeat", "position_s": 20, "from_s": 10, "to_s": 20})
    assert_problem(r, 429, "rate_limited")
    assert r.headers.get("Retry-After") == "1"
    # Nothing of the refused event was stored; another session is not limited.
    assert resume(ctx.student, ctx.path)["watched_s"] == 10
    post_ok(ctx.student, ctx.path, sid(), "heartbeat", 30, from_s=20, to_s=30)
    next_second()
    post_ok(ctx.student, ctx.path, s, "heartbeat", 20, from_s=10, to_s=20)
    assert resume(ctx.student, ctx.path)["watched_s"] == 30


def test_session_belongs_to_first_viewer(ctx):
    s = sid()
    post_ok(ctx.student, ctx.path, s, "play", 0)
    r = ctx.owner.post(ctx.path, {"session_id": s, "event": "play", "position_s": 0})
    assert_problem(r, 409, "session_conflict")


def test_positions_checked_against_duration(ctx):
    s = sid()
    for body in ({"position_s": 101.5}, {"position_s": 10, "from_s": 0, "to_s": 102, "event": "heartbeat"}):
        r = ctx.student.post(ctx.path, {"session_id": s, "event": "pause", **body})
        assert_problem(r, 422, "invalid_value")
    # Up to a second past the end is the end.
    post_ok(ctx.student, ctx.path, s, "ended", 100.4, from_s=0, to_s=100.4)
    assert resume(ctx.student, ctx.path) == {"position_s": 100, "watched_s": 100, "coverage": 1, "completed": True}


def test_unknown_duration_has_no_coverage(ctx):
    rid = ctx.owner.start_ok()["id"]
    path = f"{API}/recordings/{rid}/progress"
    post_ok(ctx.owner, path, sid(), "heartbeat", 5000, from_s=0, to_s=5000)
    assert resume(ctx.owner, path) == {"position_s": 5000, "watched_s": 5000, "coverage": None, "completed": False}


@pytest.mark.parametrize("body, status, code", [
    ({"event": "play", "position_s": 0}, 422, "missing_field"),
    ({"session_id": "short", "event": "play", "position_s": 0}, 422, "invalid_value"),
    ({"session_id": "bad session id!", "event": "play", "position_s": 0}, 422, "invalid_value"),
    ({"session_id": "x" * 65, "event": "play", "position_s": 0}, 422, "invalid_value"),
    ({"session_id": "abcdefgh", "event": "rewind", "position_s": 0}, 422, "invalid_value"),
    ({"session_id": "abcdefgh", "event": "play"}, 422, "missing_field"),
    ({"session_id": "abcdefgh", "event": "play", "position_s": -1}, 422, "invalid_value"),
    ({"session_id": "abcdefgh", "event": "play", "position_s": "3"}, 400, "invalid_type"),
    ({"session_id": "abcdefgh", "event": "heartbeat", "position_s": 3}, 422, "missing_field"),
    ({"session_id": "abcdefgh", "event": "heartbeat", "position_s": 3, "from_s": 3}, 422, "invalid_value"),
    ({"session_id": "abcdefgh", "event": "heartbeat", "position_s": 3, "from_s": 5, "to_s": 3}, 422, "invalid_value"),
    ({"session_id": "abcdefgh", "event": "play", "position_s": 3, "from_s": 0, "to_s": 3}, 422, "invalid_value"),
    ({"session_id": "abcdefgh", "event": "play", "position_s": 0, "playback_rate": 0}, 422, "invalid_value"),
    ({"session_id": "abcdefgh", "event": "play", "position_s": 0, "playback_rate": 17}, 422, "invalid_value"),
    ({"session_id": "abcdefgh", "event": "play", "position_s": 0, "volume": 1}, 400, "unknown_field"),
])
def test_invalid_events(ctx, body, status, code):
    assert_problem(ctx.student.post(ctx.path, body), status, code)


def test_who_may_report(ctx):
    body = {"session_id": sid(), "event": "play", "position_s": 0}
    assert_problem(ctx.other.post(ctx.path, body), 404, "recording_not_found")
    assert_problem(ctx.other.get(ctx.path), 404, "recording_not_found")
    assert_problem(ctx.student.post(ctx.path, body, tok=None), 401, "unauthorized")
    assert_problem(ctx.student.get(ctx.path, params={"foo": "1"}), 400, "invalid_query")
    assert_problem(ctx.student.get(ctx.path, params={"session_id": "no!"}), 400, "invalid_query")
    with ctx.db.cursor() as cur:
        cur.execute("UPDATE recordings SET deleted_at = now() WHERE id = %s", (ctx.rid,))
    assert_problem(ctx.student.post(ctx.path, body), 404, "recording_not_found")


def test_raw_events_are_kept(ctx):
    s = sid()
    post_ok(ctx.student, ctx.path, s, "play", 0)
    next_second()
    post_ok(ctx.student, ctx.path, s, "heartbeat", 10, from_s=0, to_s=10, playback_rate=1.5)
    with ctx.db.cursor() as cur:
        cur.execute("SELECT event, user_id, position_s, from_s, to_s, playback_rate FROM playback_events"
                    " WHERE recording_id = %s AND session_id = %s ORDER BY id", (ctx.rid, s))
        rows = cur.fetchall()
    assert rows == [("play", ctx.s_sub, 0, None, None, 1), ("heartbeat", ctx.s_sub, 10, 0, 10, 1.5)], rows
