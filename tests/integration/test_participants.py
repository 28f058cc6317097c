"""Participants of a recording, through every frontend: POST and GET
/api/v1/recordings/{id}/participants.

Semantics under test (fcgi/participants.c, docs/openapi.yaml): `join` opens
a presence interval, `leave` closes it (total_s sums the closed intervals,
an open one counts up to now), `stats` carries the running totals of the
user's current connection (a later report replaces an earlier one), and a
`join` after a `leave` opens a new connection whose totals are added to the
previous connection's. One item per user, ordered by joined_at then user_id.
Only the owner or an admin may post or list; a participant gets 403, anyone
who cannot read the recording 404. Plus every validation error.

The bigint overflow test sends ~3000 requests and runs through nginx only."""

import uuid

import pytest

from helpers import (API, Client, assert_json, assert_problem, is_ts, make_token, poll, unique)


@pytest.fixture
def ctx(stack, base_url):
    """An owner (instructor) with a fresh recording, plus other users."""
    class Ctx:
        pass

    c = Ctx()
    c.owner_sub, c.other_sub, c.admin_sub, c.s_sub = (unique("own"), unique("oth"), unique("adm"), unique("stu"))
    c.owner = Client(base_url, make_token(stack, c.owner_sub, "instructor"))
    c.other = Client(base_url, make_token(stack, c.other_sub, "instructor"))
    c.admin = Client(base_url, make_token(stack, c.admin_sub, "admin"))
    c.student = Client(base_url, make_token(stack, c.s_sub, "student"))
    c.rid = c.owner.start_ok()["id"]
    c.path = f"{API}/recordings/{c.rid}/participants"
    return c


def items(client, rid):
    page = assert_json(client.get(f"{API}/recordings/{rid}/participants"), 200)
    assert set(page) == {"items"}, page
    for p in page["items"]:
        check_participant(p)
    return page["items"]


def one(client, rid, user_id):
    found = [p for p in items(client, rid) if p["user_id"] == user_id]
    assert len(found) == 1, f"{user_id}: {found}"
    return found[0]


def check_participant(p):
    assert set(p) == {"user_id", "display_name", "joined_at", "left_at", "total_s", "bytes_sent",
                      "bytes_received", "packets_lost"}, p
    assert isinstance(p["user_id"], str) and p["user_id"]
    assert p["display_name"] is None or isinstance(p["display_name"], str)
    assert is_ts(p["joined_at"]), p
    assert p["left_at"] is None or is_ts(p["left_at"]), p
    assert isinstance(p["total_s"], (int, float)) and not isinstance(p["total_s"], bool) and p["total_s"] >= 0, p
    for k in ("bytes_sent", "bytes_received", "packets_lost"):
        assert isinstance(p[k], int) and not isinstance(p[k], bool) and p[k] >= 0, (k, p)


def test_join_and_list(base_url, ctx):
    r = ctx.owner.event(ctx.rid, "u-ada", "join", display_name="Ada")
    assert r.status_code == 204, r.text
    assert r.content == b""
    [p] = items(ctx.owner, ctx.rid)
    assert p["user_id"] == "u-ada" and p["display_name"] == "Ada"
    assert p["left_at"] is None
    assert p["bytes_sent"] == p["bytes_received"] == p["packets_lost"] == 0
    assert p["total_s"] < 60
    # An admin may list too, and sees the same.
    assert items(ctx.admin, ctx.rid)[0]["user_id"] == "u-ada"


def test_empty_list(base_url, ctx):
    assert assert_json(ctx.owner.get(ctx.path), 200) == {"items": []}


def test_total_s_grows_while_present(base_url, ctx):
    ctx.owner.event_ok(ctx.rid, "u1", "join")
    first = one(ctx.owner, ctx.rid, "u1")["total_s"]
    later = poll(lambda: (lambda t: t if t > first else None)(one(ctx.owner, ctx.rid, "u1")["total_s"]),
                 timeout=5, what="total_s to grow")
    assert later > first


