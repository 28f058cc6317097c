"""Recording control through every frontend (nginx, Apache mod_proxy_fcgi,
Apache mod_fcgid): POST /recordings/start (answer shape, Location, secrets
not echoed, every validation error: 400/413/415/422), GET /recordings/{id}
(404, invalid_uuid), GET /recordings (order, limit, keyset paging that stays
stable while recordings are inserted, filters incl. a literal q, invalid
query/cursor, who sees what), POST .../stop (202, then 409), DELETE (204,
soft delete, purge job) and the role rules (403 vs 404).

Every test works in rooms and user ids of its own (helpers.unique), so the
tests are independent of each other and of leftovers in the database."""

import json
import uuid

import pytest
import requests

from helpers import (API, SDP, Client, assert_json, assert_problem, check_recording, is_ts,
                     make_token, unique)

MIB = 1 << 20


@pytest.fixture
def users(stack, base_url):
    """Clients for two instructors, an admin and a student, each with a fresh sub."""
    class Users:
        pass

    u = Users()
    u.a_sub, u.b_sub, u.admin_sub, u.s_sub = (unique("instA"), unique("instB"), unique("admin"),
                                              unique("stud"))
    u.a = Client(base_url, make_token(stack, u.a_sub, "instructor"))
    u.b = Client(base_url, make_token(stack, u.b_sub, "instructor"))
    u.admin = Client(base_url, make_token(stack, u.admin_sub, "admin"))
    u.s = Client(base_url, make_token(stack, u.s_sub, "student"))
    u.stack, u.base = stack, base_url
    return u


def valid_body(**over):
    body = {"title": unique("title"), "room_id": unique("room"), "source": {"type": "sdp", "sdp": SDP}}
    body.update(over)
    return body


def post_raw(client, data, content_type="application/json", path=API + "/recordings/start"):
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return client.request("POST", path, data=data, headers=headers)


# ====================================================================== start
def test_start_answers_201_with_recording_and_location(base_url, token):
    sub = unique("owner")
    c = Client(base_url, token(sub, "instructor"))  # a token from build/vtp-token
    body = valid_body(title="Algebra I – week 3")
    r = c.post(API + "/recordings/start", body)
    rec = check_recording(assert_json(r, 201))
    assert r.headers.get("Location") == f"{API}/recordings/{rec['id']}"
    assert rec["status"] == "pending"
    assert rec["owner_id"] == sub
    assert rec["title"] == "Algebra I – week 3"
    assert rec["room_id"] == body["room_id"]
    assert rec["source"] == {"type": "sdp"}, "the SDP must not be echoed"
    assert "v=0" not in r.text and "rtpmap" not in r.text
    assert rec["retention_days"] == 365  # the configured default
    assert rec["started_at"] is None and rec["stopped_at"] is None
    assert rec["duration_s"] is None and rec["size_bytes"] == 0
    assert rec["renditions"] == [] and rec["thumbnail_url"] is None and rec["stream_url"] is None
    # The Location answers with the same recording.
    got = check_recording(assert_json(c.get(r.headers["Location"]), 200))
    assert got == rec


def test_start_queues_record_job(base_url, users, db):
    """openapi: "Creates a recording in status `pending` and queues a `record` job"."""
    rec = check_recording(assert_json(users.a.start(), 201))
    with db.cursor() as cur:
        cur.execute("SELECT kind, state FROM jobs WHERE recording_id = %s", (rec["id"],))
        rows = cur.fetchall()
    assert ("record", "queued") in rows, f"no queued record job in the jobs table: {rows}"
    assert [j["kind"] for j in rec["jobs"]] == ["record"], rec["jobs"]
    assert rec["jobs"][0]["state"] == "queued"


def test_start_url_source_hides_userinfo(base_url, users):
    body = valid_body(source={"type": "url", "url": "rtmp://alice:s3cr3tKey@media.example.org:1935/live/room-42"},
                      retention_days=30, profiles=["720p", "360p"])
    r = users.a.post(API + "/recordings/start", body)
    rec = check_recording(assert_json(r, 201))
    assert rec["source"] == {"type": "url", "url": "rtmp://media.example.org:1935/live/room-42"}
    assert rec["retention_days"] == 30
    for answer in (r, users.a.get(f"{API}/recordings/{rec['id']}"), users.a.list(room_id=body["room_id"])):
        assert answer.status_code == 200 or answer.status_code == 201
        assert "s3cr3tKey" not in answer.text and "alice" not in answer.text


