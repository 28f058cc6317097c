"""Hostile clients, through every frontend (nginx, Apache + mod_proxy_fcgi,
Apache + mod_fcgid as on shared hosting), for what test_auth.py (tokens on
every route), test_malformed.py (malformed requests) and test_stream.py (stream
tokens) leave out:

- a body over the limit gets 413 while most of it was never sent: the answer
  must not wait for the body (raw socket: headers with a large Content-Length
  and a little of the body, then read);
- slow-loris: 60 connections that dribble headers or a body byte by byte do
  not hold the FastCGI side (vtp-api's 4 threads, mod_fcgid's 4 processes):
  meanwhile normal requests on new connections are answered;
- SQL metacharacters, LIKE wildcards, quotes, backslashes, unicode in every
  string field and query parameter: stored and returned verbatim, matched
  literally, or refused with a clean 4xx where the API restricts the field;
- path traversal in stream segment and rendition names, download renditions
  and thumbnail parameters: never a file outside the pattern;
- another user's recording ids and job ids never show in lists, jobs,
  analytics or errors, and probing one answers exactly like a random id.
"""

import json
import os
import re
import socket
import threading
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers import (API, SDP, Client, assert_json, assert_problem, make_token, poll,
                     raw_request, unique)
from test_stream import sign

# Metacharacters for SQL, LIKE, JSON and shells, and text outside ASCII.
META = [
    "'", '"', ";", "--", "\\", "%", "_", "' OR '1'='1", "'); DROP TABLE recordings; --", "a%b_c\\d",
    "$1::text", "E'\\\\x00'", "/* */", "\u00fcn\u00ef\u00a9\u00f8d\u00e9 \u2713 \U0001d11e", "\u202e\u200b",
    "\u0130stanbul \u00df \ufb01", "\\u0000", "%00",
]
# What the API refuses in one-line text fields (422 invalid_value).
CONTROLS = ["\u0000", "\t", "\n", "\r", "\u0001", "\u001b[31m", "\u007f"]


def _owner(stack, base_url, role="instructor", sub=None):
    sub = sub or unique("sec")
    return sub, Client(base_url, make_token(stack, sub, role))


# ====================================================================== 413
def _open(base_url, timeout=60):
    u = urllib.parse.urlsplit(base_url)
    s = socket.create_connection((u.hostname, u.port), timeout=timeout)
    return s