def test_leave_freezes_total_s(base_url, ctx):
    ctx.owner.event_ok(ctx.rid, "u1", "join")
    poll(lambda: one(ctx.owner, ctx.rid, "u1")["total_s"] > 0.01, timeout=5, what="some presence")
    ctx.owner.event_ok(ctx.rid, "u1", "leave")
    p1 = one(ctx.owner, ctx.rid, "u1")
    assert is_ts(p1["left_at"]) and p1["left_at"] >= p1["joined_at"]
    assert p1["total_s"] > 0.01
    p2 = one(ctx.owner, ctx.rid, "u1")
    assert p2["total_s"] == p1["total_s"], "a closed interval must not keep counting"
    # A second leave changes nothing of the total.
    ctx.owner.event_ok(ctx.rid, "u1", "leave")
    assert one(ctx.owner, ctx.rid, "u1")["total_s"] == p1["total_s"]


def test_rejoin_sums_intervals(base_url, ctx):
    ctx.owner.event_ok(ctx.rid, "u1", "join")
    poll(lambda: one(ctx.owner, ctx.rid, "u1")["total_s"] > 0.01, timeout=5, what="some presence")
    ctx.owner.event_ok(ctx.rid, "u1", "leave")
    closed = one(ctx.owner, ctx.rid, "u1")["total_s"]
    joined_at = one(ctx.owner, ctx.rid, "u1")["joined_at"]
    ctx.owner.event_ok(ctx.rid, "u1", "join")
    p = one(ctx.owner, ctx.rid, "u1")
    assert p["left_at"] is None, "present again"
    assert p["joined_at"] == joined_at, "joined_at is the first join"
    assert p["total_s"] >= closed
    poll(lambda: one(ctx.owner, ctx.rid, "u1")["total_s"] > closed, timeout=5, what="the new interval to count")


def test_stats_are_running_totals(base_url, ctx):
    ctx.owner.event_ok(ctx.rid, "u1", "join")
    ctx.owner.event_ok(ctx.rid, "u1", "stats", bytes_sent=100, bytes_received=1000, packets_lost=2)
    p = one(ctx.owner, ctx.rid, "u1")
    assert (p["bytes_sent"], p["bytes_received"], p["packets_lost"]) == (100, 1000, 2)
    # A later report of the same connection replaces the earlier one.
    ctx.owner.event_ok(ctx.rid, "u1", "stats", bytes_sent=250, bytes_received=1500, packets_lost=3)
    p = one(ctx.owner, ctx.rid, "u1")
    assert (p["bytes_sent"], p["bytes_received"], p["packets_lost"]) == (250, 1500, 3)
    # Counters left out keep their value.
    ctx.owner.event_ok(ctx.rid, "u1", "stats", packets_lost=7)
    p = one(ctx.owner, ctx.rid, "u1")
    assert (p["bytes_sent"], p["bytes_received"], p["packets_lost"]) == (250, 1500, 7)
    # A join while present is the same connection: nothing is reset.
    ctx.owner.event_ok(ctx.rid, "u1", "join")
    p = one(ctx.owner, ctx.rid, "u1")
    assert (p["bytes_sent"], p["bytes_received"], p["packets_lost"]) == (250, 1500, 7)
    ctx.owner.event_ok(ctx.rid, "u1", "stats", bytes_sent=300)
    assert one(ctx.owner, ctx.rid, "u1")["bytes_sent"] == 300


def test_rejoin_keeps_previous_connection_totals(base_url, ctx):
    ctx.owner.event_ok(ctx.rid, "u1", "join")
    ctx.owner.event_ok(ctx.rid, "u1", "stats", bytes_sent=1000, bytes_received=2000, packets_lost=5)
    ctx.owner.event_ok(ctx.rid, "u1", "leave")
    p = one(ctx.owner, ctx.rid, "u1")
    assert (p["bytes_sent"], p["bytes_received"], p["packets_lost"]) == (1000, 2000, 5)
    # New connection: its counters start again from 0 and add to the old ones.
    ctx.owner.event_ok(ctx.rid, "u1", "join")
    p = one(ctx.owner, ctx.rid, "u1")
    assert (p["bytes_sent"], p["bytes_received"], p["packets_lost"]) == (1000, 2000, 5)
    ctx.owner.event_ok(ctx.rid, "u1", "stats", bytes_sent=10, bytes_received=20, packets_lost=1)
    p = one(ctx.owner, ctx.rid, "u1")
    assert (p["bytes_sent"], p["bytes_received"], p["packets_lost"]) == (1010, 2020, 6)
    ctx.owner.event_ok(ctx.rid, "u1", "stats", bytes_sent=40, bytes_received=50, packets_lost=1)
    p = one(ctx.owner, ctx.rid, "u1")
    assert (p["bytes_sent"], p["bytes_received"], p["packets_lost"]) == (1040, 2050, 6)
    # A third connection.
    ctx.owner.event_ok(ctx.rid, "u1", "leave")
    ctx.owner.event_ok(ctx.rid, "u1", "join")
    ctx.owner.event_ok(ctx.rid, "u1", "stats", bytes_sent=1)
    p = one(ctx.owner, ctx.rid, "u1")
    assert (p["bytes_sent"], p["bytes_received"], p["packets_lost"]) == (1041, 2050, 6)