def test_start_url_password_with_at_sign_not_leaked(base_url, users):
    """libavformat takes the last '@' before the path as the end of the userinfo:
    no part of "pa@ss" may be shown (either refused, or shown without userinfo)."""
    r = users.a.start(source={"type": "url", "url": "rtmp://user:pa@ss@media.example.org/live/key"})
    if r.status_code == 422:
        assert_problem(r, 422, "invalid_value")
        return
    rec = check_recording(assert_json(r, 201))
    assert rec["source"]["url"] == "rtmp://media.example.org/live/key", rec["source"]


@pytest.mark.parametrize("url", [
    "rtmp://media.example.org/live/x", "rtmps://media.example.org/live/x", "srt://media.example.org:9000?streamid=r",
    "rtsp://cam.example.org/stream", "rtsps://cam.example.org:322/stream",
])
def test_start_accepts_network_schemes(base_url, users, url):
    rec = check_recording(assert_json(users.a.start(source={"type": "url", "url": url}), 201))
    assert rec["source"] == {"type": "url", "url": url}


def test_start_boundaries_accepted(base_url, users):
    title = "é" * 200  # 200 characters, 400 bytes
    room = "r" * 200
    for extra in ({"retention_days": 1}, {"retention_days": 36500},
                  {"profiles": ["1080p", "720p", "480p", "360p"]}, {"retention_days": None, "profiles": None}):
        r = users.a.post(API + "/recordings/start", valid_body(title=title, room_id=room, **extra))
        rec = check_recording(assert_json(r, 201))
        assert rec["title"] == title and rec["room_id"] == room
        if extra.get("retention_days"):
            assert rec["retention_days"] == extra["retention_days"]
    # An SDP of exactly 64 KiB with LF line ends.
    sdp = "v=0\nm=video 40000 RTP/AVP 96\n"
    sdp += "a=x" + "y" * (65536 - len(sdp) - 4) + "\n"
    assert len(sdp.encode()) == 65536
    assert_json(users.a.start(source={"type": "sdp", "sdp": sdp}), 201)


@pytest.mark.parametrize("body,field", [
    ({"room_id": "r", "source": {"type": "sdp", "sdp": SDP}}, "title"),
    ({"title": "t", "source": {"type": "sdp", "sdp": SDP}}, "room_id"),
    ({"title": "t", "room_id": "r"}, "source"),
    ({"title": "t", "room_id": "r", "source": {"sdp": SDP}}, "source.type"),
    ({"title": "t", "room_id": "r", "source": {"type": "sdp"}}, "source.sdp"),
    ({"title": "t", "room_id": "r", "source": {"type": "url"}}, "source.url"),
], ids=["title", "room_id", "source", "source.type", "source.sdp", "source.url"])
def test_start_missing_field(base_url, users, body, field):
    p = assert_problem(users.a.post(API + "/recordings/start", body), 422, "missing_field")
    assert field in p.get("detail", ""), p


@pytest.mark.parametrize("body", [
    valid_body(colour="red"),
    valid_body(source={"type": "sdp", "sdp": SDP, "port": 5004}),
    valid_body(owner_id="someone-else"),
    valid_body(status="ready"),
], ids=["top", "nested", "owner_id", "status"])
def test_start_unknown_field(base_url, users, body):
    assert_problem(users.a.post(API + "/recordings/start", body), 400, "unknown_field")


@pytest.mark.parametrize("over", [
    {"title": 5}, {"title": None}, {"title": ["t"]}, {"room_id": True}, {"source": "sdp"}, {"source": None},
    {"source": {"type": 1, "sdp": SDP}}, {"source": {"type": "sdp", "sdp": ["v=0"]}},
    {"retention_days": "30"}, {"retention_days": 1.5}, {"retention_days": True},
    {"profiles": "720p"}, {"profiles": [720]}, {"profiles": {"720p": True}},
], ids=lambda o: json.dumps(o))
def test_start_invalid_type(base_url, users, over):
    assert_problem(users.a.post(API + "/recordings/start", valid_body(**over)), 400, "invalid_type")


GOOD = json.dumps(valid_body())
BAD_JSON = {
    "not_json": b"title=x&room_id=y",
    "truncated": GOOD[:-5].encode(),
    "trailing_garbage": (GOOD + "x").encode(),
    "two_objects": (GOOD + " {}").encode(),
    "nan": GOOD[:-1].encode() + b', "retention_days": NaN}',
    "infinity": GOOD[:-1].encode() + b', "retention_days": Infinity}',
    "top_level_array": f"[{GOOD}]".encode(),
    "top_level_string": b'"hello"',
    "top_level_null": b"null",
    "empty": b"",
    "whitespace_only": b"  \n ",
    "single_quotes": b"{'title': 'x'}",
    "trailing_comma": GOOD[:-1].encode() + b",}",
    "comment": b"/* c */" + GOOD.encode(),
    "invalid_utf8": GOOD.encode().replace(b'"title": "', b'"title": "\xff', 1),
    "nul_byte": GOOD.encode() + b"\x00",
    "too_deep": b'{"title": ' + b"[" * 100 + b"]" * 100 + b"}",
}