def _read_head(sock):
    """The status line and headers of an answer (and what came with them), or
    what arrived before the peer closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f"no answer within the timeout; got {data[:300]!r}") from None
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("kind", ["json", "upload"])
def test_body_over_the_limit_is_refused_before_it_is_read(stack, base_url, kind):
    """Content-Length over the limit, 64 KiB of the body sent, then nothing:
    the 413 must come while the rest is still unsent."""
    tok = make_token(stack, unique("big"), "instructor")
    if kind == "json":
        target, ctype, length = API + "/recordings/start", "application/json", 2 * 1024 * 1024 + 1
    else:  # over vtp-api's max_upload_bytes (default 4 GiB)
        target, ctype, length = API + "/recordings?title=big", "video/mp4", 5 * 1024 ** 3
    head = (f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {tok}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {length}\r\n\r\n").encode()
    sent = 64 * 1024
    with _open(base_url) as s:
        s.sendall(head + b'{"title":"' + b"x" * (sent - 10))
        data = _read_head(s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), (kind, data[:400])
    # The API's problem format, whoever answered (all three frontends do).
    assert re.search(rb"(?im)^content-type: application/problem\+json", head), head
    if body.rstrip().endswith(b"}"):
        problem = json.loads(body)
        assert (problem["status"], problem["code"]) == (413, "body_too_large"), problem
    # The server is fine afterwards, on a new connection.
    assert_json(Client(base_url).get("/health"), 200)


def test_body_at_the_limit_is_read(stack, base_url):
    """The limit is the limit: a JSON body of exactly 1 MiB gets through the
    frontend to vtp-api (which judges it: here 422, a title too long)."""
    c = Client(base_url, make_token(stack, unique("big"), "instructor"))
    body = json.dumps({"title": "", "room_id": "r", "source": {"type": "sdp", "sdp": SDP}})
    pad = 1024 * 1024 - len(body)
    body = body.replace('"title": ""', '"title": "' + "t" * pad + '"')
    assert len(body) == 1024 * 1024
    r = c.request("POST", API + "/recordings/start", data=body.encode(),
                  headers={"Content-Type": "application/json"})
    assert_problem(r, 422)


# ================================================================ slow-loris
SLOW_CLIENTS = 60


class Dribbler:
    """Connections that send the first `cut` bytes of a request at once, then
    one more byte every `every` s until stopped; they never finish it."""

    def __init__(self, base_url, requests, every=1.0):
        self.base_url = base_url
        self.requests = requests  # [(raw, cut)]
        self.every = every
        self.socks = []
        self.rounds = 0
        self.stop = threading.Event()
        self.thread = None

    def __enter__(self):
        for raw, cut in self.requests:
            s = _open(self.base_url, timeout=10)
            s.sendall(raw[:cut])
            self.socks.append([s, raw, cut])
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self.stop.wait(self.every):
            for item in self.socks:
                s, raw, pos = item
                if s is None or pos >= len(raw) - 1:
                    continue  # never the last byte
                try:
                    s.sendall(raw[pos:pos + 1])
                    item[2] = pos + 1
                except OSError:
                    item[0] = None
            self.rounds += 1

    def open_count(self):
        return sum(1 for s, _, _ in self.socks if s is not None)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)
        for s, _, _ in self.socks:
            if s is not None:
                s.close()


def _fcgid_processes(stack):
    """vtp.fcgi processes mod_fcgid runs for the shared-hosting frontend."""
    n = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/exe").startswith(str(stack.fcgid_docroot)):
                    n += 1
            except OSError:
                pass
    return n


def test_slow_loris_does_not_hold_the_fastcgi_side(stack, base_url):
    sub, owner = _owner(stack, base_url)
    rid = owner.start_ok()["id"]
    tok = make_token(stack, sub, "instructor")
    auth = f"Authorization: Bearer {tok}\r\n"
    slow = []
    for i in range(SLOW_CLIENTS):
        if i % 3 == 0:  # headers that never end
            raw = (f"GET {API}/recordings?limit=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
                   f"X-Slow: {'s' * 400}\r\n\r\n").encode()
            slow.append((raw, len(raw) - 300))
        elif i % 3 == 1:  # a JSON body that never ends
            body = json.dumps({"user_id": f"slow-{i}", "event": "join", "display_name": "d" * 190}).encode()
            head = (f"POST {API}/recordings/{rid}/participants HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
            slow.append((head + body, len(head) + 20))
        else:  # an upload that never ends
            head = (f"POST {API}/recordings?title=slow-{i} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
                    f"Content-Type: video/mp4\r\nContent-Length: 1000000\r\n\r\n").encode()
            slow.append((head + b"\0" * 1000000, len(head) + 100000))
    with Dribbler(base_url, slow) as d:
        # A few rounds of dribbling: every slow request has reached the
        # server and whatever it hands them to.
        poll(lambda: d.rounds >= 3, timeout=60, what="three rounds of dribbling")
        c = Client(base_url, tok)

        def listed():
            try:
                r = c.get(API + f"/recordings/{rid}")
            except Exception:  # noqa: BLE001 - a timeout means "not yet"
                return False
            return r.status_code == 200 and r.json()["id"] == rid

        poll(listed, timeout=90, what=f"an answer through {base_url} while {SLOW_CLIENTS} slow clients are open")
        # More requests at once than vtp-api has threads (4) and mod_fcgid
        # processes (4): all answered while the slow clients still hold on.
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda _: Client(base_url, tok).get(API + "/recordings?limit=5").status_code,
                                    range(16)))
        assert results == [200] * 16, results
        assert d.open_count() == SLOW_CLIENTS, f"the server closed {SLOW_CLIENTS - d.open_count()} slow clients"
        if "apache_fcgid" in _frontend_name(stack, base_url):
            assert _fcgid_processes(stack) <= 4, "mod_fcgid runs more vtp.fcgi processes than its cap"
    # No slow request was ever completed: nothing was uploaded or joined.
    items = assert_json(c.get(API + f"/recordings/{rid}/participants"), 200)["items"]
    assert not [p for p in items if p["user_id"].startswith("slow-")], items


def _frontend_name(stack, base_url):
    return [name for name, url in stack.frontends.items() if url == base_url][0]


# ============================================================ SQL / verbatim
def test_metacharacters_in_recording_fields_are_verbatim(stack, base_url):
    """title and room_id, and the caller's sub (owner_id), with SQL and LIKE
    metacharacters: stored and returned as sent, and found by exact filters."""
    tag = uuid.uuid4().hex[:8]
    sub = f"u'; --%_\\\"{tag}\u00e9"
    owner = Client(base_url, make_token(stack, sub, "instructor"))
    made = {}
    for i, meta in enumerate(META):
        title, room = f"{meta} title {tag}", f"{meta}|room|{tag}|{i}"
        rec = owner.start_ok(title=title, room_id=room)
        assert (rec["title"], rec["room_id"], rec["owner_id"]) == (title, room, sub), rec
        made[rec["id"]] = (title, room)
    for rid, (title, room) in made.items():
        got = assert_json(owner.get(f"{API}/recordings/{rid}"), 200)
        assert (got["title"], got["room_id"], got["owner_id"]) == (title, room, sub), got
        # The exact room: that recording only.
        page = assert_json(owner.list(room_id=room), 200)
        assert [r["id"] for r in page["items"]] == [rid], (room, page)
    # owner_id filter with the odd sub, as an admin (who sees everyone's).
    admin = Client(base_url, make_token(stack, unique("adm"), "admin"))
    mine = admin.list_all(owner_id=sub)
    assert {r["id"] for r in mine} == set(made), "owner_id filter"
    # The same as JSON escapes and raw UTF-8 bodies.
    body = {"title": "\"quoted\" \\ back \u2028 sep " + tag, "room_id": "r\u0001x" + tag,
            "source": {"type": "sdp", "sdp": SDP}}
    r = owner.post(API + "/recordings/start", body)
    if r.status_code == 201:
        assert r.json()["room_id"] == body["room_id"] and r.json()["title"] == body["title"]
    else:
        assert_problem(r, 422)


def test_control_characters_in_text_fields_are_a_clean_422(stack, base_url):
    """NUL and other controls in every one-line text field: 422 invalid_value, nothing stored."""
    _, owner = _owner(stack, base_url)
    rid = owner.start_ok()["id"]
    for ch in CONTROLS:
        text = f"a{ch}b"
        for field in ("title", "room_id"):
            assert_problem(owner.start(**{field: text}), 422, "invalid_value")
        assert_problem(owner.event(rid, text, "join"), 422, "invalid_value")
        assert_problem(owner.event(rid, "u1", "join", display_name=text), 422, "invalid_value")
        assert_problem(owner.post(f"{API}/recordings/{rid}/shares", {"user_id": text}), 422, "invalid_value")
    assert assert_json(owner.get(f"{API}/recordings/{rid}/participants"), 200)["items"] == []
    assert assert_json(owner.get(f"{API}/recordings/{rid}/shares"), 200)["items"] == []


def test_like_wildcards_in_filters_match_literally(stack, base_url):
    tag = uuid.uuid4().hex[:10]
    sub, owner = _owner(stack, base_url)
    titles = {"pct": f"100% sure {tag}", "nopct": f"100 sure {tag}", "under": f"a_b {tag}", "nounder": f"axb {tag}",
              "back": f"c\\d {tag}", "noback": f"cd {tag}"}
    ids = {k: owner.start_ok(title=t, room_id=f"room_{tag}")["id"] for k, t in titles.items()}
    owner.start_ok(title=f"other {tag}", room_id=f"roomX{tag}")

    def found(**params):
        return {r["id"] for r in owner.list_all(**params)}

    assert found(q=f"100% sure {tag}") == {ids["pct"]}
    assert found(q="0%") == {ids["pct"]}
    assert found(q=f"a_b {tag}") == {ids["under"]}
    assert found(q=f"c\\d {tag}") == {ids["back"]}
    assert found(q="%" + tag) == set()  # no title holds "%<tag>"
    assert found(q="_" + tag) == set()
    # room_id and owner_id are exact: '_' and '%' are plain characters.
    assert found(room_id=f"room_{tag}") == set(ids.values())
    assert found(room_id=f"room%{tag}") == set()
    assert found(room_id="%") == set()
    assert found(owner_id=sub[:-1] + "_") == set()
    assert found(owner_id="%") == set()
    assert found(owner_id=sub) >= set(ids.values())


@pytest.mark.parametrize("name,value,ok", [
    ("q", "%00", False), ("room_id", "a%00b", False), ("owner_id", "%00", False),
    ("q", "%27%20OR%201%3D1--", True), ("room_id", "%27%3B%20DROP%20TABLE%20recordings%3B--", True),
    ("q", "%5C", True), ("q", "%E2%9C%93", True), ("status", "ready'--", False),
    ("cursor", "1'%3B--.x", False), ("limit", "1;--", False), ("limit", "1%20OR%201", False),
])
def test_query_parameters_with_metacharacters(stack, base_url, name, value, ok):
    """Filters with SQL text are data (200, no match) or a 400 invalid_query."""
    _, c = _owner(stack, base_url)
    c.start_ok()
    r = c.get(f"{API}/recordings?{name}={value}", raw=True)
    if ok:
        assert assert_json(r, 200)["items"] == [], r.text
    else:
        body = assert_problem(r, 400)
        assert body["code"] in ("invalid_query", "invalid_cursor"), body


@pytest.mark.parametrize("path,query", [
    ("/analytics", "by=%27%3B--"), ("/analytics", "by=day%25"), ("/download-url", "expires_in=1%27--"),
    ("/download-url", "expires_in=60%20OR%201"), ("/download", "rendition=%27%20OR%201%3D1--"),
    ("/thumbnail", "time=1%27--"), ("/thumbnail", "width=1%3B--"), ("/thumbnail", "format=jpg%27"),
    ("/progress", "session_id=%25%25%25%25%25%25%25%25"), ("/stream/playlist.m3u8", "x=%27--"),
])
def test_query_parameters_of_a_recording_with_metacharacters(stack, base_url, path, query):
    """The other endpoints' parameters: SQL text or wildcards are a clean 4xx problem."""
    _, c = _owner(stack, base_url)
    rid = c.start_ok()["id"]
    r = c.get(f"{API}/recordings/{rid}{path}?{query}", raw=True)
    body = assert_problem(r, r.status_code)
    assert r.status_code in (400, 404, 422), body


