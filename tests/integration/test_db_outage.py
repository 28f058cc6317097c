"""PostgreSQL outage and recovery, through nginx (the spawn-fcgi vtp-api with
its 4 threads, each with its own connection) and Apache mod_fcgid (separate
vtp-api processes): with the cluster stopped, GET /health answers 503
{"status":"degraded","db":"down"} with Retry-After, and every API route
answers 503 `db_unavailable` problems with Retry-After, each within 5 s (no
hang on a dead connection); authentication still works (401 without a
token). Once the cluster is back, the API recovers by itself -- no restart
-- within 15 s, and the data from before the outage is intact. The cluster
is started again in a finally block, whatever happens. One test, two
frontends only: stopping PostgreSQL is the expensive part.

test_frozen_database_does_not_hang_requests freezes the running cluster
(SIGSTOP to the postmaster and its backends: what a network partition or a
stuck database host looks like to libpq) and checks that requests still
answer 503 within a bound instead of hanging; SIGCONT in a finally block.
nginx only."""

import os
import signal
import time
import uuid

import requests

from helpers import API, SDP, Client, assert_json, assert_problem, make_token, unique

FRONTENDS = ("nginx", "apache_fcgid")
MAX_S = 5.0


def timed(fn, *a, **kw):
    t0 = time.monotonic()
    r = fn(*a, **kw)
    return r, time.monotonic() - t0


def api_calls(client, rid):
    """(name, callable) for every API route with valid input."""
    start = {"title": "t", "room_id": unique("room"), "source": {"type": "sdp", "sdp": SDP}}
    return [
        ("start", lambda: client.post(API + "/recordings/start", start)),
        ("list", lambda: client.get(API + "/recordings?limit=5")),
        ("get", lambda: client.get(f"{API}/recordings/{rid}")),
        ("stop", lambda: client.post(f"{API}/recordings/{rid}/stop")),
        ("post participant", lambda: client.post(f"{API}/recordings/{rid}/participants",
                                                 {"user_id": "u1", "event": "join"})),
        ("list participants", lambda: client.get(f"{API}/recordings/{rid}/participants")),
        ("delete", lambda: client.delete(f"{API}/recordings/{rid}")),
        ("get unknown", lambda: client.get(f"{API}/recordings/{uuid.uuid4()}")),
    ]


def test_db_outage_and_recovery(stack):
    admin_sub = unique("admin")
    clients = {fe: Client(stack.frontends[fe], make_token(stack, admin_sub, "admin")) for fe in FRONTENDS}
    # Before: a recording per frontend, and every thread/process has used its connection.
    rids = {}
    for fe, c in clients.items():
        rids[fe] = c.start_ok()["id"]
        c.event_ok(rids[fe], "before", "join")
        for _ in range(12):
            assert_json(c.get(API + "/recordings?limit=1"), 200)

    stack.pg_stop()
    try:
        for fe, c in clients.items():
            # Several rounds: requests land on different threads/processes,
            # each of which must notice its dead connection.
            for round_ in range(3):
                r, took = timed(c.get, "/health")
                assert took < MAX_S, f"{fe} /health took {took:.1f}s"
                assert r.status_code == 503, (fe, r.status_code, r.text)
                assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
                body = r.json()
                assert body["status"] == "degraded" and body["db"] == "down", body
                assert isinstance(body.get("version"), str), body
                assert r.headers.get("Retry-After", "").isdigit() and int(r.headers["Retry-After"]) >= 1, r.headers
                for name, call in api_calls(c, rids[fe]):
                    r, took = timed(call)
                    assert took < MAX_S, f"{fe} {name} took {took:.1f}s during the outage"
                    try:  # (Client also checks that no libpq message or socket path leaks)
                        assert_problem(r, 503, "db_unavailable")
                    except AssertionError as exc:
                        raise AssertionError(f"{fe} round {round_} {name}: {exc}") from None
            # Authentication needs no database.
            r, took = timed(Client(stack.frontends[fe], None).get, API + "/recordings")
            assert took < MAX_S
            assert_problem(r, 401, "unauthorized")
    finally:
        stack.pg_start()

    # Recovery by itself: poll until the list answers 200 again.
    for fe, c in clients.items():
        deadline = time.monotonic() + 15
        while True:
            try:
                r = c.get(API + "/recordings?limit=1")
                if r.status_code == 200:
                    break
                last = f"{r.status_code} {r.text[:200]}"
            except requests.RequestException as exc:
                last = repr(exc)
            assert time.monotonic() < deadline, f"{fe}: no recovery within 15 s; last answer {last}"
            time.sleep(0.2)
        # Then every request works, whichever thread/process takes it.
        for i in range(20):
            assert_json(c.get(API + "/recordings?limit=1"), 200)
        assert assert_json(c.get("/health"), 200)["db"] == "ok"
        # The data from before the outage is intact, and writes work.
        rec = assert_json(c.get(f"{API}/recordings/{rids[fe]}"), 200)
        assert rec["status"] == "pending", "nothing was changed by the refused requests"
        parts = assert_json(c.get(f"{API}/recordings/{rids[fe]}/participants"), 200)["items"]
        assert [p["user_id"] for p in parts] == ["before"]
        assert c.start().status_code == 201
        assert assert_json(c.post(f"{API}/recordings/{rids[fe]}/stop"), 202)["status"] == "stopping"