@pytest.mark.parametrize("name", sorted(BAD_JSON))
def test_start_bad_json(base_url, users, name):
    data = BAD_JSON[name]
    assert_problem(post_raw(users.a, data), 400, "invalid_json")


@pytest.mark.parametrize("over", [
    {"source": {"type": "url", "url": "file:///etc/passwd"}},
    {"source": {"type": "url", "url": "http://media.example.org/live.flv"}},
    {"source": {"type": "url", "url": "https://media.example.org/live.m3u8"}},
    {"source": {"type": "url", "url": "udp://239.0.0.1:5000"}},
    {"source": {"type": "url", "url": "concat:rtmp://a/b|file:///etc/passwd"}},
    {"source": {"type": "url", "url": "rtmp://"}},
    {"source": {"type": "url", "url": "rtmp:///live"}},
    {"source": {"type": "url", "url": "rtmp://host/with space"}},
    {"source": {"type": "url", "url": ""}},
    {"source": {"type": "url", "url": "rtmp://h/" + "a" * 2048}},
    {"source": {"type": "sdp", "sdp": "o=- 0 0 IN IP4 127.0.0.1\r\nm=video 1 RTP/AVP 96\r\n"}},
    {"source": {"type": "sdp", "sdp": "v=1\r\nm=video 1 RTP/AVP 96\r\n"}},
    {"source": {"type": "sdp", "sdp": " v=0\r\nm=video 1 RTP/AVP 96\r\n"}},
    {"source": {"type": "sdp", "sdp": "v=0\r\ns=no media\r\n"}},
    {"source": {"type": "sdp", "sdp": "v=0\r\nm=video 1 RTP/AVP 96\r\nthis is not sdp\r\n"}},
    {"source": {"type": "sdp", "sdp": "v=0\nm=video 1 RTP/AVP 96\n" + "a=" + "x" * 65536 + "\n"}},
    {"source": {"type": "sdp", "sdp": ""}},
    {"source": {"type": "rtp", "sdp": SDP}},
    {"source": {"type": "sdp", "sdp": SDP, "url": "rtmp://h/x"}},
    {"source": {"type": "url", "url": "rtmp://h/x", "sdp": SDP}},
    {"retention_days": 0}, {"retention_days": -1}, {"retention_days": 36501}, {"retention_days": 2 ** 63 - 1},
    {"profiles": []}, {"profiles": ["4k"]}, {"profiles": ["720P"]}, {"profiles": ["720p", "720p"]},
    {"profiles": ["1080p", "720p", "480p", "360p", "240p"]},
    {"title": ""}, {"title": "x" * 201}, {"title": "é" * 201}, {"title": "line\nbreak"}, {"title": "tab\there"},
    {"title": "del\x7f"}, {"room_id": ""}, {"room_id": "r" * 201}, {"room_id": "bell\x07"},
], ids=lambda o: json.dumps(o)[:60])
def test_start_invalid_value(base_url, users, over):
    assert_problem(users.a.post(API + "/recordings/start", valid_body(**over)), 422, "invalid_value")


@pytest.mark.parametrize("over,status,code", [
    ({"title": "a\u0000b"}, 422, "invalid_value"),
    ({"room_id": "\u0000"}, 422, "invalid_value"),
    ({"source": {"type": "sdp", "sdp": SDP + "a=x\u0000y\r\n"}}, 422, "invalid_value"),
    ({"source": {"type": "url", "url": "rtmp://h/x\u0000y"}}, 422, "invalid_value"),
    ({"source": {"type": "sdp\u0000junk", "sdp": SDP}}, 422, "invalid_value"),
    ({"profiles": ["720p\u0000junk"]}, 422, "invalid_value"),
    ({"title\u0000junk": "y"}, 422, "invalid_value"),
], ids=["title", "room_id", "sdp", "url", "source.type", "profiles", "member_name"])
def test_start_nul_in_string_is_refused(base_url, users, over, status, code):
    assert_problem(users.a.post(API + "/recordings/start", valid_body(**over)), status, code)


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                   "application/jsonx", "application/json; charset=latin1",
                                   "application/json;charset=utf-16", "text/json", "application/xml"])