def test_metacharacters_in_participants_shares_and_jobs(stack, base_url):
    sub, owner = _owner(stack, base_url)
    rid = owner.start_ok()["id"]
    sent = {}
    for i, meta in enumerate(META):
        user = f"{meta}#{i}"
        owner.event_ok(rid, user, "join", display_name=f"{meta} name")
        sent[user] = f"{meta} name"
    items = assert_json(owner.get(f"{API}/recordings/{rid}/participants"), 200)["items"]
    assert {p["user_id"]: p["display_name"] for p in items} == sent
    # Shares for users with odd ids.
    made = []
    for meta in META[:8]:
        r = owner.post(f"{API}/recordings/{rid}/shares", {"user_id": f"{meta}share"})
        assert r.status_code == 201, r.text
        assert r.json()["user_id"] == f"{meta}share", r.json()
        made.append(f"{meta}share")
    listed = [s["user_id"] for s in assert_json(owner.get(f"{API}/recordings/{rid}/shares"), 200)["items"]]
    assert sorted(listed) == sorted(made)
    # Job filters: an id that is not a UUID is refused, words outside the
    # lists are refused or match nothing.
    admin = Client(base_url, make_token(stack, unique("adm"), "admin"))
    r = admin.get(f"{API}/jobs?recording_id=%27%20OR%201%3D1--", raw=True)
    assert_problem(r, 400)
    for name in ("state", "kind"):
        for value in ("%25", "_", "queued%27--", "%27%20OR%20%271%27%3D%271"):
            r = admin.get(f"{API}/jobs?{name}={value}", raw=True)
            if r.status_code == 200:
                assert r.json()["items"] == [], (name, value, r.text[:300])
            else:
                assert_problem(r, 400)
    # Progress: session_id has a pattern (8-64 of A-Za-z0-9_-): metacharacters are a 422.
    for meta in ("'; DROP TABLE playback_sessions; --", "%%%%%%%%", "________'"):
        r = owner.post(f"{API}/recordings/{rid}/progress", {"session_id": meta, "event": "play", "position_s": 0})
        assert_problem(r, 422)
        r = owner.get(f"{API}/recordings/{rid}/progress", params={"session_id": meta})
        assert r.status_code in (400, 422), r.text


