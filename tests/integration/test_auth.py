"""Bearer authentication, through every frontend, on every route of
fcgi/routes.c except GET /health: no token, and every kind of bad token
(expired beyond the 60 s skew, not yet valid, alg none / HS512, another
secret, a tampered payload, missing or bad claims, garbage, a Basic header)
is 401 `unauthorized` with `WWW-Authenticate: Bearer error="invalid_token"`
and a problem body; tokens within the clock skew are accepted. Tokens are
forged here with a small HS256 signer (helpers.sign_jwt) and the stack's
secret. Every answer is also checked for leaked internals (SQL, paths,
"ERROR:"), as in all files of this suite (helpers.Client)."""

import hashlib
import hmac
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from helpers import (API, SDP, Client, assert_json, assert_problem, b64url, claims, make_token, sign_jwt,
                     unique)

ROUTES_C = Path(__file__).resolve().parents[2] / "fcgi" / "routes.c"
ROUTE_ROW = re.compile(r'\{\s*"(GET|POST|PUT|PATCH|DELETE)"\s*,\s*"(/[^"]*)"')

# Bodies for the routes that take one (so that a request that got through
# would succeed); any other POST gets "{}": authentication comes first anyway.
BODIES = {
    ("POST", API + "/recordings/start"): {"title": "t", "room_id": "r", "source": {"type": "sdp", "sdp": SDP}},
    ("POST", API + "/recordings/{id}/participants"): {"user_id": "u1", "event": "join"},
}


def routes():
    """Every route of fcgi/routes.c but GET /health, read from the source so
    that a new route is covered the day it is added: [(method, pattern)]."""
    rows = ROUTE_ROW.findall(ROUTES_C.read_text())
    assert ("GET", API + "/recordings/{id}") in rows, f"cannot read the route table of {ROUTES_C}"
    return [(m, p) for m, p in rows if (m, p) != ("GET", "/health")]


def test_route_table_read():
    got = routes()
    for must in [("POST", API + "/recordings/start"), ("GET", API + "/recordings"),
                 ("GET", API + "/recordings/{id}"), ("DELETE", API + "/recordings/{id}"),
                 ("POST", API + "/recordings/{id}/stop"), ("POST", API + "/recordings/{id}/participants"),
                 ("GET", API + "/recordings/{id}/participants")]:
        assert must in got, must


@pytest.fixture
def rec(stack, base_url):
    """A real recording (so that a request that got through would succeed)."""
    owner = Client(base_url, make_token(stack, unique("owner"), "admin"))
    return owner.start_ok()["id"]


def call_every_route(client, rid, **kw):
    """[(route, response)] for every route, with the client's token."""
    out = []
    for method, pattern in routes():
        path = re.sub(r"\{[a-z_]+\}", lambda m: rid if m.group(0) == "{id}" else "1", pattern)
        body = BODIES.get((method, pattern), {} if method == "POST" else None)
        r = client.request(method, path, json_body=body, **kw)
        out.append((f"{method} {pattern[len(API):]}", r))
    return out


def assert_all_401(results):
    bad = []
    for route, r in results:
        try:
            assert_problem(r, 401, "unauthorized")
        except AssertionError as exc:
            bad.append(f"{route}: {exc}")
    assert not bad, "\n".join(bad)


def test_no_token_every_route(base_url, rec):
    c = Client(base_url, None)
    assert_all_401(call_every_route(c, rec))
    # Also with an id that is not a UUID: authentication comes first.
    assert_all_401(call_every_route(c, "not-a-uuid"))


