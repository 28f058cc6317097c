"""Malformed requests.

test_random_malformed_requests sends 1000 random malformed requests (fixed
seed, so a failure reproduces) through nginx only -- the API behind the
other frontends is the same program, and this is the expensive test: weird
and unknown methods, paths with `..`, `%00`, `%2e`, non-UTF-8 escapes and up
to ~10 KB of length, ids that are not UUIDs, random query strings, bodies
that are not JSON or not the schema, wrong content types, bad or missing
tokens, other users' recordings, and headers of up to ~7 KiB. Every answer
must be a 4xx (nginx may answer some itself: 400 for a bad request line,
414/431/494 for sizes) -- never a 5xx, never a dropped connection -- and the
API must still answer /health afterwards. It uses one kept-alive
http.client connection (reopened when a server closes it) rather than a
requests.Session, because requests/urllib3 normalise request targets (they
drop `..` segments and re-quote `%` escapes), which would defeat the test.

The contract tests for unknown paths (404 not_found) and wrong methods
(405 method_not_allowed with Allow) run through every frontend."""

import http.client
import socket
import json
import random
import time
import urllib.parse
import uuid

import pytest

from helpers import (API, SDP, Client, RawConnection, RawResponse, assert_json, assert_no_leak, assert_problem,
                     assert_wellformed, claims, make_token, raw_request, sign_jwt, unique)

SEED = 20261124
N_REQUESTS = 1000


# ===================================================================== contract
@pytest.mark.parametrize("path", [
    API + "/nope", API + "/recordings/" + "5d0c9f2e-8a1b-4c3d-9e7f-0a1b2c3d4e5f/nope", "/api/v2/recordings",
    API + "/recordings/5d0c9f2e-8a1b-4c3d-9e7f-0a1b2c3d4e5f/stop/again", API + "/recordings/",
    API + "/Recordings", API + "/recordings/start/x",
])
def test_unknown_path_is_404_not_found(stack, base_url, path):
    c = Client(base_url, make_token(stack, unique("u"), "admin"))
    assert_problem(c.get(path, raw=True), 404, "not_found")
    # Without a token too: there is nothing to authenticate for.
    assert_problem(Client(base_url, None).get(path, raw=True), 404, "not_found")


@pytest.mark.parametrize("method,path,allow", [
    ("PUT", API + "/recordings/{id}", "GET, DELETE"),
    ("PATCH", API + "/recordings/{id}", "GET, DELETE"),
    ("DELETE", API + "/recordings", "GET, POST"),
    ("PUT", API + "/recordings", "GET, POST"),
    ("GET", API + "/recordings/{id}/stop", "POST"),
    ("DELETE", API + "/recordings/{id}/participants", "POST, GET"),
    ("POST", "/health", "GET"),
    ("OPTIONS", API + "/recordings/{id}/stop", "POST"),
])
def test_wrong_method_is_405_with_allow(stack, base_url, method, path, allow):
    rid = str(uuid.uuid4())
    c = Client(base_url, make_token(stack, unique("u"), "admin"))
    r = c.request(method, path.replace("{id}", rid))
    assert_problem(r, 405, "method_not_allowed")
    got = sorted(m.strip() for m in r.headers.get("Allow", "").split(","))
    want = sorted(m.strip() for m in allow.split(","))
    # The table may grow (new methods on a path): what the contract lists must be there.
    assert set(want) <= set(got), f"Allow: {r.headers.get('Allow')!r}, expected at least {allow!r}"
    assert method not in got