def test_import_title_from_query_is_verbatim(stack, base_url):
    _, owner = _owner(stack, base_url)
    title = "x' OR 1=1; -- %_\\ \u00e9 " + unique()
    r = owner.request("POST", API + "/recordings", params={"title": title, "room_id": "r%_'"},
                      data=b"\0" * 1000, headers={"Content-Type": "video/mp4"})
    rec = assert_json(r, 201)
    assert rec["title"] == title and rec["room_id"] == "r%_'", rec


# ============================================================ traversal
@pytest.fixture
def files_of_two(stack, base_url):
    """Two recordings of one owner, with a segment, a playlist and a secret
    file laid out by hand in their folders (no transcode needed)."""
    sub, owner = _owner(stack, base_url)
    a, b = owner.start_ok()["id"], owner.start_ok()["id"]
    for rid in (a, b):
        d = Path(stack.storage_path) / rid / "hls" / "360p"
        d.mkdir(parents=True, exist_ok=True)
        (d / "seg_00000.m4s").write_bytes(b"segment of " + rid.encode())
        (d / "index.m3u8").write_text("#EXTM3U\n#EXTINF:6,\nseg_00000.m4s\n#EXT-X-ENDLIST\n")
        (Path(stack.storage_path) / rid / "secret.m4s").write_bytes(b"SECRET " + rid.encode())
        for p in [d, d.parent, d.parent.parent]:
            os.chmod(p, 0o755)
    return owner, a, b