def bad_tokens(secret):
    """name -> Authorization header value."""
    now = int(time.time())
    ok = {"sub": "u-auth", "role": "admin", "iat": now, "exp": now + 3600}
    good = sign_jwt(ok, secret)
    h, p, s = good.split(".")

    def with_(**kw):
        c = dict(ok)
        for k, v in kw.items():
            if v is ...:
                c.pop(k, None)
            else:
                c[k] = v
        return "Bearer " + sign_jwt(c, secret)

    def hs512(c):
        hh = b64url('{"alg":"HS512","typ":"JWT"}')
        pp = b64url(json.dumps(c))
        sig = hmac.new(secret.encode(), f"{hh}.{pp}".encode(), hashlib.sha512).digest()
        return f"Bearer {hh}.{pp}.{b64url(sig)}"

    none_h = b64url('{"alg":"none","typ":"JWT"}')
    return {
        "expired_61s": with_(exp=now - 61 - 5),
        "expired_1h": with_(exp=now - 3600),
        "expired_exp_0": with_(exp=0),
        "nbf_future_120s": with_(nbf=now + 120),
        "nbf_future_1d": with_(nbf=now + 86400),
        "alg_none_unsigned": f"Bearer {none_h}.{p}.",
        "alg_none_with_sig": f"Bearer {none_h}.{p}.{s}",
        "alg_None_case": "Bearer " + sign_jwt(ok, secret, header={"alg": "None"}),
        "alg_hs512": hs512(ok),
        "alg_rs256_header": "Bearer " + sign_jwt(ok, secret, header={"alg": "RS256", "typ": "JWT"}),
        "no_alg": "Bearer " + sign_jwt(ok, secret, header={"typ": "JWT"}),
        "other_secret": "Bearer " + sign_jwt(ok, "another-secret-0123456789abcdef"),
        "empty_secret": "Bearer " + sign_jwt(ok, ""),
        "tampered_payload": f"Bearer {h}.{b64url(json.dumps(dict(ok, sub='someone-else')))}.{s}",
        "signature_stripped": f"Bearer {h}.{p}.",
        "signature_truncated": f"Bearer {h}.{p}.{s[:-4]}",
        "signature_of_other_token": f"Bearer {h}.{p}.{sign_jwt(dict(ok, exp=now + 7), secret).split('.')[2]}",
        "missing_role": with_(role=...),
        "bad_role": with_(role="superuser"),
        "role_upper_case": with_(role="Admin"),
        "role_not_string": with_(role=["admin"]),
        "missing_sub": with_(sub=...),
        "empty_sub": with_(sub=""),
        "sub_number": with_(sub=42),
        "sub_201_chars": with_(sub="s" * 201),
        "missing_exp": with_(exp=...),
        "exp_string": with_(exp=str(now + 3600)),
        "exp_null": with_(exp=None),
        "nbf_string": with_(nbf="0"),
        "name_not_string": with_(name=17),
        "payload_array": "Bearer " + sign_jwt("[1,2]", secret),
        "payload_not_json": "Bearer " + sign_jwt("not json", secret),
        "header_not_json": f"Bearer {b64url('nope')}.{p}.{s}",
        "garbage": "Bearer abc",
        "garbage_dots": "Bearer a.b.c",
        "only_dots": "Bearer ..",
        "four_segments": f"Bearer {good}.xyz",
        "two_segments": f"Bearer {h}.{p}",
        "padding_and_spaces": f"Bearer {h}=.{p}.{s} trailing",
        "bad_base64": f"Bearer {h}.{p}!.{s}",
        "bearer_empty": "Bearer ",
        "bearer_only": "Bearer",
        "basic": "Basic dXNlcjpwYXNzd29yZA==",
        "token_without_scheme": good,
        "other_scheme": f"Token {good}",
        "garbage_7k": "Bearer " + "x" * 7000,
        "garbage_7k_jwt_shape": "Bearer " + "a" * 3000 + "." + "b" * 3000 + "." + "c" * 1000,
    }


BAD_TOKEN_NAMES = sorted(bad_tokens("x" * 32))


@pytest.mark.parametrize("kind", BAD_TOKEN_NAMES)
def test_bad_token_every_route(stack, base_url, rec, kind):
    header = bad_tokens(stack.jwt_secret)[kind]
    c = Client(base_url, None)
    assert_all_401(call_every_route(c, rec, headers={"Authorization": header}))


def test_reference_token_accepted(stack, base_url, rec):
    """The bad tokens above are bad only in the way their name says: the
    same construction with nothing changed works on every route."""
    tok = sign_jwt(claims("u-auth", "admin"), stack.jwt_secret)
    c = Client(base_url, tok)
    results = {route: r for route, r in call_every_route(c, rec) if route in (
        "POST /recordings/start", "GET /recordings", "GET /recordings/{id}", "DELETE /recordings/{id}",
        "POST /recordings/{id}/stop", "POST /recordings/{id}/participants", "GET /recordings/{id}/participants")}
    assert len(results) == 7
    assert results["POST /recordings/start"].status_code == 201
    assert results["GET /recordings"].status_code == 200
    assert results["GET /recordings/{id}"].status_code == 200
    assert results["DELETE /recordings/{id}"].status_code == 204
    # After the delete, the rest answers 404: authenticated, but the recording is gone.
    for route in ("POST /recordings/{id}/stop", "POST /recordings/{id}/participants",
                  "GET /recordings/{id}/participants"):
        assert_problem(results[route], 404, "recording_not_found")