def test_leave_or_stats_without_join_still_records(base_url, ctx):
    ctx.owner.event_ok(ctx.rid, "late", "leave", display_name="Late")
    p = one(ctx.owner, ctx.rid, "late")
    assert p["display_name"] == "Late" and is_ts(p["left_at"]) and p["total_s"] == 0
    ctx.owner.event_ok(ctx.rid, "quiet", "stats", bytes_received=42)
    p = one(ctx.owner, ctx.rid, "quiet")
    assert p["bytes_received"] == 42 and p["left_at"] is None and p["display_name"] is None


def test_display_name(base_url, ctx):
    ctx.owner.event_ok(ctx.rid, "u1", "join")
    assert one(ctx.owner, ctx.rid, "u1")["display_name"] is None
    ctx.owner.event_ok(ctx.rid, "u1", "stats", display_name="Ada", bytes_sent=1)
    assert one(ctx.owner, ctx.rid, "u1")["display_name"] == "Ada"
    ctx.owner.event_ok(ctx.rid, "u1", "leave")  # no display_name: kept
    assert one(ctx.owner, ctx.rid, "u1")["display_name"] == "Ada"
    ctx.owner.event_ok(ctx.rid, "u1", "join", display_name="Ada L. ✓")
    assert one(ctx.owner, ctx.rid, "u1")["display_name"] == "Ada L. ✓"
    ctx.owner.event_ok(ctx.rid, "u1", "join", display_name=None)  # null = not given
    assert one(ctx.owner, ctx.rid, "u1")["display_name"] == "Ada L. ✓"


def test_list_order_and_one_item_per_user(base_url, ctx):
    order = ["zeta", "alpha", "mike", "bravo"]
    for u in order:
        ctx.owner.event_ok(ctx.rid, u, "join")
    ctx.owner.event_ok(ctx.rid, "alpha", "leave")
    ctx.owner.event_ok(ctx.rid, "zeta", "stats", bytes_sent=5)
    ctx.owner.event_ok(ctx.rid, "alpha", "join")
    got = items(ctx.owner, ctx.rid)
    assert [p["user_id"] for p in got] == order, "ordered by first join, one item per user"
    assert [p["joined_at"] for p in got] == sorted(p["joined_at"] for p in got)
    # Participants of another recording do not show up.
    other = ctx.owner.start_ok()["id"]
    ctx.owner.event_ok(other, "someone-else", "join")
    assert [p["user_id"] for p in items(ctx.owner, ctx.rid)] == order
    assert [p["user_id"] for p in items(ctx.owner, other)] == ["someone-else"]


def test_join_order_ties_by_user_id(base_url, ctx, db):
    """Same joined_at (set here through SQL): user_id breaks the tie."""
    for u in ("c-user", "a-user", "b-user"):
        ctx.owner.event_ok(ctx.rid, u, "join")
    with db.cursor() as cur:
        cur.execute("UPDATE recording_participants SET joined_at = '2026-01-01T00:00:00Z'"
                    " WHERE recording_id = %s", (ctx.rid,))
    assert [p["user_id"] for p in items(ctx.owner, ctx.rid)] == ["a-user", "b-user", "c-user"]


def test_participant_may_read_the_recording(base_url, ctx):
    assert_problem(ctx.student.get(f"{API}/recordings/{ctx.rid}"), 404, "recording_not_found")
    ctx.owner.event_ok(ctx.rid, ctx.s_sub, "join")
    assert assert_json(ctx.student.get(f"{API}/recordings/{ctx.rid}"), 200)["id"] == ctx.rid
    # ...also after leaving: they took part.
    ctx.owner.event_ok(ctx.rid, ctx.s_sub, "leave")
    assert assert_json(ctx.student.get(f"{API}/recordings/{ctx.rid}"), 200)["id"] == ctx.rid