def test_stream_names_never_leave_the_rendition_folder(stack, base_url, files_of_two):
    owner, a, b = files_of_two
    tok = sign(stack, a, int(time.time()) + 600)
    base = f"{API}/recordings/{a}/stream"
    ok = raw_request(base_url, "GET", f"{base}/360p/seg_00000.m4s?token={tok}")
    assert ok.status_code == 200 and ok.content == b"segment of " + a.encode(), ok.status_code
    attempts = [
        "..%2Fsecret.m4s", "360p/..%2F..%2Fsecret.m4s", "360p/%2e%2e%2f%2e%2e%2fsecret.m4s", "%2e%2e/secret.m4s",
        f"360p/..%2F..%2F..%2F{b}%2Fhls%2F360p%2Fseg_00000.m4s", "360p/seg_00000.m4s%00.txt", "360p%2Fseg_00000.m4s",
        "360p/seg_00000.m4s%2F..%2F..%2F..%2Fsecret.m4s", ".%2F360p/seg_00000.m4s", "360p/.%2Fseg_00000.m4s",
        "360p/%2E%2E%5C%2E%2E%5Csecret.m4s", "360p/..%5Csecret.m4s", "360p%00/seg_00000.m4s",
        "%2e%2e%2f%2e%2e%2f" + b + "/360p/seg_00000.m4s", "360p/seg_00000.m4s;/../../secret.m4s",
        "360p/" + "a" * 5000 + ".m4s", "360p/seg_00000.m4s%20", "%C0%AE%C0%AE/secret.m4s",
    ]
    for bad in attempts:
        r = raw_request(base_url, "GET", f"{base}/{bad}?token={tok}")
        assert 400 <= r.status_code < 500, (bad, r.status_code, r.content[:200])
        assert b"SECRET" not in r.content and b"segment of" not in r.content, (bad, r.content[:200])
    # A token for a opens nothing of b, with or without dot segments.
    for bad in (f"{API}/recordings/{b}/stream/360p/seg_00000.m4s?token={tok}",
                f"{base}/../../{b}/stream/360p/seg_00000.m4s?token={tok}",
                f"{base}/%2e%2e/%2e%2e/{b}/stream/360p/seg_00000.m4s?token={tok}"):
        r = raw_request(base_url, "GET", bad)
        assert r.status_code in (400, 403, 404), (bad, r.status_code)
        assert b"segment of" not in r.content


@pytest.mark.parametrize("rendition", [
    "../secret.m4s", "..", "../../etc/passwd", "%2e%2e%2fsecret.m4s", "mp4/../../secret", "original/../secret",
    "360p/../../secret", "/etc/passwd", "secret.m4s", "a" * 40, "..%00", "hls", "MP4", "..\\secret",
])
def test_download_renditions_never_name_other_files(stack, base_url, files_of_two, rendition):
    owner, a, _ = files_of_two
    r = owner.get(f"{API}/recordings/{a}/download", params={"rendition": rendition})
    assert 400 <= r.status_code < 500, (rendition, r.status_code, r.content[:200])
    assert b"SECRET" not in r.content
    r = owner.get(f"{API}/recordings/{a}/download-url", params={"rendition": rendition})
    assert 400 <= r.status_code < 500 or (r.status_code == 200 and "url" in r.json()), r.text
    if r.status_code == 200:  # the URL it made must not open anything either
        got = Client(base_url).get(r.json()["url"], tok=None)
        assert 400 <= got.status_code < 500 and b"SECRET" not in got.content, got.status_code