@pytest.mark.parametrize("kind,extra", [
    ("exp_30s_ago", {"exp": -30}),
    ("exp_55s_ago", {"exp": -55}),
    ("nbf_in_30s", {"nbf": 30}),
    ("nbf_now", {"nbf": 0}),
    ("exp_float", {"exp": 3600.5}),
    ("with_name", {"name": "Ada Lovelace"}),
    ("unknown_claims", {"iss": "someone", "aud": "vtp", "jti": "x"}),
])
def test_token_accepted(stack, base_url, kind, extra):
    """Within the 60 s skew, and with optional or unknown claims, a token is good."""
    now = int(time.time())
    c = claims(unique("u"), "instructor")
    for k, v in extra.items():
        c[k] = now + v if k in ("exp", "nbf") else v
    client = Client(base_url, sign_jwt(c, stack.jwt_secret))
    assert_json(client.get(API + "/recordings?limit=1"), 200)
    rec = assert_json(client.start(), 201)
    assert rec["owner_id"] == c["sub"]


def test_token_from_vtp_token_and_scheme_case(stack, base_url, token):
    tok = token(unique("u"), "student", ttl=120, name="Some Student")
    for scheme in ("Bearer", "bearer", "BEARER"):
        r = Client(base_url, None).get(API + "/recordings?limit=1", headers={"Authorization": f"{scheme} {tok}"})
        assert_json(r, 200)


def test_roles_come_from_the_token(stack, base_url):
    sub = unique("u")
    as_student = Client(base_url, make_token(stack, sub, "student"))
    as_instructor = Client(base_url, make_token(stack, sub, "instructor"))
    assert_problem(as_student.start(), 403, "forbidden")
    rid = as_instructor.start_ok()["id"]
    # Same sub, role student: still the owner (owner_id = sub).
    assert assert_json(as_student.get(f"{API}/recordings/{rid}"), 200)["owner_id"] == sub


def test_large_valid_token_accepted(stack, base_url):
    """~7 KiB of token fits the web servers' header limits and the API's 8 KiB."""
    tok = sign_jwt(claims(unique("u"), "admin", pad="p" * 5000), stack.jwt_secret)
    assert 6500 < len(tok) < 8000
    assert_json(Client(base_url, tok).get(API + "/recordings?limit=1"), 200)


def test_oversized_token_through_frontends(stack, base_url):
    """A 9 KiB token: the web servers cap a header line near 8 KiB and answer 400
    themselves; whoever answers, it is a 4xx and never lets the request in."""
    for tok in ("x" * 9216, sign_jwt(claims("u", "admin", pad="p" * 7000), stack.jwt_secret)):
        r = Client(base_url, None).get(API + "/recordings?limit=1", headers={"Authorization": "Bearer " + tok})
        assert r.status_code in (400, 401, 413, 431, 494), (r.status_code, r.text[:200])
        if r.headers.get("Content-Type", "").startswith("application/problem+json"):
            assert_problem(r, 401, "unauthorized")


@pytest.mark.parametrize("size", [8193, 9216, 64 * 1024])
def test_oversized_token_refused_by_the_api(stack, size):
    """The API's own limit (8 KiB), without a web server in front: vtp-api as a
    one-shot CGI program, with a token that is validly signed but too long."""
    pad = "p" * size
    tok = sign_jwt(claims("u-big", "admin", pad=pad), stack.jwt_secret)
    assert len(tok) > 8192
    env = dict(stack.env, GATEWAY_INTERFACE="CGI/1.1", REQUEST_METHOD="GET", REQUEST_URI=API + "/recordings",
               QUERY_STRING="limit=1", HTTP_AUTHORIZATION="Bearer " + tok, SERVER_PROTOCOL="HTTP/1.1")
    proc = subprocess.run([str(stack.build_dir / "vtp-api")], env=env, input=b"", capture_output=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    head, _, body = proc.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"Status: 401"), proc.stdout[:300]
    assert b'WWW-Authenticate: Bearer error="invalid_token"' in head
    assert b'"code":"unauthorized"' in body
    for leak in (b"ERROR:", b"/tmp/", b"SELECT"):
        assert leak not in body


def test_health_needs_no_token(base_url):
    r = Client(base_url, None).get("/health")
    body = assert_json(r, 200)
    assert body["status"] == "ok" and body["db"] == "ok" and isinstance(body["version"], str)
    # ...and ignores a bad one.
    assert_json(Client(base_url, None).get("/health", headers={"Authorization": "Bearer garbage"}), 200)


def test_time_skew_edge(stack, base_url):
    """exp 120 s ago is refused, 30 s ago accepted: the same route, the same claims otherwise."""
    now = int(time.time())
    sub = unique("u")
    old = Client(base_url, sign_jwt(claims(sub, "admin") | {"exp": now - 120}, stack.jwt_secret))
    recent = Client(base_url, sign_jwt(claims(sub, "admin") | {"exp": now - 30}, stack.jwt_secret))
    assert_problem(old.get(API + "/recordings?limit=1"), 401, "unauthorized")
    assert_json(recent.get(API + "/recordings?limit=1"), 200)