def test_access_rules(base_url, ctx):
    # Another instructor, a student who is no participant: cannot read it -> 404.
    for c in (ctx.other, ctx.student):
        assert_problem(c.get(ctx.path), 404, "recording_not_found")
        assert_problem(c.event(ctx.rid, "x", "join"), 404, "recording_not_found")
    # A participant may read the recording but not manage its participants -> 403.
    ctx.owner.event_ok(ctx.rid, ctx.s_sub, "join")
    assert_problem(ctx.student.get(ctx.path), 403, "forbidden")
    assert_problem(ctx.student.event(ctx.rid, ctx.s_sub, "leave"), 403, "forbidden")
    assert one(ctx.owner, ctx.rid, ctx.s_sub)["left_at"] is None, "the refused leave changed nothing"
    # An admin may.
    assert ctx.admin.event(ctx.rid, "by-admin", "join").status_code == 204
    assert {p["user_id"] for p in items(ctx.admin, ctx.rid)} == {ctx.s_sub, "by-admin"}
    # Unknown, deleted and malformed ids.
    assert_problem(ctx.owner.get(f"{API}/recordings/{uuid.uuid4()}/participants"), 404, "recording_not_found")
    assert_problem(ctx.owner.event(str(uuid.uuid4()), "x", "join"), 404, "recording_not_found")
    assert_problem(ctx.owner.get(f"{API}/recordings/NOT-A-UUID/participants"), 400, "invalid_uuid")
    assert_problem(ctx.owner.event("NOT-A-UUID", "x", "join"), 400, "invalid_uuid")
    assert ctx.owner.delete(f"{API}/recordings/{ctx.rid}").status_code == 204
    assert_problem(ctx.owner.get(ctx.path), 404, "recording_not_found")
    assert_problem(ctx.owner.event(ctx.rid, "x", "join"), 404, "recording_not_found")


@pytest.mark.parametrize("body,status,code", [
    ({"event": "join"}, 422, "missing_field"),
    ({"user_id": "u1"}, 422, "missing_field"),
    ({}, 422, "missing_field"),
    ({"user_id": "u1", "event": "dance"}, 422, "invalid_value"),
    ({"user_id": "u1", "event": "JOIN"}, 422, "invalid_value"),
    ({"user_id": "u1", "event": ""}, 422, "invalid_value"),
    ({"user_id": "", "event": "join"}, 422, "invalid_value"),
    ({"user_id": "u" * 201, "event": "join"}, 422, "invalid_value"),
    ({"user_id": "a\nb", "event": "join"}, 422, "invalid_value"),
    ({"user_id": "u1", "event": "join", "display_name": "d" * 201}, 422, "invalid_value"),
    ({"user_id": "u1", "event": "join", "display_name": "bell\x07"}, 422, "invalid_value"),
    ({"user_id": "u1", "event": "stats", "bytes_sent": -1}, 422, "invalid_value"),
    ({"user_id": "u1", "event": "stats", "packets_lost": -5}, 422, "invalid_value"),
    ({"user_id": "u1", "event": "stats", "bytes_received": 2 ** 53 + 1}, 422, "invalid_value"),
    ({"user_id": "u1", "event": "stats", "bytes_sent": 2 ** 64}, 422, "invalid_value"),
    ({"user_id": "u1", "event": "join", "bytes_sent": 1}, 422, "invalid_value"),
    ({"user_id": "u1", "event": "leave", "packets_lost": 0}, 422, "invalid_value"),
    ({"user_id": 17, "event": "join"}, 400, "invalid_type"),
    ({"user_id": None, "event": "join"}, 400, "invalid_type"),
    ({"user_id": "u1", "event": ["join"]}, 400, "invalid_type"),
    ({"user_id": "u1", "event": "join", "display_name": 5}, 400, "invalid_type"),
    ({"user_id": "u1", "event": "stats", "bytes_sent": "100"}, 400, "invalid_type"),
    ({"user_id": "u1", "event": "stats", "bytes_sent": 1.5}, 400, "invalid_type"),
    ({"user_id": "u1", "event": "stats", "packets_lost": True}, 400, "invalid_type"),
    ({"user_id": "u1", "event": "join", "role": "student"}, 400, "unknown_field"),
    ({"user_id": "u1", "event": "join", "joined_at": "2026-01-01T00:00:00Z"}, 400, "unknown_field"),
    ({"user_id": "u\u0000x", "event": "join"}, 422, "invalid_value"),
    ({"user_id": "u1", "event": "join\u0000junk"}, 422, "invalid_value"),
    ({"user_id": "u1", "event": "join", "display_name": "A\u0000"}, 422, "invalid_value"),
], ids=["no_user_id", "no_event", "empty_object", "event_dance", "event_upper", "event_empty", "user_id_empty",
        "user_id_201", "user_id_newline", "display_name_201", "display_name_ctrl", "bytes_sent_neg", "packets_lost_neg",
        "bytes_received_2^53+1", "bytes_sent_2^64", "counter_with_join", "counter_with_leave", "user_id_int",
        "user_id_null", "event_array", "display_name_int", "bytes_sent_string", "bytes_sent_float", "packets_lost_bool",
        "unknown_role", "unknown_joined_at", "nul_user_id", "nul_event", "nul_display_name"])