# ======================================================================= random
class Gen:
    """Builds one malformed request: (method, target, headers, body, what)."""

    METHODS_ODD = ["PUT", "PATCH", "OPTIONS", "PROPFIND", "MKCOL", "FOO", "BREW", "M-SEARCH", "GET_", "X" * 40,
                   "LOCK", "SEARCH", "PURGE", "TRACE", "CONNECT", "get", "Post", "DELETE"]
    SEGMENTS = ["..", ".", "%2e%2e", "%2E", "%00", "%00x", "%2F", "%5C", "%FF", "%C3%A9", "%C3", "%E2%82",
                "\xff\xfe", "\xc3\xa9", "a\xc3", "\x80",  # raw bytes in the request line (latin-1 str)
                "~", "*", ";x=1", "%20", "+", "a%", "%zz", "%%", "stop", "participants", "recordings", "v1",
                "api", "info", "jobs", "null", "undefined", "-1",
                "0", "9" * 30, "start"]

    def __init__(self, rnd, stack, own_rid, other_rid, stopped_rid):
        self.r = rnd
        self.stack = stack
        self.own_rid, self.other_rid, self.stopped_rid = own_rid, other_rid, stopped_rid
        self.owner = "fuzz-owner"
        self.tok_owner = make_token(stack, self.owner, "instructor")
        self.tok_student = make_token(stack, "fuzz-student", "student")
        self.tok_other = make_token(stack, "fuzz-other", "instructor")
        now = int(time.time())
        self.bad_tokens = [
            "", "Bearer", "Bearer ", "Bearer x", "Bearer a.b.c", "Basic dTpw", "Bearer " + "z" * 5000,
            "Bearer " + sign_jwt(claims("u", "admin") | {"exp": now - 3600}, stack.jwt_secret),
            "Bearer " + sign_jwt(claims("u", "admin"), "wrong-secret-wrong-secret"),
            "Bearer " + sign_jwt(claims("u", "root"), stack.jwt_secret),
            "Bearer " + sign_jwt({"role": "admin", "exp": now + 99}, stack.jwt_secret),
            "Bearer " + sign_jwt(claims("u", "admin"), stack.jwt_secret, header={"alg": "none"}),
            "Bearer \x7f\x01",
        ]

    # -- pieces
    def junk(self, n_max=40):
        r = self.r
        alphabet = "abcdefXYZ0189-_.~!$&'()*+,;=:@%"
        return "".join(r.choice(alphabet) for _ in range(r.randint(0, n_max)))

    def seg(self):
        r = self.r
        roll = r.random()
        if roll < 0.5:
            return r.choice(self.SEGMENTS)
        if roll < 0.9:
            return urllib.parse.quote(self.junk(), safe="")
        return "a" * r.randint(100, 3000)

    def bad_id(self):
        r = self.r
        good = str(uuid.uuid4())
        return r.choice([
            good.upper(), good + "0", good[:-1], good.replace("-", ""), "{" + good + "}", good[:8] + "_" + good[9:],
            "..", ".", "%00", good[:-2] + "%00", "%35" + good[1:], self.junk(30) or "x", "0" * 36, "g" * 36,
            good.replace("-", "%2D"), "a" * r.randint(37, 2000), "start", "\xff" * r.randint(1, 50),
            "a" * 39 + "\xc3\xa9", good[:-1] + "\xe9",
        ])

    def random_headers(self, h):
        r = self.r
        if r.random() < 0.35:
            total = r.randint(100, 7 * 1024)
            n = r.randint(1, 4)
            for i in range(n):
                h[f"X-Junk-{i}"] = "j" * max(1, total // n - 20)
        if r.random() < 0.1:
            h["Accept"] = r.choice(["*/*", "application/xml", "text/html;q=0.1", "\u00e9".encode().decode("latin-1")])
        if r.random() < 0.1:
            h["X-Forwarded-For"] = r.choice(["1.2.3.4", "not-an-ip", "::1, 10.0.0.1", "x" * 500])
        if r.random() < 0.05:
            h["Cookie"] = "session=" + "c" * r.randint(1, 4000)
        return h

    def bad_json_body(self):
        r = self.r
        good = {"title": "t", "room_id": "r", "source": {"type": "sdp", "sdp": SDP}}
        text = json.dumps(good)
        choice = r.randrange(14)
        if choice == 0:
            return bytes(r.randrange(256) for _ in range(r.randint(1, 300)))
        if choice == 1:
            return text[: r.randint(0, len(text) - 1)].encode()
        if choice == 2:
            return (text + r.choice(["x", "}", "{}", "[]", "\x00", ",", "null"])).encode()
        if choice == 3:
            return r.choice([b"[]", b"null", b"1", b'"s"', b"true", b"", b" ", b"{", b"}", b"{,}", b"NaN"])
        if choice == 4:
            return b"[" * r.randint(17, 5000) + b"]" * r.randint(0, 5000)
        if choice == 5:
            return ('{"title": "' + "\\ud800" * r.randint(1, 5) + '\\u0000", "room_id": "r", "source": {}}').encode()
        bad = json.loads(text)
        if choice == 6:
            bad[self.junk(10) or "k"] = r.choice([1, "x", None, [], {}])
            bad.setdefault("title", "t")
            bad["colour"] = "red"
        elif choice == 7:
            del bad[r.choice(["title", "room_id", "source"])]
        elif choice == 8:  # a member of the wrong type
            field, values = r.choice([
                ("title", [1, 1.5, True, [], {"a": 1}, None]), ("room_id", [7, False, ["r"], None]),
                ("source", ["sdp", 3, [], None]), ("retention_days", ["30", 1.5, True, [], {}]),
                ("profiles", ["720p", 1, {"720p": 1}, True]),
            ])
            bad[field] = r.choice(values)
        elif choice == 9:
            bad["source"] = r.choice([{"type": "url", "url": u} for u in (
                "file:///etc/passwd", "http://x/y", "udp://1.2.3.4:5", "rtmp://", "concat:a|b", "data:,x",
                "rtmp://" + "h" * 3000)] + [{"type": "sdp", "sdp": s} for s in ("", "v=1", "x", "v=0\r\n")])
        elif choice == 10:
            bad["profiles"] = r.choice([[], ["8k"], ["720p", "720p"], [1], "720p", ["720p"] * 9])
        elif choice == 11:
            bad["title"] = r.choice(["", "\n", "\x01", "t" * 201, "\x7f"])
        elif choice == 12:
            bad["retention_days"] = r.choice([0, -5, 36501, 2 ** 62, "1", 1.25])
        else:
            bad["source"]["extra"] = 1
        return json.dumps(bad).encode()

    def bad_event_body(self):
        r = self.r
        body = {"user_id": "u" + str(r.randint(1, 5)), "event": "join"}
        choice = r.randrange(8)
        if choice == 0:
            body["event"] = r.choice(["", "JOIN", "dance", "join ", 1, None, ["join"]])
        elif choice == 1:
            body["bytes_sent"] = r.choice([-1, 2 ** 53 + 1, "10", 1.5, True, 2 ** 70])
            body["event"] = "stats"
        elif choice == 2:
            del body[r.choice(["user_id", "event"])]
        elif choice == 3:
            body["user_id"] = r.choice(["", "u" * 201, 5, None, "a\tb"])
        elif choice == 4:
            body["extra"] = True
        elif choice == 5:
            body["bytes_received"] = 5  # counters only with stats
            body["event"] = r.choice(["join", "leave"])
        elif choice == 6:
            return self.bad_json_body()
        else:
            body["display_name"] = r.choice([17, "d" * 201, "\x00", "\x1b[31m"])
        return json.dumps(body).encode()

    def bad_query(self):
        r = self.r
        bad = r.choice([
            "limit=0", "limit=101", "limit=-3", "limit=x", "limit=1e3", "limit=%00", "limit=1&limit=1",
            "status=done", "status=", "status=%FF", "foo=bar", "cursor=zzz", "cursor=1.2", "cursor=%FF",
            "q=%FF", "q=" + "q" * 300, "room_id=%C3", "owner_id=%E2%82", "q=%", "q=%zz", "room_id=%00",
            "LIMIT=5", "q", "=x", "limit=5&cursor=" + "9" * 19 + "." + str(uuid.uuid4()),
            "cursor=" + str(uuid.uuid4()), "status=pending&status=pending", "\xff\xfe=1", "a" * 63 + "\xc3\xa9=1",
            "q=\xff", "room_id=\xc3",
        ])
        if bad == "status=":
            bad = "status=bogus"
        if bad in ("q", "=x"):
            bad = "q&foo"
        extras = r.sample(["limit=5", "q=abc", "room_id=r1", "owner_id=o1", "status=ready"], r.randint(0, 2))
        parts = extras + [bad]
        r.shuffle(parts)
        return "&".join(parts)

    # -- one request
    def make(self):
        r = self.r
        kind = r.choice(["junk_path", "junk_path", "outside_api", "wrong_method", "no_auth", "bad_id", "bad_id",
                         "bad_query", "bad_query", "bad_start", "bad_start", "bad_event", "wrong_ctype",
                         "not_yours", "student_start", "stop_stopped", "too_large"])
        h = {}
        method, target, body = "GET", "/", None
        if kind == "junk_path":
            method = r.choice(["GET", "POST", "DELETE", "PUT"] + self.METHODS_ODD[:6])
            target = r.choice([
                API + "/" + "/".join(self.seg() for _ in range(r.randint(1, 4))),
                API + "/recordings/" + str(uuid.uuid4()) + "/" + r.choice(["x", "stops", "participant", "%00",
                                                                           "..", "stop/..", "info/x"]),
                "/api/" + self.seg(), "/api/v2/" + self.seg(), API + "/recordings/start/" + self.seg(),
                API + "//recordings", "/api/v1/../../" + self.seg(), "/api/" + "a" * r.randint(5000, 10000),
            ])
            if target.rstrip("/") in (API + "/recordings", API + "/jobs"):
                target += "/x/y/z"
            h["Authorization"] = "Bearer " + r.choice([self.tok_owner, self.tok_student])
        elif kind == "outside_api":
            method = r.choice(["GET", "POST", "HEAD", "OPTIONS", "PROPFIND"])
            target = r.choice(["/%00", "/..%2f..%2fetc%2fpasswd", "/../../etc/passwd", "/health/x", "/healthz",
                               "/health%00", "/" + "a" * r.randint(1, 9000), "/.git/config",
                               "/www/../fcgi/main.c", "/index.html/x", "/%2e%2e/%2e%2e/etc/passwd",
                               "/vtp.conf", "/.htaccess"])
        elif kind == "wrong_method":
            path, allowed = r.choice([
                (API + "/recordings/start", {"POST"}), (API + "/recordings", {"GET", "POST"}),
                (API + "/recordings/" + self.own_rid, {"GET", "DELETE"}),
                (API + "/recordings/" + self.own_rid + "/stop", {"POST"}),
                (API + "/recordings/" + self.own_rid + "/participants", {"GET", "POST"}),
                ("/health", {"GET"}),
            ])
            method = r.choice([m for m in ["GET", "POST", "DELETE"] + self.METHODS_ODD if m not in allowed])
            target = path
            h["Authorization"] = "Bearer " + self.tok_owner
            if r.random() < 0.5:
                body = self.bad_json_body()
        elif kind == "no_auth":
            method, path = r.choice([("POST", "/recordings/start"), ("GET", "/recordings"),
                                     ("GET", "/recordings/{id}"), ("DELETE", "/recordings/{id}"),
                                     ("POST", "/recordings/{id}/stop"), ("POST", "/recordings/{id}/participants"),
                                     ("GET", "/recordings/{id}/participants")])
            target = API + path.replace("{id}", r.choice([self.own_rid, str(uuid.uuid4()), self.bad_id()]))
            tok = r.choice(self.bad_tokens)
            if tok:
                h["Authorization"] = tok
            if method == "POST":
                body = json.dumps({"title": "t", "room_id": "r", "source": {"type": "sdp", "sdp": SDP}}).encode()
                h["Content-Type"] = "application/json"
        elif kind == "bad_id":
            method, suffix = r.choice([("GET", ""), ("DELETE", ""), ("POST", "/stop"), ("GET", "/participants"),
                                       ("POST", "/participants")])
            target = API + "/recordings/" + self.bad_id() + suffix
            h["Authorization"] = "Bearer " + self.tok_owner
            if method == "POST":
                body = json.dumps({"user_id": "u", "event": "join"}).encode()
                h["Content-Type"] = "application/json"
        elif kind == "bad_query":
            target = API + "/recordings?" + self.bad_query()
            h["Authorization"] = "Bearer " + r.choice([self.tok_owner, self.tok_student])
        elif kind == "bad_start":
            method, target, body = "POST", API + "/recordings/start", self.bad_json_body()
            h["Authorization"] = "Bearer " + self.tok_owner
            h["Content-Type"] = r.choice(["application/json", "application/json; charset=utf-8"])
        elif kind == "bad_event":
            method, target, body = "POST", f"{API}/recordings/{self.own_rid}/participants", self.bad_event_body()
            h["Authorization"] = "Bearer " + self.tok_owner
            h["Content-Type"] = "application/json"
        elif kind == "wrong_ctype":
            method = "POST"
            target = r.choice([API + "/recordings/start", f"{API}/recordings/{self.own_rid}/participants"])
            body = json.dumps({"user_id": "u", "event": "join"} if "participants" in target else
                              {"title": "t", "room_id": "r", "source": {"type": "sdp", "sdp": SDP}}).encode()
            h["Authorization"] = "Bearer " + self.tok_owner
            ctype = r.choice([None, "text/plain", "application/xml", "application/json; charset=latin-1",
                              "application/json-patch+json", "multipart/form-data; boundary=x", "*/*",
                              "application/x-www-form-urlencoded", "application/jsonx", "json"])
            if ctype:
                h["Content-Type"] = ctype
        elif kind == "not_yours":
            method, suffix = r.choice([("GET", ""), ("DELETE", ""), ("POST", "/stop"), ("GET", "/participants"),
                                       ("POST", "/participants")])
            target = f"{API}/recordings/{self.other_rid}{suffix}"
            h["Authorization"] = "Bearer " + r.choice([self.tok_owner, self.tok_student])
            if method == "POST":
                body = json.dumps({"user_id": "u", "event": "join"}).encode()
                h["Content-Type"] = "application/json"
        elif kind == "student_start":
            method, target = "POST", API + "/recordings/start"
            body = json.dumps({"title": "t", "room_id": "r", "source": {"type": "sdp", "sdp": SDP}}).encode()
            h["Authorization"] = "Bearer " + self.tok_student
            h["Content-Type"] = "application/json"
        elif kind == "stop_stopped":
            method, target = "POST", f"{API}/recordings/{self.stopped_rid}/stop"
            h["Authorization"] = "Bearer " + self.tok_owner
        elif kind == "too_large":
            method = "POST"
            target = r.choice([API + "/recordings/start", f"{API}/recordings/{self.own_rid}/participants"])
            body = b'{"title": "' + b"x" * ((1 << 20) + r.randint(1, 200000)) + b'"}'
            h["Authorization"] = "Bearer " + self.tok_owner
            h["Content-Type"] = "application/json"
        self.random_headers(h)
        return method, target, h, body, kind


def send(conn_box, base, method, target, headers, body):
    """One request on the kept-alive connection; reopens it once if the server
    had closed it in between (a normal keep-alive race, not a failure)."""
    u = urllib.parse.urlsplit(base)
    for attempt in (0, 1):
        if conn_box[0] is None:
            conn_box[0] = RawConnection(u.hostname, u.port, timeout=15)
            fresh = True
        else:
            fresh = False
        fresh = fresh or conn_box[0].sock is None  # http.client reopens a closed one itself
        try:
            return raw_request(base, method, target, headers=headers, body=body, conn=conn_box[0])
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
            conn_box[0].close()
            conn_box[0] = None
            if fresh or attempt == 1:
                raise AssertionError(f"connection error on a fresh connection: {exc!r}") from exc
    raise AssertionError("unreachable")


def test_random_malformed_requests(stack):
    base = stack.frontends["nginx"]
    owner = Client(base, make_token(stack, "fuzz-owner", "instructor"))
    other = Client(base, make_token(stack, "fuzz-stranger", "instructor"))
    own_rid = owner.start_ok()["id"]
    stopped_rid = owner.start_ok()["id"]
    assert owner.post(f"{API}/recordings/{stopped_rid}/stop").status_code == 202
    other_rid = other.start_ok()["id"]

    rnd = random.Random(SEED)
    gen = Gen(rnd, stack, own_rid, other_rid, stopped_rid)
    conn = [None]
    failures, statuses = [], {}
    t0 = time.monotonic()
    for i in range(N_REQUESTS):
        method, target, headers, body, kind = gen.make()
        what = f"#{i} [{kind}] {method} {target[:150]}{'...' if len(target) > 150 else ''} " \
               f"headers={ {k: v[:40] for k, v in headers.items()} } body={(body or b'')[:80]!r}"
        try:
            r = send(conn, base, method, target, headers, body)
        except Exception as exc:  # noqa: BLE001 - a dropped connection is a failure
            failures.append(f"{what}\n    -> {exc!r}")
            continue
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        if not 400 <= r.status_code < 500:
            failures.append(f"{what}\n    -> {r.status_code}: {r.text[:300]}")
            continue
        try:
            sent = (target + json.dumps(headers)).encode("latin-1", "replace") + (body or b"")
            assert_no_leak(r, sent)
            assert_wellformed(r)
            if r.headers.get("Content-Type", "").startswith("application/problem+json"):
                p = r.json()
                assert p["status"] == r.status_code and p["code"] and p["type"] == "about:blank", p
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{what}\n    -> {exc}")
    elapsed = time.monotonic() - t0
    if conn[0] is not None:
        conn[0].close()
    summary = f"{N_REQUESTS} requests in {elapsed:.1f}s, statuses {dict(sorted(statuses.items()))}"
    print(summary)
    assert not failures, f"{len(failures)} bad answers (seed {SEED}); {summary}\n" + "\n".join(failures[:40])
    # The mix really was mixed: the API itself answered most of them.
    assert len(statuses) >= 8, summary
    for must in (400, 401, 403, 404, 405, 409, 413, 415, 422):
        assert statuses.get(must), f"no {must} in the mix: {summary}"

    # Still healthy, and still serving real requests on fresh connections.
    assert_json(Client(base).get("/health"), 200)
    assert assert_json(owner.get(f"{API}/recordings/{own_rid}"), 200)["id"] == own_rid
    # What the fuzzing did not touch is intact: the other user's recording.
    assert assert_json(other.get(f"{API}/recordings/{other_rid}"), 200)["status"] == "pending"


def test_malformed_request_line_via_socket(stack):
    """Request lines no HTTP library would send, straight on a socket to nginx:
    each gets a 4xx status line (or a clean close), and nginx+API stay up."""
    u = urllib.parse.urlsplit(stack.frontends["nginx"])
    lines = [
        b"GET /api/v1/recordings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \x00\r\n\r\n",
        b"GET /api/v1/recordings\x00x HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET  /api/v1/recordings  HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /api/v1/recordings/start HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST /api/v1/recordings/start HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"POST /api/v1/recordings/start HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /api/v1/recordings HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
        b"GET /api/v1/recordings HTTP/1.1\r\n" + b"X: " + b"y" * 20000 + b"\r\n\r\n",
        b"GET http://evil.example/api/v1/recordings HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/recordings?limit=1 HTTP/1.1\r\n\r\n",
    ]
    for raw in lines:
        with socket.create_connection((u.hostname, u.port), timeout=10) as s:
            s.sendall(raw)
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            data = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                data += chunk
        if not data:
            continue  # closed without an answer: allowed for garbage that is not HTTP
        status_line = data.split(b"\r\n", 1)[0]
        parts = status_line.split()
        assert len(parts) >= 2 and parts[0].startswith(b"HTTP/"), (raw[:80], data[:200])
        code = int(parts[1])
        assert 400 <= code < 500, (raw[:80], status_line)
        body = data.partition(b"\r\n\r\n")[2]
        assert_no_leak(RawResponse("RAW", "socket", code, [], body), raw)
    assert_json(Client(stack.frontends["nginx"]).get("/health"), 200)


@pytest.mark.parametrize("target", [
    "/api/v1/recordings/\xff\xfeabc",                    # raw bytes in the path
    "/api/v1/recordings/" + "a" * 39 + "\xc3\xa9",        # a character cut by the detail's length limit
    "/api/v1/recordings/%FF%FE",                          # mod_fcgid decodes PATH_INFO
    "/api/v1/recordings/" + "a" * 39 + "%C3%A9",
    "/api/v1/recordings?\xff\xfe=1",                      # unknown query parameter, echoed
    "/api/v1/recordings?" + "a" * 63 + "\xc3\xa9=1",
    "/api/v1/recordings?q=\xff",
], ids=["raw_ff_fe", "cut_char", "pct_ff_fe", "pct_cut_char", "query_name_ff", "query_name_cut", "query_value_ff"])
def test_problem_bodies_are_utf8_json(stack, base_url, target):
    """Whatever bytes the client sends, an error answer is UTF-8 JSON (details
    that echo input must not pass invalid bytes on, or cut a character)."""
    tok = make_token(stack, unique("u"), "admin")
    r = raw_request(base_url, "GET", target, headers={"Authorization": "Bearer " + tok})
    assert 400 <= r.status_code < 500, (r.status_code, r.content[:200])
    if r.headers.get("Content-Type", "").startswith("application/problem+json"):
        assert_wellformed(r)
        assert r.json()["status"] == r.status_code


def test_unknown_member_name_echo_is_utf8(stack, base_url):
    """A valid UTF-8 member name longer than the detail's limit is cut at a character boundary."""
    c = Client(base_url, make_token(stack, unique("u"), "admin"))
    body = {"title": "t", "room_id": "r", "source": {"type": "sdp", "sdp": SDP}, "a" + "é" * 40: 1}
    r = c.request("POST", API + "/recordings/start", data=json.dumps(body, ensure_ascii=False).encode(),
                  headers={"Content-Type": "application/json"})  # (Client checks the body is UTF-8 JSON)
    assert_problem(r, 400, "unknown_field")
