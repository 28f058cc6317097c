"""Playback analytics, through every frontend: GET /api/v1/recordings/{id}/analytics (and ?by=user, JSON and CSV).

Each metric of docs/analytics.md is checked on a replayed event log with known answers: a view counts once a
session has played 10 s (watch time, so 20 s of content at 2x is exactly a view); unique viewers by user id
(share-link sessions have none); watch time excludes pauses and seeks; avg_view_s over views; completion
rate = views covering >= 90 % of the duration; retention = distinct sessions per 5-s bucket; by_day by the
UTC day a session started; the per-student list joins live attendance with recording views."""

import csv
import io
import uuid

import pytest

from helpers import API, Client, assert_json, assert_problem, make_token, unique
from test_progress import next_second, post_ok, set_duration


@pytest.fixture
def replay(stack, base_url, db):
    """A 60-s recording and the event log below, replayed in rounds of one event per session."""
    class Ctx:
        pass

    c = Ctx()
    c.db, c.base_url = db, base_url
    c.owner_sub, c.a_sub, c.b_sub, c.c_sub = unique("own"), unique("a"), unique("b"), unique("c")
    c.owner = Client(base_url, make_token(stack, c.owner_sub, "instructor"))
    c.a = Client(base_url, make_token(stack, c.a_sub, "student"))
    c.b = Client(base_url, make_token(stack, c.b_sub, "student"))
    c.rid = c.owner.start_ok()["id"]
    set_duration(db, c.rid, 60)
    # A and C attended the live class; B gets a user share; L is a link viewer without an account.
    c.owner.event_ok(c.rid, c.a_sub, "join", display_name="Ann")
    c.owner.event_ok(c.rid, c.a_sub, "leave")
    c.owner.event_ok(c.rid, c.c_sub, "join", display_name="=Carl, \"C\"")
    c.owner.event_ok(c.rid, c.c_sub, "leave")
    assert c.owner.post(f"{API}/recordings/{c.rid}/shares", {"user_id": c.b_sub}).status_code == 201
    link = assert_json(c.owner.post(f"{API}/recordings/{c.rid}/shares", {}), 201)
    c.link = Client(base_url, None)
    path = f"{API}/recordings/{c.rid}/progress"
    link_path = f"{path}?share={link['token']}"
    a1, a2, b1, l1 = (str(uuid.uuid4()) for _ in range(4))
    c.b1 = b1
    rounds = [
        [(c.a, path, a1, "heartbeat", 20, dict(from_s=0, to_s=20)),
         (c.a, path, a2, "heartbeat", 9, dict(from_s=0, to_s=9)),               # 9 s: not a view
         (c.b, path, b1, "heartbeat", 50, dict(from_s=30, to_s=50, playback_rate=2)),  # 10 s at 2x: a view
         (c.link, link_path, l1, "heartbeat", 60, dict(from_s=0, to_s=60))],
        [(c.a, path, a1, "seek", 40, dict(from_s=20, to_s=40)),                 # a jump: not watched
         (c.b, path, b1, "pause", 50, {}),
         (c.link, link_path, l1, "ended", 60, {})],
        [(c.a, path, a1, "heartbeat", 44, dict(from_s=40, to_s=44))],
    ]
    for i, events in enumerate(rounds):
        if i:
            next_second()
        for client, p, session, event, position, extra in events:
            post_ok(client, p, session, event, position, **extra)
    with db.cursor() as cur:  # B watched yesterday
        cur.execute("UPDATE playback_sessions SET started_at = started_at - interval '1 day'"
                    " WHERE recording_id = %s AND session_id = %s", (c.rid, b1))
        cur.execute("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD'),"
                    " to_char((now() - interval '1 day') AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
        c.today, c.yesterday = cur.fetchone()
    c.path = f"{API}/recordings/{c.rid}/analytics"
    return c


def test_metrics_of_a_replayed_log(replay):
    got = assert_json(replay.owner.get(replay.path), 200)
    assert got == {
        "views": 3,                       # A1 (24 s), B1 (10 s), L1 (60 s); A2 has 9 s
        "unique_viewers": 2,              # A and B; the link viewer has no user id
        "watch_time_s": 103,              # 24 + 9 + 10 + 60: the seek and the pauses add nothing
        "avg_view_s": 31.333,             # (24 + 10 + 60) / 3
        "completion_rate": 0.3333,        # only L1 covered >= 54 s
        "retention": [{"t": t, "viewers": v} for t, v in
                      zip(range(0, 60, 5), [3, 3, 2, 2, 1, 1, 2, 2, 3, 2, 1, 1])],
        "by_day": [{"date": replay.yesterday, "views": 1, "watch_time_s": 10},
                   {"date": replay.today, "views": 2, "watch_time_s": 93}],
    }, got


def test_per_student_list(replay):
    items = assert_json(replay.owner.get(replay.path, params={"by": "user"}), 200)["items"]
    by = {i["user_id"]: i for i in items}
    assert set(by) == {replay.a_sub, replay.b_sub, replay.c_sub}, items
    a, b, c = by[replay.a_sub], by[replay.b_sub], by[replay.c_sub]
    assert (a["display_name"], a["attended_live"], a["sessions"], a["watch_time_s"], a["watched_s"], a["coverage"],
            a["completed"]) == ("Ann", True, 2, 33, 24, 0.4, False), a
    assert (b["attended_live"], b["sessions"], b["watch_time_s"], b["watched_s"], b["coverage"]) == \
        (False, 1, 10, 20, 0.3333), b
    assert (c["attended_live"], c["sessions"], c["watched_s"], c["coverage"], c["last_watched_at"]) == \
        (True, 0, 0, 0, None), c
    assert a["live_s"] >= 0 and isinstance(a["last_watched_at"], str)


def test_per_student_csv(replay):
    r = replay.owner.get(replay.path, params={"by": "user"}, headers={"Accept": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/csv"), r.headers
    assert "attachment" in r.headers.get("Content-Disposition", "")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8"))))
    assert [row["user_id"] for row in rows] == sorted([replay.a_sub, replay.b_sub, replay.c_sub])
    by = {row["user_id"]: row for row in rows}
    assert by[replay.a_sub]["watched_s"] == "24.000" and by[replay.a_sub]["attended_live"] == "true"
    # A display name that a spreadsheet would run as a formula is defused; quotes and commas survive.
    assert by[replay.c_sub]["display_name"] == "'=Carl, \"C\""
    assert by[replay.c_sub]["coverage"] == "0.0000" and by[replay.c_sub]["last_watched_at"] == ""


def test_who_may_read(replay, stack):
    assert_problem(replay.a.get(replay.path), 403, "forbidden")
    stranger = Client(replay.base_url, make_token(stack, unique("x"), "instructor"))
    assert_problem(stranger.get(replay.path), 404, "recording_not_found")
    admin = Client(replay.base_url, make_token(stack, unique("adm"), "admin"))
    assert assert_json(admin.get(replay.path), 200)["views"] == 3
    assert_problem(replay.owner.get(replay.path, params={"by": "day"}), 400, "invalid_query")
    assert_problem(replay.owner.get(replay.path, params={"limit": "3"}), 400, "invalid_query")


def test_empty_recording(stack, base_url):
    owner = Client(base_url, make_token(stack, unique("own"), "instructor"))
    rid = owner.start_ok()["id"]
    got = assert_json(owner.get(f"{API}/recordings/{rid}/analytics"), 200)
    assert got == {"views": 0, "unique_viewers": 0, "watch_time_s": 0, "avg_view_s": 0, "completion_rate": None,
                   "retention": [], "by_day": []}, got
    assert assert_json(owner.get(f"{API}/recordings/{rid}/analytics", params={"by": "user"}), 200) == {"items": []}