def test_start_wrong_content_type(base_url, users, ctype):
    assert_problem(post_raw(users.a, json.dumps(valid_body()), ctype), 415, "unsupported_media_type")


@pytest.mark.parametrize("ctype", ["application/json; charset=utf-8", "application/json;charset=UTF-8",
                                   "Application/JSON", 'application/json; charset="utf-8"'])
def test_start_accepted_content_types(base_url, users, ctype):
    assert_json(post_raw(users.a, json.dumps(valid_body()), ctype), 201)


def test_start_body_size_limit(base_url, users):
    """1 MiB is the limit: exactly 1 MiB is parsed, one byte more is 413 (also when chunked)."""
    good = json.dumps(valid_body())
    exact = good + " " * (MIB - len(good))
    assert len(exact) == MIB
    assert_json(post_raw(users.a, exact.encode()), 201)

    over = (good + " " * (MIB + 1 - len(good))).encode()
    assert_problem(post_raw(users.a, over), 413, "body_too_large")
    assert_problem(post_raw(users.a, b"{" + b" " * (3 * MIB) + b"}"), 413, "body_too_large")

    def chunks():  # no Content-Length: the API must count while reading
        yield good[:-1].encode()
        for _ in range(80):
            yield b" " * 16384
        yield b"}"
    assert_problem(post_raw(users.a, chunks()), 413, "body_too_large")


def test_start_forbidden_for_students(base_url, users):
    assert_problem(users.s.start(), 403, "forbidden")
    # ...whatever the body: the role is checked first.
    assert_problem(post_raw(users.s, b"{}"), 403, "forbidden")


def test_start_admin_may_start(base_url, users):
    rec = check_recording(assert_json(users.admin.start(), 201))
    assert rec["owner_id"] == users.admin_sub


# ======================================================================= get
def test_get_recording(base_url, users):
    rec = users.a.start_ok()
    got = check_recording(assert_json(users.a.get(f"{API}/recordings/{rec['id']}"), 200))
    assert got == rec


def test_get_list_and_stop_write_the_same_recording(base_url, users, db):
    """GET /recordings/{id} writes its answer from one statement, the list and stop from another: the same
    recording reads the same through all three, escapes, jobs (the latest 10), renditions and health included."""
    room = unique("room")
    title = 'Quote " back \\ slash / caf\u00e9 \U0001f3a5 <b>'
    rec = users.a.start_ok(room_id=room, title=title,
                           source={"type": "url", "url": "rtmp://user:p%40ss@host.example/live/key"})
    detail = {"part": 1, "streams": [{"type": "video", "packets": 10, "bit_rate": 1.5e6}], "note": "a \"b\""}
    with db.cursor() as cur:
        cur.execute("UPDATE recordings SET status = 'recording', started_at = now(), duration_s = 12.345,"
                    " size_bytes = 123456789012, poster_s = 1.5, renditions = %s WHERE id = %s",
                    (json.dumps([{"name": "360p", "width": 640, "height": 360, "bandwidth": 800000,
                                  "frame_rate": 29.97}]), rec["id"]))
        for i in range(11):  # more than the 10 latest shown
            cur.execute("INSERT INTO jobs (kind, queue, recording_id, state, progress, finished_at)"
                        " VALUES ('noop', 'light', %s, 'succeeded', %s, now())", (rec["id"], i / 10))
        cur.execute("INSERT INTO jobs (kind, queue, recording_id, state, progress, progress_detail, worker,"
                    " lease_expires_at, started_at) VALUES ('record', 'record', %s, 'running', 0.3, %s,"
                    " 'test', now() + interval '1 hour', now()) RETURNING id", (rec["id"], json.dumps(detail)))
        running = cur.fetchone()[0]
    got = check_recording(assert_json(users.a.get(f"{API}/recordings/{rec['id']}"), 200))
    assert got["title"] == title and got["source"] == {"type": "url", "url": "rtmp://host.example/live/key"}
    assert got["duration_s"] == 12.345 and got["size_bytes"] == 123456789012, got
    assert got["thumbnail_url"] == f"/api/v1/recordings/{rec['id']}/thumbnail", got
    assert got["stream_url"] == f"/api/v1/recordings/{rec['id']}/stream/playlist.m3u8", got
    assert got["renditions"][0]["frame_rate"] == 29.97, got
    assert len(got["jobs"]) == 10 and got["jobs"][-1] == {"id": running, "kind": "record", "state": "running",
                                                           "progress": 0.3}, got["jobs"]
    assert [j["id"] for j in got["jobs"]] == sorted(j["id"] for j in got["jobs"]), got["jobs"]
    assert got["health"] == detail, got
    assert [i for i in users.a.list_all(room_id=room)] == [got]
    stopped = assert_json(users.a.post(f"{API}/recordings/{rec['id']}/stop"), 202)
    assert stopped["status"] == "stopping" and stopped["health"] == detail, stopped
    assert assert_json(users.a.get(f"{API}/recordings/{rec['id']}"), 200) == stopped
    with db.cursor() as cur:
        cur.execute("UPDATE recordings SET status = 'ready' WHERE id = %s", (rec["id"],))
    assert assert_json(users.a.get(f"{API}/recordings/{rec['id']}"), 200)["health"] is None


