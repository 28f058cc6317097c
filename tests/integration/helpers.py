"""Shared helpers for the VTP integration tests: a tiny HS256 JWT signer,
request wrappers, problem/recording shape checks and the "no internals in
error bodies" check. Imported by the test_*.py files next to it."""

import base64
import hashlib
import hmac
import http.client
import json
import re
import time
import urllib.parse
import uuid

import requests
from requests.structures import CaseInsensitiveDict

API = "/api/v1"
TIMEOUT = 15

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RFC3339_UTC_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")

SDP = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=room\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=video 40000 RTP/AVPF 96\r\na=rtpmap:96 VP8/90000\r\n")

# What an error body must never show: SQL, PostgreSQL/libpq messages, file
# paths of the server, source locations.
LEAK_PATTERNS = [
    re.compile(p) for p in (
        r"ERROR:", r"FATAL:", r"SQLSTATE", r"\bSELECT\b", r"\bINSERT\s+INTO\b", r"\bUPDATE\s+\w+\s+SET\b",
        r"\bDELETE\s+FROM\b", r"\bFROM\s+recordings\b", r"\brecording_participants\b", r"syntax error at",
        r"violates .* constraint", r"\blibpq\b", r"postgresql://", r"/tmp/", r"/var/", r"/etc/", r"/usr/",
        r"/home/", r"/root/", r"/run/", r"\.c:\d+", r"\bvtp-test-", r"Traceback", r"AddressSanitizer",
    )
]