def _children(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(entry))
        except (OSError, IndexError, ValueError):
            pass
    return kids


# The API's own budget: connect timeout 3 s, statement timeout 5 s (defaults
# of lib/config.c); a request may use one of them, plus slack.
FROZEN_MAX_S = 8.0


def test_frozen_database_does_not_hang_requests(stack):
    base = stack.frontends["nginx"]
    c = Client(base, make_token(stack, unique("admin"), "admin"))
    rid = c.start_ok()["id"]
    for _ in range(12):  # every API thread has a live connection
        assert_json(c.get(API + "/recordings?limit=1"), 200)
    with open(stack.pgdata / "postmaster.pid") as f:
        postmaster = int(f.readline())
    frozen = [postmaster] + _children(postmaster)
    assert len(frozen) > 3, frozen
    results = []
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        for path in ("/health", API + "/recordings?limit=1", f"{API}/recordings/{rid}"):
            t0 = time.monotonic()
            try:
                r = requests.get(base + path, headers={"Authorization": "Bearer " + c.tok}, timeout=FROZEN_MAX_S)
                results.append((path, round(time.monotonic() - t0, 1), r.status_code, r.text[:200]))
            except requests.Timeout:
                results.append((path, round(time.monotonic() - t0, 1), "no answer", ""))
                break  # each hung request pins an API thread: stop here
    finally:
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    for path, took, status, text in results:
        assert status == 503, f"{path}: {status} after {took}s with the database frozen {results}"
        assert took < FROZEN_MAX_S, results
    # Thawed: everything works again (the hung requests, if any, finish now).
    deadline = time.monotonic() + 15
    while c.get(API + "/recordings?limit=1").status_code != 200:
        assert time.monotonic() < deadline, "no recovery after SIGCONT"
        time.sleep(0.2)
    assert assert_json(c.get(f"{API}/recordings/{rid}"), 200)["id"] == rid


# The API's budget for one request with PostgreSQL gone: connect timeout 3 s
# or statement timeout 5 s (lib/config.c defaults), plus slack for a loaded
# machine. No request may take longer, before, during or after the outage.
LOAD_MAX_S = 8.0
OUTAGE_S = 10.0
LOAD_THREADS = 6