def test_get_unknown_recording_is_404(base_url, users):
    rid = str(uuid.uuid4())
    p = assert_problem(users.admin.get(f"{API}/recordings/{rid}"), 404, "recording_not_found")
    assert rid in p.get("detail", "")


@pytest.mark.parametrize("rid", [
    "not-a-uuid", "12345", "5D0C9F2E-8A1B-4C3D-9E7F-0A1B2C3D4E5F", "5d0c9f2e-8a1b-4c3d-9e7f-0A1B2C3D4E5F",
    "5d0c9f2e8a1b4c3d9e7f0a1b2c3d4e5f", "{5d0c9f2e-8a1b-4c3d-9e7f-0a1b2c3d4e5f}",
    "5d0c9f2e-8a1b-4c3d-9e7f-0a1b2c3d4e5f0", "5d0c9f2e-8a1b-4c3d-9e7f-0a1b2c3d4e5", "5d0c9f2e-8a1b-4c3d-9e7f_0a1b2c3d4e5f",
    "zd0c9f2e-8a1b-4c3d-9e7f-0a1b2c3d4e5f", "5d0c9f2e-8a1b-4c3d-9e7f-0a1b2c3d4e5f%20",
])
def test_get_invalid_uuid_is_400(base_url, users, rid):
    assert_problem(users.a.get(f"{API}/recordings/{rid}"), 400, "invalid_uuid")


def test_get_upper_case_of_existing_id_is_400(base_url, users):
    rec = users.a.start_ok()
    assert_problem(users.a.get(f"{API}/recordings/{rec['id'].upper()}"), 400, "invalid_uuid")


# ====================================================================== list
def start_many(client, n, room, **kw):
    return [client.start_ok(room_id=room, **kw) for _ in range(n)]


def test_list_newest_first_and_limit(base_url, users):
    room = unique("room")
    made = start_many(users.a, 5, room)
    page = assert_json(users.a.list(room_id=room), 200)
    assert set(page) == {"items", "next_cursor"}
    for item in page["items"]:
        check_recording(item)
    assert [i["id"] for i in page["items"]] == [m["id"] for m in reversed(made)]
    assert page["next_cursor"] is None

    page = assert_json(users.a.list(room_id=room, limit=2), 200)
    assert [i["id"] for i in page["items"]] == [made[4]["id"], made[3]["id"]]
    assert isinstance(page["next_cursor"], str) and page["next_cursor"]

    page = assert_json(users.a.list(room_id=room, limit=5), 200)
    assert len(page["items"]) == 5 and page["next_cursor"] is None


def test_list_default_limit_is_20(base_url, users):
    room = unique("room")
    start_many(users.a, 21, room)
    page = assert_json(users.a.list(room_id=room), 200)
    assert len(page["items"]) == 20 and page["next_cursor"]
    page2 = assert_json(users.a.list(room_id=room, cursor=page["next_cursor"]), 200)
    assert len(page2["items"]) == 1 and page2["next_cursor"] is None