def unique(prefix="t"):
    """A short unique name so tests sharing one database never see each other's data."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------- JWT
def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(claims, secret, header=None, alg="HS256"):
    """An HS256 JWT of claims (dict, or raw str/bytes for the payload segment)."""
    header = header if header is not None else {"alg": alg, "typ": "JWT"}
    h = b64url(json.dumps(header, separators=(",", ":")) if isinstance(header, dict) else header)
    p = b64url(json.dumps(claims, separators=(",", ":")) if isinstance(claims, dict) else claims)
    signing_input = f"{h}.{p}".encode()
    key = secret.encode() if isinstance(secret, str) else secret
    sig = hmac.new(key, signing_input, hashlib.sha256).digest()
    return f"{h}.{p}.{b64url(sig)}"


def claims(sub, role, ttl=3600, **extra):
    now = int(time.time())
    c = {"sub": sub, "role": role, "iat": now, "exp": now + ttl}
    c.update(extra)
    return c


def make_token(stack, sub, role, ttl=3600, **extra):
    """A valid token for the stack, signed here (no subprocess, fast)."""
    return sign_jwt(claims(sub, role, ttl, **extra), stack.jwt_secret)


def auth(tok):
    return {"Authorization": "Bearer " + tok} if tok else {}


# ---------------------------------------------------------------- requests
class Client:
    """Requests against one frontend as one user; every answer is checked for leaks."""

    def __init__(self, base_url, tok=None, session=None):
        self.base = base_url
        self.tok = tok
        self.s = session or requests.Session()

    def request(self, method, path, *, json_body=None, data=None, headers=None, params=None, tok=..., raw=False):
        h = {}
        t = self.tok if tok is ... else tok
        h.update(auth(t))
        if json_body is not None:
            data = json.dumps(json_body)
            h["Content-Type"] = "application/json"
        if headers:
            h.update(headers)
        url = path if path.startswith("http") else self.base + path
        if raw:
            r = raw_request(self.base, method, path, headers=h, body=data)
        else:
            r = self.s.request(method, url, data=data, headers=h, params=params, timeout=TIMEOUT,
                               allow_redirects=False)
        sent = (url + json.dumps(params or {}) + str(h)).encode() + (
            data if isinstance(data, bytes) else (data or "").encode() if isinstance(data, str) else b"")
        assert_no_leak(r, sent)
        assert_wellformed(r)
        return r

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, json_body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # -- API shortcuts
    def start(self, title=None, room_id=None, source=None, **extra):
        body = {"title": title or unique("title"), "room_id": room_id or unique("room"),
                "source": source or {"type": "sdp", "sdp": SDP}}
        body.update(extra)
        return self.post(API + "/recordings/start", body)

    def start_ok(self, **kw):
        r = self.start(**kw)
        assert r.status_code == 201, r.text
        return r.json()

    def list(self, **params):
        return self.get(API + "/recordings", params=params)

    def list_all(self, limit=100, **params):
        """Every item of the list, following next_cursor."""
        items, cursor = [], None
        for _ in range(1000):
            p = dict(params, limit=limit)
            if cursor:
                p["cursor"] = cursor
            r = self.list(**p)
            assert r.status_code == 200, r.text
            page = r.json()
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items
        raise AssertionError("the list did not end after 1000 pages")

    def event(self, rid, user_id, event, **extra):
        body = {"user_id": user_id, "event": event}
        body.update(extra)
        return self.post(f"{API}/recordings/{rid}/participants", body)

    def event_ok(self, rid, user_id, event, **extra):
        r = self.event(rid, user_id, event, **extra)
        assert r.status_code == 204, r.text
        return r


class RawResponse:
    """The parts of a requests.Response the checks here use."""

    def __init__(self, method, url, status, headers, content):
        self.status_code = status
        self.headers = CaseInsensitiveDict(headers)
        self.content = content
        self.url = url
        self.request = type("Req", (), {"method": method})()

    @property
    def text(self):
        return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)


class RawConnection(http.client.HTTPConnection):
    """An HTTPConnection whose request line may carry bytes 0x80-0xFF (given as
    the latin-1 characters of a str), as a hostile client could send them."""

    def _encode_request(self, request):
        return request.encode("latin-1")


def raw_request(base, method, target, headers=None, body=None, timeout=TIMEOUT, conn=None):
    """One request with the method and request target sent exactly as given
    (requests/urllib3 would normalise dot segments and %-escapes). Uses conn
    (an http.client.HTTPConnection) when given, else a new connection."""
    u = urllib.parse.urlsplit(base)
    own = conn is None
    if own:
        conn = RawConnection(u.hostname, u.port, timeout=timeout)
    try:
        if isinstance(body, str):
            body = body.encode()
        conn.putrequest(method, target, skip_accept_encoding=True)
        hdrs = dict(headers or {})
        if body is not None:
            hdrs.setdefault("Content-Length", str(len(body)))
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        resp = conn.getresponse()
        content = resp.read()
        return RawResponse(method, base + target, resp.status, resp.getheaders(), content)
    finally:
        if own:
            conn.close()


def assert_no_leak(r, sent=b""):
    """No SQL text, server path or PostgreSQL message in the body, unless the
    client itself sent that text (an id or a field name echoed in a detail)."""
    body = r.content.decode("utf-8", "replace")
    sent_text = sent.decode("utf-8", "replace") if isinstance(sent, bytes) else str(sent)
    for pat in LEAK_PATTERNS:
        m = pat.search(body)
        if m and not pat.search(sent_text):
            raise AssertionError(f"{r.request.method} {r.url} -> {r.status_code}: body leaks "
                                 f"internals ({pat.pattern!r}): {body[:500]!r}")


def assert_wellformed(r):
    """A JSON answer (application/json or application/problem+json) is UTF-8 JSON."""
    ctype = r.headers.get("Content-Type", "").lower()
    if "json" not in ctype:
        return
    try:
        json.loads(r.content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise AssertionError(f"{r.request.method} {r.url} -> {r.status_code}: the {ctype} body is not UTF-8 "
                             f"JSON ({exc}): {r.content[:300]!r}") from None


def assert_problem(r, status, code=None):
    """An RFC 7807 problem of this status (and code)."""
    assert r.status_code == status, f"expected {status} {code}, got {r.status_code}: {r.text[:500]}"
    ctype = r.headers.get("Content-Type", "")
    assert ctype.startswith("application/problem+json"), f"Content-Type {ctype!r}: {r.text[:300]}"
    body = r.json()
    assert isinstance(body, dict), body
    for key in ("type", "title", "status", "code"):
        assert key in body, f"problem without {key}: {body}"
    assert body["type"] == "about:blank", body
    assert body["status"] == status, body
    assert isinstance(body["title"], str) and body["title"], body
    assert re.fullmatch(r"[a-z][a-z0-9_]*", body["code"]), body
    if "detail" in body:
        assert isinstance(body["detail"], str), body
    if code is not None:
        assert body["code"] == code, f"expected code {code}, got {body['code']}: {body}"
    if status == 401:
        assert r.headers.get("WWW-Authenticate") == 'Bearer error="invalid_token"', r.headers
    if status == 503:
        assert re.fullmatch(r"[1-9]\d*", r.headers.get("Retry-After", "")), r.headers
    return body


def assert_json(r, status):
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:500]}"
    ctype = r.headers.get("Content-Type", "")
    assert ctype.lower().replace(" ", "") == "application/json;charset=utf-8", ctype
    return r.json()


def is_ts(v):
    return isinstance(v, str) and RFC3339_UTC_RE.match(v) is not None


def check_recording(rec):
    """The Recording schema of docs/openapi.yaml: required members and their types."""
    required = {"id", "title", "room_id", "owner_id", "status", "created_at", "started_at", "stopped_at",
                "updated_at", "duration_s", "size_bytes", "source", "retention_days", "renditions",
                "thumbnail_url", "stream_url", "jobs"}
    missing = required - set(rec)
    assert not missing, f"recording lacks {missing}: {rec}"
    assert UUID_RE.match(rec["id"]), rec
    for k in ("title", "room_id", "owner_id"):
        assert isinstance(rec[k], str), (k, rec)
    assert rec["status"] in ("pending", "recording", "stopping", "processing", "ready", "failed"), rec
    assert is_ts(rec["created_at"]) and is_ts(rec["updated_at"]), rec
    for k in ("started_at", "stopped_at"):
        assert rec[k] is None or is_ts(rec[k]), (k, rec)
    assert rec["duration_s"] is None or (isinstance(rec["duration_s"], (int, float))
                                         and not isinstance(rec["duration_s"], bool)
                                         and rec["duration_s"] >= 0), rec
    assert isinstance(rec["size_bytes"], int) and not isinstance(rec["size_bytes"], bool), rec
    assert rec["size_bytes"] >= 0, rec
    src = rec["source"]
    assert isinstance(src, dict) and src.get("type") in ("sdp", "url"), rec
    assert set(src) <= {"type", "url"}, f"source has extra members: {src}"
    assert ("url" in src) == (src["type"] == "url"), src
    assert isinstance(rec["retention_days"], int) and 1 <= rec["retention_days"] <= 36500, rec
    assert isinstance(rec["renditions"], list), rec
    for k in ("thumbnail_url", "stream_url"):
        assert rec[k] is None or isinstance(rec[k], str), (k, rec)
    assert isinstance(rec["jobs"], list), rec
    for j in rec["jobs"]:
        assert isinstance(j, dict) and {"id", "kind", "state", "progress"} <= set(j), j
        assert isinstance(j["id"], int) and isinstance(j["kind"], str) and isinstance(j["state"], str), j
        assert isinstance(j["progress"], (int, float)) and 0 <= j["progress"] <= 1, j
    return rec


def poll(check, timeout, interval=0.05, what="condition"):
    """Call check() until it returns a true value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)