@pytest.mark.parametrize("param,value", [
    ("format", "../../secret.m4s"), ("format", "jpg/../../x"), ("format", "jpg%00"), ("format", "..%2Fjpg"),
    ("fit", "../x"), ("time", "../1"), ("time", "1/../../x"), ("width", "../1"), ("height", "1%2F.."),
])
def test_thumbnail_parameters_are_not_names(stack, base_url, files_of_two, param, value):
    owner, a, _ = files_of_two
    r = owner.get(f"{API}/recordings/{a}/thumbnail?{param}={value}", raw=True)
    assert r.status_code in (400, 404, 409, 422), (param, value, r.status_code, r.content[:200])
    assert b"SECRET" not in r.content


# ============================================================ id leaks
def test_other_users_ids_never_leak(stack, base_url, db):
    """B's recording and job ids never appear in what A can see, and A's
    probes of them answer exactly as for ids that do not exist."""
    _, a = _owner(stack, base_url)
    b_sub, b = _owner(stack, base_url)
    _, student = _owner(stack, base_url, role="student")
    with db.cursor() as cur:  # long job ids: a one-digit id (a fresh database) is found in any timestamp
        cur.execute("SELECT setval(pg_get_serial_sequence('jobs', 'id'), greatest(max(id), 0) + 1000000) FROM jobs")
    a_rid = a.start_ok()["id"]
    b_rid = b.start_ok(room_id=unique("room-b"))["id"]
    b.event_ok(b_rid, "viewer-1", "join")
    with db.cursor() as cur:
        cur.execute("SELECT id FROM jobs WHERE recording_id = %s", (b_rid,))
        b_jobs = [row[0] for row in cur.fetchall()]
    assert b_jobs, "starting a recording queues a job"
    missing_rid = str(uuid.uuid4())
    with db.cursor() as cur:
        cur.execute("SELECT coalesce(max(id), 0) + 1000000 FROM jobs")
        missing_job = cur.fetchone()[0]
    secret = [b_rid.encode()] + [str(j).encode() for j in b_jobs]

    def clean(r):
        for s in secret:
            assert s not in r.content, (r.url, r.status_code, r.content[:300])

    for who in (a, student):
        for path, params in [(API + "/recordings", {"limit": 100}), (API + "/recordings", {"owner_id": b_sub}),
                             (API + "/recordings", {"q": ""}), (API + "/jobs", {"limit": 100}),
                             (API + "/jobs", {"kind": "record"}), (f"{API}/recordings/{a_rid}", None),
                             (f"{API}/recordings/{a_rid}/analytics", None), (f"{API}/recordings/{a_rid}/participants", None)]:
            r = who.get(path, params=params)
            assert r.status_code in (200, 400, 403, 404), (path, r.status_code, r.text[:200])
            clean(r)
        # Probing B's ids answers like probing ids that do not exist.
        for suffix in ("", "/analytics", "/participants", "/info", "/thumbnail", "/shares", "/progress",
                       "/download-url", "/stream/playlist.m3u8", "/storyboard.json"):
            real = who.get(f"{API}/recordings/{b_rid}{suffix}")
            fake = who.get(f"{API}/recordings/{missing_rid}{suffix}")
            assert (real.status_code, real.json().get("code")) == (fake.status_code, fake.json().get("code")), \
                (suffix, real.status_code, real.text[:200], fake.status_code, fake.text[:200])
            assert real.status_code in (403, 404), (suffix, real.status_code)
        for path in ("", "/cancel", "/retry"):
            method = "GET" if not path else "POST"
            real = who.request(method, f"{API}/jobs/{b_jobs[0]}{path}")
            fake = who.request(method, f"{API}/jobs/{missing_job}{path}")
            assert (real.status_code, real.json().get("code")) == (fake.status_code, fake.json().get("code")), \
                (path, real.text[:200], fake.text[:200])
            if real.status_code != 404:  # a 404 may echo the id the caller sent; anything else must not
                clean(real)
        r = who.get(API + "/jobs", params={"recording_id": b_rid})
        assert r.status_code in (200, 403, 404), r.text[:200]
        if r.status_code == 200:
            assert r.json()["items"] == [], r.text[:300]
    # Nothing A did changed B's recording.
    assert assert_json(b.get(f"{API}/recordings/{b_rid}"), 200)["status"] == "pending"