def test_list_cursor_paging_is_stable_under_inserts(base_url, users):
    """Keyset paging: every recording that existed when paging began is seen exactly
    once, in order, although new ones are created between the page fetches."""
    room = unique("room")
    before = start_many(users.a, 7, room)
    expected = [m["id"] for m in reversed(before)]
    seen, cursor, inserted = [], None, []
    for _ in range(10):
        params = {"room_id": room, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = assert_json(users.a.list(**params), 200)
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        inserted += [m["id"] for m in start_many(users.a, 2, room)]  # newer than everything paged
    else:
        pytest.fail("paging did not end")
    assert len(seen) == len(set(seen)), f"an item was listed twice: {seen}"
    assert seen == expected
    # The new ones are there for a fresh listing, newest first.
    everything = [i["id"] for i in users.a.list_all(room_id=room, limit=4)]
    assert everything == list(reversed(inserted)) + expected


def test_list_filters(base_url, users):
    room, other_room = unique("room"), unique("room")
    marker = uuid.uuid4().hex[:10]
    a1 = users.a.start_ok(room_id=room, title=f"Algebra {marker} week 1")
    a2 = users.a.start_ok(room_id=room, title=f"Biology {marker}")
    b1 = users.b.start_ok(room_id=room, title=f"ALGEBRA {marker} week 2")
    a3 = users.a.start_ok(room_id=other_room, title=f"Algebra {marker} other room")
    assert users.a.post(f"{API}/recordings/{a2['id']}/stop").status_code == 202

    def ids(**params):
        return [i["id"] for i in assert_json(users.admin.list(**params), 200)["items"]]

    assert ids(room_id=room) == [b1["id"], a2["id"], a1["id"]]
    assert ids(room_id=other_room) == [a3["id"]]
    assert ids(room_id=room, owner_id=users.a_sub) == [a2["id"], a1["id"]]
    assert ids(owner_id=users.b_sub) == [b1["id"]]
    assert ids(room_id=room, status="stopping") == [a2["id"]]
    assert ids(room_id=room, status="pending") == [b1["id"], a1["id"]]
    assert ids(room_id=room, status="ready") == []
    # q: case-insensitive substring of the title; combines with the others.
    assert ids(q=f"algebra {marker}") == [a3["id"], b1["id"], a1["id"]]
    assert ids(q=f"{marker} WEEK", room_id=room) == [b1["id"], a1["id"]]
    assert ids(q=f"{marker} week", owner_id=users.b_sub) == [b1["id"]]
    assert ids(q=marker, room_id=room, owner_id=users.a_sub, status="pending") == [a1["id"]]
    assert ids(q=f"no such title {marker}") == []
    # An empty q (or room_id) is no filter.
    assert ids(room_id=room, q="") == [b1["id"], a2["id"], a1["id"]]


def test_list_filters_take_200_characters_of_any_script(base_url, users):
    """room_id and q are limited in characters, like the fields they match: 200 of a script UTF-8 spells in
    3 bytes (600 bytes) are a filter, not a 400; a 201st character is one too many for q."""
    m = uuid.uuid4().hex[:8]
    room = m + "教" * 192
    title = m + "課" * 150
    made = users.a.start_ok(room_id=room, title=title)["id"]
    assert [i["id"] for i in assert_json(users.a.list(room_id=room), 200)["items"]] == [made]
    assert [i["id"] for i in assert_json(users.a.list(q=m + "課" * 150), 200)["items"]] == [made]
    assert [i["id"] for i in assert_json(users.a.list(q="課" * 200, room_id=room), 200)["items"]] == []
    assert_problem(users.a.list(q="課" * 201), 400, "invalid_query")


def test_list_q_wildcards_are_literal(base_url, users):
    room = unique("room")
    m = uuid.uuid4().hex[:8]
    titles = [f"{m} 100% sure", f"{m} 100x sure", f"{m} a_b", f"{m} axb", f"{m} back\\slash", f"{m} backXslash"]
    made = {t: users.a.start_ok(room_id=room, title=t)["id"] for t in titles}

    def titles_for(q):
        return sorted(i["title"] for i in assert_json(users.a.list(room_id=room, q=q), 200)["items"])

    assert titles_for("100%") == [f"{m} 100% sure"]
    assert titles_for("%") == [f"{m} 100% sure"]
    assert titles_for("a_b") == [f"{m} a_b"]
    assert titles_for("_") == [f"{m} a_b"]
    assert titles_for("k\\s") == [f"{m} back\\slash"]
    assert titles_for(m) == sorted(titles)
    assert len(made) == 6


@pytest.mark.parametrize("query", [
    "limit=0", "limit=101", "limit=-1", "limit=abc", "limit=1.5", "limit=5x", "limit=99999999999999999999",
    "limit=1&limit=2", "status=bogus", "status=PENDING", "status=pending&status=ready", "foo=1",
    "limit=5&Limit=5", "owner=someone", "q=" + "x" * 201, "room_id=%zz", "q=abc%", "owner_id=" + "u" * 300,
])
def test_list_bad_query_is_400(base_url, users, query):
    assert_problem(users.a.get(f"{API}/recordings?{query}", raw=True), 400, "invalid_query")


@pytest.mark.parametrize("filt", ["q", "room_id", "owner_id"])
def test_list_invalid_utf8_filter_is_400(base_url, users, filt):
    """A percent-encoded byte sequence that is not UTF-8 is a malformed parameter, not a 500."""
    for value in ("%FF", "%C3", "abc%E2%82"):
        assert_problem(users.a.get(f"{API}/recordings?{filt}={value}", raw=True), 400, "invalid_query")


def test_list_bad_cursor_is_400(base_url, users):
    room = unique("room")
    start_many(users.a, 3, room)
    cursor = assert_json(users.a.list(room_id=room, limit=1), 200)["next_cursor"]
    assert cursor
    for bad in ("garbage", "1", "abc.def", cursor[:-1], cursor + "0", cursor.upper() if cursor.upper() != cursor else "X",
                "." + cursor.split(".", 1)[-1], "-1." + cursor.split(".", 1)[-1], cursor.replace(".", "", 1)):
        assert_problem(users.a.list(room_id=room, limit=1, cursor=bad), 400, "invalid_cursor")


def test_list_truncated_cursor_is_invalid_cursor(base_url, users):
    """errors.md: invalid_cursor = not in the server's format (e.g. truncated or garbled). A cursor
    only names a position, so an edited but well-formed one can move only within what the caller
    may see anyway; it is not detected."""
    room = unique("room")
    start_many(users.a, 3, room)
    cursor = assert_json(users.a.list(room_id=room, limit=1), 200)["next_cursor"]
    assert cursor
    for broken in (cursor[:-1], cursor[1:] + "x", cursor.replace(".", "-"), "." + cursor.split(".")[1]):
        assert_problem(users.a.list(room_id=room, limit=1, cursor=broken), 400, "invalid_cursor")


def test_list_visibility(base_url, users):
    """A student sees what they took part in; an instructor their own; an admin everything."""
    room = unique("room")
    ra = users.a.start_ok(room_id=room)
    rb = users.b.start_ok(room_id=room)
    rc = users.a.start_ok(room_id=room)
    users.a.event_ok(ra["id"], users.s_sub, "join", display_name="Student")

    def ids(client, **params):
        return {i["id"] for i in client.list_all(room_id=room, **params)}

    assert ids(users.s) == {ra["id"]}
    assert ids(users.a) == {ra["id"], rc["id"]}
    assert ids(users.b) == {rb["id"]}
    assert ids(users.admin) == {ra["id"], rb["id"], rc["id"]}
    # Filters never widen what one may see.
    assert ids(users.b, owner_id=users.a_sub) == set()
    assert ids(users.s, owner_id=users.a_sub) == {ra["id"]}
    # A user with nothing at all gets an empty page, not an error.
    nobody = Client(base_url, make_token(users.stack, unique("nobody"), "student"))
    assert assert_json(nobody.list(room_id=room), 200) == {"items": [], "next_cursor": None}


# ====================================================================== stop
def test_stop(base_url, users):
    rec = users.a.start_ok()
    r = users.a.post(f"{API}/recordings/{rec['id']}/stop")
    stopped = check_recording(assert_json(r, 202))
    assert stopped["id"] == rec["id"]
    assert stopped["status"] == "stopping"
    assert is_ts(stopped["stopped_at"])
    assert stopped["stopped_at"] >= stopped["created_at"]
    assert stopped["updated_at"] >= rec["updated_at"]
    assert stopped["owner_id"] == users.a_sub and stopped["title"] == rec["title"]
    got = assert_json(users.a.get(f"{API}/recordings/{rec['id']}"), 200)
    assert got["status"] == "stopping" and got["stopped_at"] == stopped["stopped_at"]

    p = assert_problem(users.a.post(f"{API}/recordings/{rec['id']}/stop"), 409, "recording_not_active")
    assert "stopping" in p.get("detail", "")


def test_stop_ignores_a_body(base_url, users):
    rec = users.a.start_ok()
    r = users.a.request("POST", f"{API}/recordings/{rec['id']}/stop", data=b"{}",
                        headers={"Content-Type": "application/json"})
    assert assert_json(r, 202)["status"] == "stopping"


def test_stop_unknown_and_invalid(base_url, users):
    assert_problem(users.a.post(f"{API}/recordings/{uuid.uuid4()}/stop"), 404, "recording_not_found")
    assert_problem(users.a.post(f"{API}/recordings/not-a-uuid/stop"), 400, "invalid_uuid")


# ==================================================================== delete
def test_delete(base_url, users, db):
    room = unique("room")
    rec = users.a.start_ok(room_id=room)
    keep = users.a.start_ok(room_id=room)
    r = users.a.delete(f"{API}/recordings/{rec['id']}")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_problem(users.a.get(f"{API}/recordings/{rec['id']}"), 404, "recording_not_found")
    assert_problem(users.admin.get(f"{API}/recordings/{rec['id']}"), 404, "recording_not_found")
    assert [i["id"] for i in users.a.list_all(room_id=room)] == [keep["id"]]
    assert [i["id"] for i in users.admin.list_all(room_id=room)] == [keep["id"]]
    with db.cursor() as cur:
        cur.execute("SELECT kind, state FROM jobs WHERE recording_id = %s AND kind = 'purge'", (rec["id"],))
        assert cur.fetchall() == [("purge", "queued")]
        cur.execute("SELECT deleted_at IS NOT NULL FROM recordings WHERE id = %s", (rec["id"],))
        assert cur.fetchone() == (True,), "a soft delete keeps the row"
    # Everything about it is gone now.
    assert_problem(users.a.delete(f"{API}/recordings/{rec['id']}"), 404, "recording_not_found")
    assert_problem(users.a.post(f"{API}/recordings/{rec['id']}/stop"), 404, "recording_not_found")
    assert_problem(users.a.get(f"{API}/recordings/{rec['id']}/participants"), 404, "recording_not_found")
    assert_problem(users.a.event(rec["id"], "u1", "join"), 404, "recording_not_found")
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM jobs WHERE recording_id = %s AND kind = 'purge'", (rec["id"],))
        assert cur.fetchone() == (1,), "a second delete must not queue another purge"


def test_delete_unknown_and_invalid(base_url, users):
    assert_problem(users.a.delete(f"{API}/recordings/{uuid.uuid4()}"), 404, "recording_not_found")
    assert_problem(users.a.delete(f"{API}/recordings/XYZ"), 400, "invalid_uuid")


# ===================================================================== roles
def test_roles(base_url, users):
    rec = users.a.start_ok()
    rid = rec["id"]
    path = f"{API}/recordings/{rid}"
    # Another instructor cannot even read it: 404 everywhere, and nothing changes.
    assert_problem(users.b.get(path), 404, "recording_not_found")
    assert_problem(users.b.post(path + "/stop"), 404, "recording_not_found")
    assert_problem(users.b.delete(path), 404, "recording_not_found")
    assert_problem(users.b.get(path + "/participants"), 404, "recording_not_found")
    assert_problem(users.b.event(rid, users.b_sub, "join"), 404, "recording_not_found")
    # A student who is not a participant: the same.
    assert_problem(users.s.get(path), 404, "recording_not_found")
    assert_problem(users.s.post(path + "/stop"), 404, "recording_not_found")
    assert assert_json(users.a.get(path), 200)["status"] == "pending"

    # Once a participant, the student may read it but not manage it.
    users.a.event_ok(rid, users.s_sub, "join")
    assert assert_json(users.s.get(path), 200)["id"] == rid
    assert_problem(users.s.post(path + "/stop"), 403, "forbidden")
    assert_problem(users.s.delete(path), 403, "forbidden")
    assert_problem(users.s.get(path + "/participants"), 403, "forbidden")
    assert_problem(users.s.event(rid, users.s_sub, "leave"), 403, "forbidden")
    assert assert_json(users.a.get(path), 200)["status"] == "pending"

    # An admin may do anything.
    assert assert_json(users.admin.get(path), 200)["id"] == rid
    assert assert_json(users.admin.post(path + "/stop"), 202)["status"] == "stopping"
    assert users.admin.delete(path).status_code == 204
    assert_problem(users.a.get(path), 404, "recording_not_found")
    assert_problem(users.s.get(path), 404, "recording_not_found")


# ================================================================ concurrency
def test_concurrent_stop_and_delete_through_nginx(stack, db):
    """Eight simultaneous stops: exactly one 202, the others 409. Eight
    simultaneous deletes: exactly one 204, the others 404, and one purge job.
    (nginx only: the API behind every frontend is the same program.)"""
    from concurrent.futures import ThreadPoolExecutor
    base = stack.frontends["nginx"]
    tok = make_token(stack, unique("inst"), "instructor")
    rid = Client(base, tok).start_ok()["id"]

    def hit(method, path):
        return Client(base, tok, session=requests.Session()).request(method, path).status_code

    with ThreadPoolExecutor(8) as pool:
        stops = sorted(pool.map(lambda _: hit("POST", f"{API}/recordings/{rid}/stop"), range(8)))
        assert stops == [202] + [409] * 7, stops
        deletes = sorted(pool.map(lambda _: hit("DELETE", f"{API}/recordings/{rid}"), range(8)))
        assert deletes == [204] + [404] * 7, deletes
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM jobs WHERE recording_id = %s AND kind = 'purge'", (rid,))
        assert cur.fetchone() == (1,)
