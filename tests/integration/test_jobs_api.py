"""The jobs API through every frontend (nginx, Apache mod_proxy_fcgi, Apache
mod_fcgid): GET /jobs (filters, keyset paging, who sees what, 400s), GET
/jobs/{job_id} (shape, 404 that does not leak, invalid_job_id), POST
/jobs/{job_id}/cancel (a queued job at once, a running one asked to stop with
a NOTIFY to its worker, 409 when finished) and POST /jobs/{job_id}/retry
(failed or cancelled only, attempts never go back, workers woken, 409
otherwise), and the roles: admins act on every job, the owner of a recording
may read its jobs only (403 on cancel/retry), anyone else gets 404.

Recordings are made through the API; jobs in every state are inserted into
the jobs table with the `db` fixture, as a worker (or an admin) would leave
them. No worker runs here, and every job a test leaves queued or running is
cancelled at its end."""

import select
import time
import uuid

import psycopg2
import pytest

from helpers import API, Client, assert_json, assert_problem, is_ts, make_token, unique

JOB_KEYS = {"id", "kind", "queue", "recording_id", "state", "priority", "attempts", "max_attempts", "progress",
            "run_at", "started_at", "finished_at", "cancel_requested_at", "last_error", "worker", "created_at",
            "updated_at"}
STATES = ("queued", "running", "succeeded", "failed", "cancelled")


def check_job(job):
    """The Job schema of docs/openapi.yaml: exactly these members, of these types."""
    assert set(job) == JOB_KEYS, f"job members differ: {set(job) ^ JOB_KEYS}"
    assert isinstance(job["id"], int) and not isinstance(job["id"], bool) and job["id"] > 0, job
    assert isinstance(job["kind"], str) and isinstance(job["queue"], str), job
    assert job["recording_id"] is None or isinstance(job["recording_id"], str), job
    assert job["state"] in STATES, job
    for k in ("priority", "attempts", "max_attempts"):
        assert isinstance(job[k], int) and not isinstance(job[k], bool), (k, job)
    assert 0 <= job["attempts"] <= job["max_attempts"], job
    assert isinstance(job["progress"], (int, float)) and 0 <= job["progress"] <= 1, job
    assert is_ts(job["run_at"]) and is_ts(job["created_at"]) and is_ts(job["updated_at"]), job
    for k in ("started_at", "finished_at", "cancel_requested_at"):
        assert job[k] is None or is_ts(job[k]), (k, job)
    assert (job["finished_at"] is not None) == (job["state"] in ("succeeded", "failed", "cancelled")), job
    for k in ("last_error", "worker"):
        assert job[k] is None or isinstance(job[k], str), (k, job)
    return job