def test_event_validation(base_url, ctx, body, status, code):
    ctx.owner.event_ok(ctx.rid, "present", "join")
    before = items(ctx.owner, ctx.rid)
    assert_problem(ctx.owner.post(ctx.path, body), status, code)
    after = items(ctx.owner, ctx.rid)
    assert [p["user_id"] for p in after] == ["present"], "a refused event records nothing"
    assert {k: v for k, v in after[0].items() if k != "total_s"} == {k: v for k, v in before[0].items() if k != "total_s"}


def test_counter_limits_accepted(base_url, ctx):
    ctx.owner.event_ok(ctx.rid, "u1", "stats", bytes_sent=2 ** 53, bytes_received=0, packets_lost=0)
    assert one(ctx.owner, ctx.rid, "u1")["bytes_sent"] == 2 ** 53
    ctx.owner.event_ok(ctx.rid, "u2", "join", display_name="")
    assert one(ctx.owner, ctx.rid, "u2")["display_name"] == ""
    ctx.owner.event_ok(ctx.rid, "é" * 200, "join")
    assert one(ctx.owner, ctx.rid, "é" * 200)["user_id"] == "é" * 200


@pytest.mark.parametrize("data,ctype,status,code", [
    (b'{"user_id":"u1","event":"join"', "application/json", 400, "invalid_json"),
    (b'{"user_id":"u1","event":"join"} x', "application/json", 400, "invalid_json"),
    (b'[{"user_id":"u1","event":"join"}]', "application/json", 400, "invalid_json"),
    (b'', "application/json", 400, "invalid_json"),
    (b'{"user_id":"u1","event":"stats","bytes_sent":NaN}', "application/json", 400, "invalid_json"),
    (b'{"user_id":"u1","event":"join"}', "text/plain", 415, "unsupported_media_type"),
    (b'{"user_id":"u1","event":"join"}', None, 415, "unsupported_media_type"),
    (b'{"user_id":"u1","event":"join","display_name":"' + b"x" * (1 << 20) + b'"}', "application/json", 413,
     "body_too_large"),
], ids=["truncated", "garbage", "array", "empty", "nan", "text_plain", "no_ctype", "too_large"])
def test_event_malformed_body(base_url, ctx, data, ctype, status, code):
    ctx.owner.event_ok(ctx.rid, "present", "join")
    headers = {"Content-Type": ctype} if ctype else {}
    assert_problem(ctx.owner.request("POST", ctx.path, data=data, headers=headers), status, code)
    assert [p["user_id"] for p in items(ctx.owner, ctx.rid)] == ["present"]


def test_counter_overflow_is_not_5xx(stack):
    """Running totals of up to 2^53 per connection, summed over 1024 connections,
    pass 2^63: the API must refuse or cap, never answer 5xx. Pure API, ~3000
    requests, so through nginx only."""
    base = stack.frontends["nginx"]
    owner = Client(base, make_token(stack, unique("own"), "instructor"))
    rid = owner.start_ok()["id"]
    big = 2 ** 53
    statuses = {}
    for _ in range(1024):
        for ev, extra in (("stats", {"bytes_sent": big}), ("leave", {}), ("join", {})):
            r = owner.event(rid, "u", ev, **extra)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code < 500, f"{ev} answered {r.status_code}: {r.text}"
    owner.event(rid, "u", "stats", bytes_sent=big)
    r = owner.get(f"{API}/recordings/{rid}/participants")
    assert r.status_code == 200, f"list answered {r.status_code}: {r.text}"
    [p] = r.json()["items"]
    assert 0 <= p["bytes_sent"] <= 2 ** 63 - 1, p