def test_ten_second_outage_under_load(stack, db):
    """Six client threads hammer GET /recordings/{id} and POST .../progress
    through nginx while PostgreSQL is down for 10 s: before the stop every
    answer is a success; between the stop and the restart only 503 problems
    with Retry-After; no request takes longer than the API's database budget;
    and once the cluster is back every thread sees successes again within
    15 s, with nothing restarted but PostgreSQL."""
    import threading

    base = stack.frontends["nginx"]
    tok = make_token(stack, unique("inst"), "instructor")
    rid = Client(base, tok).start_ok()["id"]
    with db.cursor() as cur:  # progress positions are checked against the duration
        cur.execute("UPDATE recordings SET duration_s = 3600, status = 'ready' WHERE id = %s", (rid,))
    api_pid = stack.api_proc.pid
    db.close()  # our own connection must not hold the stop up

    marks = {}  # "stopped" and "starting": monotonic times seen by the main thread
    results = []  # (thread, t_sent, t_answered, what, status, retry_after, problem code)
    lock = threading.Lock()
    stop_load = threading.Event()

    def hammer(n):
        session = requests.Session()
        hdr = {"Authorization": "Bearer " + tok}
        i = 0
        while not stop_load.is_set():
            i += 1
            t0 = time.monotonic()
            if i % 2:
                what = "get"
                call = lambda: session.get(f"{base}{API}/recordings/{rid}", headers=hdr, timeout=LOAD_MAX_S + 5)
            else:
                what = "progress"
                body = {"session_id": f"load-{n}-{i}-{uuid.uuid4().hex[:8]}", "event": "heartbeat",
                        "position_s": 10.0, "from_s": 0.0, "to_s": 10.0}
                call = lambda: session.post(f"{base}{API}/recordings/{rid}/progress", json=body, headers=hdr,
                                            timeout=LOAD_MAX_S + 5)
            try:
                r = call()
                status, retry = r.status_code, r.headers.get("Retry-After")
                code = r.json().get("code") if r.headers.get("Content-Type", "").startswith(
                    "application/problem+json") else None
            except requests.RequestException as exc:
                status, retry, code = f"no answer: {exc!r}", None, None
            with lock:
                results.append((n, t0, time.monotonic(), what, status, retry, code))

    threads = [threading.Thread(target=hammer, args=(n,), daemon=True) for n in range(LOAD_THREADS)]
    for t in threads:
        t.start()
    try:
        # Load before the outage: wait for a good number of successes.
        _wait_for(lambda: sum(1 for r in results if r[4] in (200, 204)) >= 60, 60, "successes before the outage")
        marks["stopping"] = time.monotonic()
        stack.pg_stop()
        marks["stopped"] = time.monotonic()
        # Wait 10 s of outage under load (the clock is the point here).
        time.sleep(OUTAGE_S)
        marks["starting"] = time.monotonic()
        stack.pg_start()
        marks["started"] = time.monotonic()
        # Recovery: every thread gets a success after the restart.
        _wait_for(lambda: all(any(r[0] == n and r[1] > marks["started"] and r[4] in (200, 204) for r in results)
                              for n in range(LOAD_THREADS)), 15, "every client thread to see a success again")
        recovered = time.monotonic()
        _wait_for(lambda: sum(1 for r in results if r[1] > recovered) >= 60, 60, "load after the recovery")
    finally:
        stop_load.set()
        for t in threads:
            t.join(timeout=LOAD_MAX_S + 10)
        if not (stack.pgdata / "postmaster.pid").exists():
            stack.pg_start()

    assert not any(t.is_alive() for t in threads), "a client thread is stuck in a request"
    before = [r for r in results if r[2] < marks["stopping"]]
    during = [r for r in results if r[1] > marks["stopped"] and r[2] < marks["starting"]]
    after = [r for r in results if r[1] > recovered]
    slow = [r for r in results if r[2] - r[1] > LOAD_MAX_S]
    assert not slow, f"{len(slow)} requests took longer than {LOAD_MAX_S} s: {slow[:5]}"
    assert not [r for r in results if not isinstance(r[4], int)], "a request got no answer"
    assert len(before) >= 60 and all(r[4] in (200, 204) for r in before), \
        [r for r in before if r[4] not in (200, 204)][:5]
    # The outage was under load: both kinds of request, from every thread.
    assert len(during) >= 5 * LOAD_THREADS, f"only {len(during)} requests during the 10 s outage"
    assert {r[3] for r in during} == {"get", "progress"} and {r[0] for r in during} == set(range(LOAD_THREADS))
    bad = [r for r in during if not (r[4] == 503 and r[6] == "db_unavailable" and (r[5] or "").isdigit()
                                     and int(r[5]) >= 1)]
    assert not bad, f"{len(bad)} of {len(during)} answers during the outage were not 503 + Retry-After: {bad[:5]}"
    assert len(after) >= 60 and all(r[4] in (200, 204) for r in after), \
        [r for r in after if r[4] not in (200, 204)][:5]
    # Nothing was restarted: the same vtp-api process answered throughout.
    assert stack.api_proc.pid == api_pid and stack.api_proc.poll() is None
    print(f"outage under load: {len(before)} before, {len(during)} during (all 503), {len(after)} after; "
          f"slowest {max(r[2] - r[1] for r in results):.2f} s; recovery "
          f"{recovered - marks['started']:.2f} s after the restart")


def _wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)