class Env:
    """Users of one test (two instructors, an admin, a student) and a job factory."""

    def __init__(self, stack, base_url, db):
        self.stack, self.db = stack, db
        self.a_sub, self.b_sub, self.admin_sub, self.s_sub = (unique("instA"), unique("instB"), unique("admin"),
                                                              unique("stud"))
        self.a = Client(base_url, make_token(stack, self.a_sub, "instructor"))
        self.b = Client(base_url, make_token(stack, self.b_sub, "instructor"))
        self.admin = Client(base_url, make_token(stack, self.admin_sub, "admin"))
        self.s = Client(base_url, make_token(stack, self.s_sub, "student"))
        self.anon = Client(base_url, None)
        self.job_ids = []
        self.listeners = []

    def q(self, sql, args=()):
        with self.db.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else None

    def recording(self, client=None):
        """A recording started through the API (it comes with its queued record job)."""
        rec = (client or self.a).start_ok()
        self.job_ids += [r[0] for r in self.q("SELECT id FROM jobs WHERE recording_id = %s", (rec["id"],))]
        return rec["id"]

    def job(self, recording_id=None, kind="probe", state="queued", **cols):
        """Insert a job as a worker would have left it; *_at values are
        intervals relative to now() ("-5 seconds"). Queued jobs are scheduled
        an hour ahead unless run_at is given, so nothing would run them."""
        row = {"kind": kind, "state": state, "recording_id": recording_id}
        if state == "queued":
            cols.setdefault("run_at", "1 hour")
        if state == "running":
            row.update(worker="host-1:4242", attempts=1)
            cols.setdefault("lease_expires_at", "1 minute")
            cols.setdefault("heartbeat_at", "-1 second")
            cols.setdefault("started_at", "-1 minute")
        if state in ("succeeded", "failed", "cancelled"):
            row.update(attempts=1)
            cols.setdefault("finished_at", "0 seconds")
            cols.setdefault("started_at", "-1 minute")
        row.update(cols)
        names = list(row)
        values = ["clock_timestamp() + %s::interval" if k.endswith("_at") and row[k] is not None else "%s"
                  for k in names]
        (job_id,), = self.q(f"INSERT INTO jobs ({', '.join(names)}) VALUES ({', '.join(values)}) RETURNING id",
                            [row[k] for k in names])
        self.job_ids.append(job_id)
        return job_id

    def db_job(self, job_id, *cols):
        rows = self.q(f"SELECT {', '.join(cols)} FROM jobs WHERE id = %s", (job_id,))
        return rows[0] if len(cols) > 1 else rows[0][0]

    def listen(self, channel):
        conn = psycopg2.connect(self.stack.database_url)
        conn.autocommit = True
        conn.cursor().execute(f"LISTEN {channel}")
        self.listeners.append(conn)
        return conn

    def cleanup(self):
        if self.job_ids:
            self.q("UPDATE jobs SET state = 'cancelled', finished_at = now(), cancel_requested_at = NULL,"
                   " updated_at = now() WHERE id = ANY(%s) AND state IN ('queued', 'running')", (self.job_ids,))
        for conn in self.listeners:
            conn.close()


@pytest.fixture
def env(stack, base_url, db):
    e = Env(stack, base_url, db)
    try:
        yield e
    finally:
        e.cleanup()


