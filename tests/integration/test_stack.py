"""The integration harness itself: every frontend reaches vtp-api with the
route, the query string and the Bearer header; nginx serves the static UI."""

import time

import requests


def test_health_ok(base_url):
    r = requests.get(base_url + "/health", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["status"] == "ok"


def test_invalid_bearer_token_is_401_problem(base_url):
    r = requests.get(base_url + "/api/v1/recordings?limit=1",
                     headers={"Authorization": "Bearer x"}, timeout=10)
    assert r.status_code == 401, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == 401
    assert "Bearer" in r.headers.get("WWW-Authenticate", "")


def test_valid_token_reaches_the_app(base_url, token):
    r = requests.get(base_url + "/api/v1/recordings?limit=1",
                     headers={"Authorization": "Bearer " + token("harness-admin", "admin")},
                     timeout=10)
    assert r.status_code == 200, r.text
    assert "items" in r.json()


def test_head_is_answered_like_get_without_a_body(base_url, token):
    """Load balancers probe with HEAD: it gets GET's status and headers, no body."""
    got = requests.get(base_url + "/health", timeout=10)
    r = requests.head(base_url + "/health", timeout=10)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["Content-Type"] == got.headers["Content-Type"]
    auth = {"Authorization": "Bearer " + token("harness-admin", "admin")}
    r = requests.head(base_url + "/api/v1/recordings?limit=1", headers=auth, timeout=10)
    assert r.status_code == 200 and r.content == b""
    r = requests.head(base_url + "/api/v1/recordings?limit=1", timeout=10)
    assert r.status_code == 401
    r = requests.put(base_url + "/health", timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"


def test_nginx_serves_static_ui(stack):
    r = requests.get(stack.frontends["nginx"] + "/", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert "<title>VTP</title>" in r.text


def test_fcgid_hides_settings_file(stack):
    r = requests.get(stack.frontends["apache_fcgid"] + "/vtp.conf", timeout=10)
    assert r.status_code == 403
    assert "jwt_secret" not in r.text


def test_db_fixture(db):
    with db.cursor() as cur:
        cur.execute("SELECT current_database()")
        assert cur.fetchone()[0] == "vtp"


def test_health_503_when_database_down(stack):
    url = stack.frontends["nginx"] + "/health"
    stack.pg_stop()
    try:
        r = requests.get(url, timeout=30)
        assert r.status_code == 503, r.text
        assert r.json().get("db") == "down"
    finally:
        stack.pg_start()
    # ...and recovers once PostgreSQL is back (the app reconnects).
    deadline = time.monotonic() + 15
    while True:
        r = requests.get(url, timeout=30)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text