def wait_notify(conn, channel, predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        conn.poll()
        while conn.notifies:
            n = conn.notifies.pop(0)
            seen.append((n.channel, n.payload))
            if n.channel == channel and predicate(n.payload):
                return n.payload
        select.select([conn], [], [], max(0.0, deadline - time.monotonic()))
    raise AssertionError(f"no NOTIFY {channel} within {timeout}s (got {seen})")


def get_job(client, job_id):
    return client.get(f"{API}/jobs/{job_id}")


def cancel(client, job_id):
    return client.post(f"{API}/jobs/{job_id}/cancel")


def retry(client, job_id):
    return client.post(f"{API}/jobs/{job_id}/retry")


def list_jobs(client, **params):
    return client.get(f"{API}/jobs", params=params)


def list_all(client, limit=100, **params):
    items, cursor = [], None
    for _ in range(1000):
        p = dict(params, limit=limit)
        if cursor:
            p["cursor"] = cursor
        page = assert_json(list_jobs(client, **p), 200)
        assert set(page) == {"items", "next_cursor"}, page
        items += [check_job(j) for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the list did not end after 1000 pages")


def ids(items):
    return [j["id"] for j in items]


# ======================================================================= get
def test_get_job_answers_every_member(env):
    rid = env.recording()
    jid = env.job(rid, kind="probe", state="failed", attempts=2, max_attempts=3, priority=20, progress=0.5,
                  last_error="no video stream in the file", worker="host-1:4242", run_at="-2 minutes",
                  started_at="-90 seconds", finished_at="-1 minute")
    job = check_job(assert_json(get_job(env.admin, jid), 200))
    assert job["id"] == jid and job["recording_id"] == rid
    assert (job["kind"], job["queue"], job["state"]) == ("probe", "light", "failed")
    assert (job["priority"], job["attempts"], job["max_attempts"], job["progress"]) == (20, 2, 3, 0.5)
    assert job["last_error"] == "no video stream in the file" and job["worker"] == "host-1:4242"
    assert job["run_at"] < job["started_at"] < job["finished_at"], job
    assert job["cancel_requested_at"] is None
    expected = env.q("SELECT vtp_rfc3339(run_at), vtp_rfc3339(started_at), vtp_rfc3339(finished_at),"
                     " vtp_rfc3339(created_at) FROM jobs WHERE id = %s", (jid,))[0]
    assert (job["run_at"], job["started_at"], job["finished_at"], job["created_at"]) == expected
    # The owner of the recording reads the same object.
    assert assert_json(get_job(env.a, jid), 200) == job


def test_get_queued_and_running_jobs(env):
    rid = env.recording()
    queued = check_job(assert_json(get_job(env.a, env.job(rid, kind="transcode")), 200))
    assert (queued["state"], queued["queue"], queued["attempts"], queued["worker"]) == ("queued", "heavy", 0, None)
    assert queued["started_at"] is None and queued["finished_at"] is None and queued["last_error"] is None
    running = check_job(assert_json(get_job(env.a, env.job(rid, kind="thumbnail", state="running",
                                                            progress=0.25)), 200))
    assert (running["state"], running["worker"], running["progress"]) == ("running", "host-1:4242", 0.25)


def test_get_who_may_read(env):
    rid = env.recording()
    jid = env.job(rid)
    assert assert_json(get_job(env.admin, jid), 200)["id"] == jid
    assert assert_json(get_job(env.a, jid), 200)["id"] == jid
    # Another instructor and a student: the job does not exist for them.
    for other in (env.b, env.s):
        p = assert_problem(get_job(other, jid), 404, "job_not_found")
        assert str(jid) in p["detail"]
    # A participant may read the recording, not its jobs (API.md: owner only).
    r = env.a.event(rid, env.s_sub, "join")
    assert r.status_code == 204, r.text
    assert assert_json(env.s.get(f"{API}/recordings/{rid}"), 200)["id"] == rid
    assert_problem(get_job(env.s, jid), 404, "job_not_found")
    # Jobs of no recording are for admins only.
    lone = env.job(None, kind="retention")
    assert assert_json(get_job(env.admin, lone), 200)["recording_id"] is None
    for other in (env.a, env.b, env.s):
        assert_problem(get_job(other, lone), 404, "job_not_found")


def test_get_unknown_job_is_404_and_same_as_hidden(env):
    (top,), = env.q("SELECT coalesce(max(id), 0) + 1000000 FROM jobs")
    for client in (env.admin, env.a):
        p = assert_problem(get_job(client, top), 404, "job_not_found")
        assert p["detail"] == f"no job {top}"
    hidden = env.job(env.recording(env.b))
    assert assert_problem(get_job(env.a, hidden), 404, "job_not_found")["detail"] == f"no job {hidden}"


@pytest.mark.parametrize("bad", ["abc", "0", "-1", "01", "1.5", "1e3", "0x10", "1a",
                                 "1234567890123456789", "99999999999999999999999"])
def test_invalid_job_id_is_400(env, bad):
    for method, suffix in (("GET", ""), ("POST", "/cancel"), ("POST", "/retry")):
        assert_problem(env.admin.request(method, f"{API}/jobs/{bad}{suffix}", raw=True), 400, "invalid_job_id")


def test_largest_job_id_is_404_not_an_error(env):
    assert_problem(get_job(env.admin, "9" * 18), 404, "job_not_found")
    assert_problem(cancel(env.admin, "9" * 18), 404, "job_not_found")


def test_unauthenticated_is_401(env):
    jid = env.job(None, kind="noop")
    for r in (list_jobs(env.anon), get_job(env.anon, jid), cancel(env.anon, jid), retry(env.anon, jid)):
        assert_problem(r, 401, "unauthorized")
    assert env.db_job(jid, "state") == "queued"


def test_wrong_method_is_405(env):
    jid = env.job(None, kind="noop")
    r = env.admin.delete(f"{API}/jobs/{jid}")
    assert_problem(r, 405, "method_not_allowed")
    assert r.headers.get("Allow") == "GET, HEAD"
    r = env.admin.get(f"{API}/jobs/{jid}/cancel")
    assert_problem(r, 405, "method_not_allowed")
    assert r.headers.get("Allow") == "POST"
    assert_problem(env.admin.post(f"{API}/jobs"), 405, "method_not_allowed")


# ====================================================================== list
def test_list_jobs_of_a_recording_newest_first(env):
    rid = env.recording()
    (record_job,), = env.q("SELECT id FROM jobs WHERE recording_id = %s", (rid,))
    made = [env.job(rid, "probe", "succeeded"), env.job(rid, "thumbnail", "failed"), env.job(rid, "transcode")]
    page = assert_json(list_jobs(env.admin, recording_id=rid), 200)
    assert page["next_cursor"] is None
    items = [check_job(j) for j in page["items"]]
    assert ids(items) == sorted(made + [record_job], reverse=True)
    assert [j["kind"] for j in items] == ["transcode", "thumbnail", "probe", "record"]
    assert all(j["recording_id"] == rid for j in items)
    # The owner sees the same page; nobody else sees anything of it.
    assert assert_json(list_jobs(env.a, recording_id=rid), 200) == page
    for other in (env.b, env.s):
        assert assert_json(list_jobs(other, recording_id=rid), 200) == {"items": [], "next_cursor": None}


def test_list_filters(env):
    rid = env.recording()
    other = env.recording()
    f1 = env.job(rid, "probe", "failed")
    f2 = env.job(rid, "thumbnail", "failed")
    s1 = env.job(rid, "probe", "succeeded")
    q1 = env.job(rid, "probe")
    elsewhere = env.job(other, "probe", "failed")

    def got(**params):
        return ids(list_all(env.admin, recording_id=rid, **params))

    assert got(state="failed") == [f2, f1]
    assert got(kind="probe") == [q1, s1, f1]
    assert got(kind="probe", state="failed") == [f1]
    assert got(state="running") == []
    assert got(kind="nosuchkind") == [], "a well-formed kind without jobs is an empty list"
    # Empty values are no filter, as in GET /recordings.
    assert got(state="", kind="") == got()
    # Without recording_id the filters apply to every job the caller may see.
    failed_probes = list_all(env.admin, state="failed", kind="probe")
    assert {f1, elsewhere} <= set(ids(failed_probes))
    assert all((j["state"], j["kind"]) == ("failed", "probe") for j in failed_probes)
    assert ids(list_all(env.a, state="failed", kind="probe")) == [elsewhere, f1]


def test_list_paging_is_keyset_by_id_and_stable(env):
    rid = env.recording()
    for i in range(7):
        env.job(rid, "probe", "succeeded")
    everything = ids(list_all(env.admin, recording_id=rid))
    assert len(everything) == 8 and everything == sorted(everything, reverse=True)

    pages, cursor = [], None
    for n in range(4):
        params = {"recording_id": rid, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = assert_json(list_jobs(env.admin, **params), 200)
        pages.append(ids(page["items"]))
        cursor = page["next_cursor"]
        if n == 0:
            # A job added while paging is newer than the cursor: it never
            # shows up on a later page, and nothing is repeated or skipped.
            env.job(rid, "thumbnail")
        if cursor is None:
            break
        assert isinstance(cursor, str) and cursor.startswith(f"{page['items'][-1]['id']}.")
    assert [len(p) for p in pages] == [3, 3, 2]
    assert sum(pages, []) == everything


def test_list_default_limit_is_20(env):
    rid = env.recording()
    for _ in range(21):
        env.job(rid, "noop", "succeeded")
    page = assert_json(list_jobs(env.admin, recording_id=rid), 200)
    assert len(page["items"]) == 20 and page["next_cursor"]
    rest = assert_json(list_jobs(env.admin, recording_id=rid, cursor=page["next_cursor"]), 200)
    assert len(rest["items"]) == 2 and rest["next_cursor"] is None
    full = assert_json(list_jobs(env.admin, recording_id=rid, limit=22), 200)
    assert len(full["items"]) == 22 and full["next_cursor"] is None
    one = assert_json(list_jobs(env.admin, recording_id=rid, limit=1), 200)
    assert ids(one["items"]) == ids(page["items"])[:1] and one["next_cursor"]


def test_list_without_filters_by_role(env):
    mine = env.recording(env.a)
    theirs = env.recording(env.b)
    my_jobs = {env.job(mine, "probe"), env.job(mine, "probe", "failed")} | {
        j for (j,) in env.q("SELECT id FROM jobs WHERE recording_id = %s", (mine,))}
    lone = env.job(None, "retention")
    # The owner sees exactly the jobs of their own recordings.
    assert set(ids(list_all(env.a))) == my_jobs
    assert {j["recording_id"] for j in list_all(env.b)} == {theirs}
    # A user with no recording: an empty list, not an error.
    assert assert_json(list_jobs(env.s), 200) == {"items": [], "next_cursor": None}
    # The admin sees every job, the newest first.
    first = assert_json(list_jobs(env.admin, limit=100), 200)["items"]
    assert lone in ids(first) and ids(first) == sorted(ids(first), reverse=True)
    assert my_jobs <= set(ids(first))


def test_jobs_of_a_deleted_recording_are_for_admins_only(env):
    rid = env.recording()
    probe = env.job(rid, "probe", "succeeded")
    r = env.a.delete(f"{API}/recordings/{rid}")
    assert r.status_code == 204, r.text
    env.job_ids += [j for (j,) in env.q("SELECT id FROM jobs WHERE recording_id = %s", (rid,))]
    assert assert_json(list_jobs(env.a, recording_id=rid), 200) == {"items": [], "next_cursor": None}
    assert_problem(get_job(env.a, probe), 404, "job_not_found")
    admin_view = list_all(env.admin, recording_id=rid)
    assert [j["kind"] for j in admin_view] == ["purge", "probe", "record"]
    assert admin_view[2]["state"] == "cancelled" and admin_view[2]["last_error"] == "recording deleted"


@pytest.mark.parametrize("query", [
    "foo=1", "limit=10&limit=20", "state=queued&state=failed", "page=2", "recording=x",
    "limit=0", "limit=101", "limit=-1", "limit=abc", "limit=1.5", "limit=%20", "limit=99999999999999999999",
    "state=bogus", "state=QUEUED", "state=done",
    "kind=Probe", "kind=pro-be", "kind=%2e%2e", "kind=" + "a" * 40,
    "recording_id=not-a-uuid", "recording_id=5D0C9F2E-8A1B-4C3D-9E7F-0A1B2C3D4E5F", "recording_id=12",
    "state=%FF", "kind=%C3", "recording_id=%E2%82",
])
def test_list_bad_query_is_400(env, query):
    assert_problem(env.admin.get(f"{API}/jobs?{query}", raw=True), 400, "invalid_query")


@pytest.mark.parametrize("cursor", ["abc", "0", "-1", "01", "1.5", "1e3", " 1", "1234567890123456789",
                                    "5d0c9f2e-8a1b-4c3d-9e7f-0a1b2c3d4e5f", "1.", ".", "0.00000000"])
def test_list_bad_cursor_is_400(env, cursor):
    assert_problem(list_jobs(env.admin, cursor=cursor), 400, "invalid_cursor")


def test_list_edited_or_truncated_cursor_is_invalid_cursor(env):
    """errors.md: invalid_cursor = "not produced by this server (e.g. edited or truncated)"."""
    rid = env.recording()
    for _ in range(3):
        env.job(rid, "noop", "succeeded")
    cursor = assert_json(list_jobs(env.admin, recording_id=rid, limit=1), 200)["next_cursor"]
    job_id, _, check = cursor.partition(".")
    assert job_id.isdigit() and check, cursor
    edited_id = str(int(job_id) - 1) + "." + check
    edited_check = job_id + "." + check[:-1] + ("0" if check[-1] != "0" else "1")
    for bad in (edited_id, edited_check, cursor[:-1], cursor + "0", job_id, cursor.upper()):
        if bad != cursor:
            assert_problem(list_jobs(env.admin, recording_id=rid, limit=1, cursor=bad), 400, "invalid_cursor")
    assert len(assert_json(list_jobs(env.admin, recording_id=rid, limit=1, cursor=cursor), 200)["items"]) == 1


# ==================================================================== cancel
def test_cancel_queued_job_is_cancelled_at_once(env):
    rid = env.recording()
    jid = env.job(rid, "transcode")
    job = check_job(assert_json(cancel(env.admin, jid), 202))
    assert job["id"] == jid and job["state"] == "cancelled"
    assert is_ts(job["finished_at"]) and is_ts(job["cancel_requested_at"])
    assert env.db_job(jid, "state", "finished_at IS NOT NULL") == ("cancelled", True)
    assert assert_json(get_job(env.admin, jid), 200) == job
    # The recording shows it too.
    rec = assert_json(env.a.get(f"{API}/recordings/{rid}"), 200)
    assert {"id": jid, "kind": "transcode", "state": "cancelled", "progress": 0} in rec["jobs"]
    # Finished now: a second cancel is a conflict.
    p = assert_problem(cancel(env.admin, jid), 409, "job_not_cancellable")
    assert "cancelled" in p["detail"]


def test_cancel_running_job_asks_its_worker(env):
    jid = env.job(env.recording(), "transcode", "running", progress=0.3)
    listener = env.listen("vtp_cancel")
    job = check_job(assert_json(cancel(env.admin, jid), 202))
    assert job["state"] == "running" and is_ts(job["cancel_requested_at"]) and job["finished_at"] is None
    assert wait_notify(listener, "vtp_cancel", lambda p: str(jid) in p.split(","))
    asked = env.db_job(jid, "cancel_requested_at")
    # Asking again while it stops is fine and keeps the first request's time.
    again = check_job(assert_json(cancel(env.admin, jid), 202))
    assert again["state"] == "running" and again["cancel_requested_at"] == job["cancel_requested_at"]
    assert env.db_job(jid, "cancel_requested_at") == asked


@pytest.mark.parametrize("state", ["succeeded", "failed", "cancelled"])
def test_cancel_finished_job_is_409(env, state):
    jid = env.job(env.recording(), "probe", state)
    before = env.db_job(jid, "state", "updated_at", "finished_at")
    p = assert_problem(cancel(env.admin, jid), 409, "job_not_cancellable")
    assert state in p["detail"]
    assert env.db_job(jid, "state", "updated_at", "finished_at") == before


# ===================================================================== retry
def test_retry_failed_job_queues_it_again(env):
    jid = env.job(env.recording(), "probe", "failed", attempts=3, max_attempts=3, progress=0.7,
                  last_error="invalid data found when processing input")
    listener = env.listen("vtp_jobs")
    job = check_job(assert_json(retry(env.admin, jid), 202))
    assert job["state"] == "queued" and job["queue"] == "light"
    # attempts never go back (a worker's lease is fenced by it); three more are allowed.
    assert (job["attempts"], job["max_attempts"]) == (3, 6)
    assert job["last_error"] is None and job["finished_at"] is None and job["worker"] is None
    assert job["progress"] == 0 and job["cancel_requested_at"] is None
    assert env.db_job(jid, "state", "run_at <= now()") == ("queued", True)
    assert wait_notify(listener, "vtp_jobs", lambda p: "light" in p.split(","))
    p = assert_problem(retry(env.admin, jid), 409, "job_not_retryable")
    assert "queued" in p["detail"]


def test_retry_cancelled_job(env):
    jid = env.job(env.recording(), "thumbnail", "cancelled", cancel_requested_at="-1 minute")
    job = check_job(assert_json(retry(env.admin, jid), 202))
    assert job["state"] == "queued" and job["cancel_requested_at"] is None and job["attempts"] == 1


def test_retry_job_of_no_recording(env):
    jid = env.job(None, "retention", "failed")
    assert assert_json(retry(env.admin, jid), 202)["state"] == "queued"


@pytest.mark.parametrize("state", ["queued", "running", "succeeded"])
def test_retry_other_states_is_409(env, state):
    jid = env.job(env.recording(), "probe", state)
    before = env.db_job(jid, "state", "updated_at", "max_attempts")
    p = assert_problem(retry(env.admin, jid), 409, "job_not_retryable")
    assert state in p["detail"]
    assert env.db_job(jid, "state", "updated_at", "max_attempts") == before


def test_retry_job_of_deleted_recording_only_its_purge(env):
    rid = env.recording()
    (record_job,), = env.q("SELECT id FROM jobs WHERE recording_id = %s AND kind = 'record'", (rid,))
    assert env.a.delete(f"{API}/recordings/{rid}").status_code == 204
    (purge,), = env.q("SELECT id FROM jobs WHERE recording_id = %s AND kind = 'purge'", (rid,))
    env.job_ids.append(purge)
    assert env.db_job(record_job, "state") == "cancelled"
    p = assert_problem(retry(env.admin, record_job), 409, "job_not_retryable")
    assert "deleted" in p["detail"]
    assert env.db_job(record_job, "state") == "cancelled"
    env.q("UPDATE jobs SET state = 'failed', finished_at = now(), attempts = 1, last_error = 'disk busy'"
          " WHERE id = %s", (purge,))
    assert assert_json(retry(env.admin, purge), 202)["state"] == "queued"


# ===================================================================== roles
def test_only_admins_cancel_and_retry(env):
    rid = env.recording()
    queued = env.job(rid, "probe")
    failed = env.job(rid, "probe", "failed")
    lone = env.job(None, "retention", "failed")
    # The owner may read them, so is told it may not act (403) ...
    assert_problem(cancel(env.a, queued), 403, "forbidden")
    assert_problem(retry(env.a, failed), 403, "forbidden")
    # ... even in a state where the action would be a conflict.
    assert_problem(cancel(env.a, failed), 403, "forbidden")
    # Everyone else is not even told the job exists.
    for other in (env.b, env.s):
        assert_problem(cancel(other, queued), 404, "job_not_found")
        assert_problem(retry(other, failed), 404, "job_not_found")
    for user in (env.a, env.b, env.s):
        assert_problem(retry(user, lone), 404, "job_not_found")
    assert env.db_job(queued, "state", "cancel_requested_at") == ("queued", None)
    assert env.db_job(failed, "state") == "failed" and env.db_job(lone, "state") == "failed"


def test_cancel_and_retry_ignore_a_body(env):
    jid = env.job(None, "noop")
    r = env.admin.request("POST", f"{API}/jobs/{jid}/cancel", data=b'{"reason":"x"}',
                          headers={"Content-Type": "application/json"})
    assert assert_json(r, 202)["state"] == "cancelled"
    r = env.admin.request("POST", f"{API}/jobs/{jid}/retry", data=b"", headers={"Content-Type": "text/plain"})
    assert assert_json(r, 202)["state"] == "queued"
