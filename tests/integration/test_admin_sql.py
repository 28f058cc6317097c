"""The admin SQL of sql/admin.sql and docs/ADMIN.md, run as an admin runs it: through psql.

Every statement of sql/admin.sql (the reports and the commented-out action
templates) and every statement in a ```sql block of docs/ADMIN.md is executed
with /usr/bin/psql against the test database, with its psql variables (:id,
:'kind', ...) given by -v, and its effect is checked: the report shows the rows
the test made, a retry queues the job again (and wakes workers: the NOTIFY is
received on a second connection), a cancel cancels, a plain INSERT gets its
queue from the trigger, and so on. A statement that no check below recognises
fails the test, so a query added to the files must come with its check.

Actions with effects on every job of the database (retry all, prune) run in a
transaction that is rolled back after the check, so other tests' jobs are
never touched; the test's own jobs are cancelled at the end of each test, so
no worker started later in the session picks them up.
"""

import csv
import io
import re
import select
import subprocess
import time
import uuid
from pathlib import Path

import psycopg2
import pytest

ROOT = Path(__file__).resolve().parents[2]
ADMIN_SQL = ROOT / "sql" / "admin.sql"
ADMIN_MD = ROOT / "docs" / "ADMIN.md"
PSQL = "/usr/bin/psql"
MARK = "@@@ check @@@"

# A commented-out template in admin.sql starts with "-- " and an upper-case SQL keyword.
TEMPLATE_START = re.compile(r"^--\s(SELECT|INSERT|UPDATE|DELETE|WITH)\b")


# ------------------------------------------------------------------ parsing
def norm(sql):
    return " ".join(sql.split())


def admin_sql_statements():
    """[(line, sql, is_template)] of sql/admin.sql, templates uncommented."""
    out, cur, start, template = [], [], None, False
    for no, line in enumerate(ADMIN_SQL.read_text(encoding="utf-8").splitlines(), 1):
        s = line.strip()
        if cur:
            if template:
                assert s.startswith("--"), f"admin.sql:{no}: template of line {start} ends without ';'"
                s = s[2:]
            elif s.startswith("--"):
                raise AssertionError(f"admin.sql:{no}: comment inside the statement of line {start}")
            cur.append(s)
        elif TEMPLATE_START.match(s):
            cur, start, template = [s[2:]], no, True
        elif s and not s.startswith("--"):
            cur, start, template = [s], no, False
        else:
            continue
        if s.rstrip().endswith(";"):
            out.append((start, norm(" ".join(cur)), template))
            cur = []
    assert not cur, f"admin.sql: the statement of line {start} has no ';'"
    return out


def admin_md_statements():
    """[(line, sql)] of the ```sql blocks of docs/ADMIN.md."""
    out, cur, start, in_block = [], [], None, False
    for no, line in enumerate(ADMIN_MD.read_text(encoding="utf-8").splitlines(), 1):
        s = line.strip()
        if not in_block:
            in_block = s == "```sql"
            continue
        if s == "```":
            assert not cur, f"ADMIN.md:{start}: statement without ';'"
            in_block = False
            continue
        if not s or s.startswith("--") or s.startswith("\\"):
            continue  # comments and psql meta-commands (\set id 42) are not statements
        if not cur:
            start = no
        cur.append(s)
        if s.endswith(";"):
            out.append((start, norm(" ".join(cur))))
            cur = []
    assert not in_block, "ADMIN.md: a ```sql block is not closed"
    return out


ALL_STATEMENTS = ([pytest.param(sql, id=f"admin.sql:{no}") for no, sql, _ in admin_sql_statements()]
                  + [pytest.param(sql, id=f"ADMIN.md:{no}") for no, sql in admin_md_statements()])


# ------------------------------------------------------------------ helpers
class Admin:
    """The test's view of the database: job and recording factories, psql, LISTEN."""

    def __init__(self, stack, db):
        self.stack, self.db = stack, db
        self.job_ids = []
        self.tag = uuid.uuid4().hex[:10]

    def q(self, sql, args=()):
        with self.db.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else None

    def job(self, kind="noop", state="queued", queue=None, recording_id=None, **cols):
        """Insert a job; *_at columns are intervals relative to now() ("-5 seconds") or None."""
        row = {"kind": kind, "state": state, "queue": queue, "recording_id": recording_id}
        if state == "running":
            row.update(worker="test-worker", attempts=1)
            cols.setdefault("lease_expires_at", "1 minute")
            cols.setdefault("started_at", "-1 minute")
        if state in ("succeeded", "failed", "cancelled"):
            cols.setdefault("finished_at", "0 seconds")
            cols.setdefault("started_at", "-1 minute")
            row.setdefault("attempts", 1)
        names, values, args = [], [], []
        for k, v in {**row, **cols}.items():
            if k == "queue" and v is None:
                continue  # the trigger fills it in
            names.append(k)
            if k.endswith("_at") and v is not None:
                values.append("clock_timestamp() + %s::interval")
            else:
                values.append("%s")
            args.append(v)
        (job_id,), = self.q(f"INSERT INTO jobs ({', '.join(names)}) VALUES ({', '.join(values)}) RETURNING id",
                            args)
        self.job_ids.append(job_id)
        return job_id

    def attempt(self, job_id, attempt, outcome, error=None, finished="0 seconds"):
        self.q("INSERT INTO job_attempts (job_id, attempt, worker, started_at, finished_at, outcome, error)"
               " VALUES (%s, %s, 'test-worker', now() - interval '1 minute', now() + %s::interval, %s, %s)",
               (job_id, attempt, finished, outcome, error))

    def recording(self, status="ready", deleted=False):
        (rid,), = self.q("INSERT INTO recordings (title, room_id, owner_id, source_type, status, deleted_at)"
                         " VALUES (%s, 'admin-sql', 'admin-sql', 'upload', %s,"
                         " CASE WHEN %s THEN now() END) RETURNING id::text",
                         (f"admin {self.tag}", status, deleted))
        return rid

    def state(self, job_id, *cols):
        cols = cols or ("state",)
        rows = self.q(f"SELECT {', '.join(cols)} FROM jobs WHERE id = %s", (job_id,))
        if not rows:
            return None
        return rows[0][0] if len(cols) == 1 else rows[0]

    def psql(self, sql, check=None, rollback=False, **variables):
        """Run sql through psql with -v variables. Returns the rows (dicts) of
        its last result; with check, also the rows of check run right after it
        in the same session (in one transaction, rolled back, when rollback)."""
        text = sql
        if check is not None:
            text = f"{sql}\n\\echo {MARK}\n{check}"
        if rollback:
            text = f"BEGIN;\n{text}\nROLLBACK;"
        argv = [PSQL, "-X", "-q", "--csv", "-v", "ON_ERROR_STOP=1", "-d", self.stack.database_url]
        for k, v in variables.items():
            argv += ["-v", f"{k}={v}"]
        proc = subprocess.run(argv, input=text + "\n", capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"psql failed ({proc.returncode}) on:\n{text}\n{proc.stderr}"
        assert "ERROR" not in proc.stderr, proc.stderr
        parts = proc.stdout.split(MARK + "\n")
        results = [list(csv.DictReader(io.StringIO(p))) for p in parts]
        return results if check is not None else results[0]

    def listen(self, channel):
        conn = psycopg2.connect(self.stack.database_url)
        conn.autocommit = True
        conn.cursor().execute(f"LISTEN {channel}")
        self._listeners = getattr(self, "_listeners", []) + [conn]
        return conn

    def cleanup(self):
        # Leave nothing a worker started later in the session could run.
        if self.job_ids:
            self.q("UPDATE jobs SET state = 'cancelled', finished_at = now(), cancel_requested_at = NULL,"
                   " updated_at = now() WHERE id = ANY(%s) AND state IN ('queued', 'running')",
                   (self.job_ids,))
        for conn in getattr(self, "_listeners", []):
            conn.close()


def wait_notify(conn, channel, predicate, timeout=5.0):
    """The payload of the first notification on channel that predicate accepts."""
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
    raise AssertionError(f"no NOTIFY {channel} arrived within {timeout}s (got {seen})")


@pytest.fixture
def admin(stack, db):
    a = Admin(stack, db)
    try:
        yield a
    finally:
        a.cleanup()


def by(rows, key, value):
    return [r for r in rows if r[key] == str(value)]


# ------------------------------------------------------------------ checks, one per statement
def check_queue_depth(a, sql):
    queue = f"tq_{a.tag}"
    a.job(queue=queue, run_at="-1 minute")
    a.job(queue=queue, run_at="1 hour")
    a.job(queue=queue, state="running")
    rows = by(a.psql(sql), "queue", queue)
    assert len(rows) == 1, rows
    r = rows[0]
    assert (r["runnable"], r["scheduled"], r["running"]) == ("1", "1", "1"), r
    assert r["oldest_queued_run_at"] and r["oldest_wait"], r


def check_queue_kind_state(a, sql):
    queue = f"tq_{a.tag}"
    a.job(queue=queue)
    a.job(queue=queue, run_at="1 hour")
    a.job(queue=queue, state="running")
    a.job(queue=queue, state="failed")
    rows = by(a.psql(sql), "queue", queue)
    assert {(r["kind"], r["state"], r["jobs"]) for r in rows} == {("noop", "queued", "2"), ("noop", "running", "1")}


def check_running(a, sql):
    jid = a.job(state="running", progress=0.425, heartbeat_at="-5 seconds", lease_expires_at="-1 second")
    fresh = a.job(state="running", heartbeat_at="0 seconds")
    queued = a.job()
    rows = a.psql(sql)
    r = by(rows, "id", jid)
    assert len(r) == 1, rows
    r = r[0]
    assert r["percent"] == "42.5" and r["lease_expired"] == "t" and r["worker"] == "test-worker", r
    h, m, s = r["heartbeat_age"].split(":")
    assert int(h) == 0 and int(m) == 0 and 5 <= float(s) < 60, r
    assert by(rows, "id", fresh)[0]["lease_expired"] == "f"
    assert not by(rows, "id", queued)


def check_failed_last_day(a, sql):
    err = f"decoder said no {a.tag}"
    recent = a.job(state="failed", attempts=3, max_attempts=3, last_error=err)
    old = a.job(state="failed", finished_at="-2 days", last_error="old")
    rows = a.psql(sql)
    r = by(rows, "id", recent)
    assert len(r) == 1 and r[0]["last_error"] == err and r[0]["attempts"] == "3", rows
    assert not by(rows, "id", old)


def check_failed_per_kind(a, sql):
    err = f"latest failure {a.tag}"
    a.job(kind="retention", state="failed", finished_at="-1 hour", last_error="earlier")
    a.job(kind="retention", state="failed", last_error=err)
    rows = by(a.psql(sql), "kind", "retention")
    assert len(rows) == 1 and rows[0]["last_error"] == err and int(rows[0]["failed"]) >= 2, rows


def check_attempts_last_day(a, sql):
    jid = a.job(state="failed", attempts=3, max_attempts=3)
    a.attempt(jid, 1, "lease_expired", "lease expired", finished="-10 seconds")
    a.attempt(jid, 2, "failed", f"bad file {a.tag}", finished="-5 seconds")
    a.attempt(jid, 3, "succeeded")
    rows = by(a.psql(sql), "job_id", jid)
    assert [(r["attempt"], r["outcome"]) for r in rows] == [("2", "failed"), ("1", "lease_expired")], rows
    assert rows[0]["error"] == f"bad file {a.tag}" and rows[0]["kind"] == "noop"


def check_waiting_purge(a, sql):
    queued = a.recording(deleted=True)
    purge = a.job(kind="purge", recording_id=queued)
    no_job = a.recording(deleted=True)
    done = a.recording(deleted=True)
    a.job(kind="purge", recording_id=done, state="failed", finished_at="-1 hour")
    a.job(kind="purge", recording_id=done, state="succeeded")
    live = a.recording()
    rows = a.psql(sql)
    assert [(r["purge_job"], r["purge_state"]) for r in by(rows, "id", queued)] == [(str(purge), "queued")]
    assert [(r["purge_job"], r["purge_state"]) for r in by(rows, "id", no_job)] == [("", "")]
    assert not by(rows, "id", done) and not by(rows, "id", live)


def check_stuck_processing(a, sql):
    stuck = a.recording(status="processing")
    a.job(kind="probe", recording_id=stuck, state="failed")
    moving = a.recording(status="processing")
    a.job(kind="probe", recording_id=moving, run_at="1 hour")
    tidy_only = a.recording(status="processing")  # a tidy job is no pipeline step: it moves nothing on
    a.job(kind="tidy", recording_id=tidy_only, run_at="1 day")
    rows = a.psql(sql)
    assert by(rows, "id", stuck) and by(rows, "id", tidy_only) and not by(rows, "id", moving)


def check_migrations(a, sql):
    versions = [r["version"] for r in a.psql(sql)]
    assert versions[:2] == ["001_core", "002_worker"] and versions == sorted(versions), versions


def check_one_job(a, sql):
    jid = a.job(last_error=f"e {a.tag}")
    rows = a.psql(sql, id=jid)
    assert len(rows) == 1 and rows[0]["id"] == str(jid) and rows[0]["last_error"] == f"e {a.tag}", rows


def check_attempts_of_job(a, sql):
    jid = a.job(state="failed", attempts=2, max_attempts=2)
    a.attempt(jid, 2, "failed", "second")
    a.attempt(jid, 1, "lease_expired", "first")
    rows = a.psql(sql, id=jid)
    assert [(r["attempt"], r["outcome"], r["error"]) for r in rows] == [
        ("1", "lease_expired", "first"), ("2", "failed", "second")], rows
    assert all(r["took"] for r in rows), rows


def check_jobs_of_recording(a, sql):
    rid = a.recording()
    first = a.job(kind="probe", recording_id=rid, state="succeeded")
    second = a.job(kind="thumbnail", recording_id=rid, run_at="1 hour")
    a.job(kind="probe", recording_id=a.recording())
    rows = a.psql(sql, recording_id=rid)
    assert [(r["id"], r["kind"]) for r in rows] == [(str(second), "thumbnail"), (str(first), "probe")], rows


def check_retry_one(a, sql):
    failed = a.job(kind="probe", state="failed", attempts=3, max_attempts=3, last_error="boom")
    cancelled = a.job(state="cancelled", cancel_requested_at="-1 minute")
    queued = a.job(run_at="1 hour")
    listener = a.listen("vtp_jobs")
    assert [r["vtp_retry_job"] for r in a.psql(sql, id=failed)] == [str(failed)]
    assert wait_notify(listener, "vtp_jobs", lambda p: "light" in p.split(","))
    state, attempts, max_attempts, finished, err, run_at_ok = a.state(
        failed, "state", "attempts", "max_attempts", "finished_at", "last_error", "run_at <= now()")
    assert (state, attempts, max_attempts, finished, err, run_at_ok) == ("queued", 3, 6, None, None, True)
    assert [r["vtp_retry_job"] for r in a.psql(sql, id=cancelled)] == [str(cancelled)]
    assert a.state(cancelled, "state", "cancel_requested_at") == ("queued", None)
    # Not failed or cancelled: nothing changes and no id comes back.
    assert a.psql(sql, id=queued) == []
    assert a.state(queued, "state", "max_attempts", "run_at > now()") == ("queued", 5, True)
    check_retry_revives(a, lambda job_id: a.psql(sql, id=job_id))


def check_retry_revives(a, retry):
    """The recording a failed job failed comes back with the job's retry (sql/013)."""
    def recording(stopped):
        rid = a.recording(status="failed")
        a.q("UPDATE recordings SET status_detail = 'x failed: boom', stopped_at = CASE WHEN %s THEN now() END"
            " WHERE id = %s", (stopped, rid))
        return rid

    def status(rid):
        return a.q("SELECT status, status_detail FROM recordings WHERE id = %s", (rid,))[0]

    # A later step: 'processing' (it moves on and settles when the job succeeds), once no other step is failed.
    rid = recording(stopped=True)
    probe = a.job(kind="probe", state="failed", recording_id=rid, last_error="boom")
    thumbnail = a.job(kind="thumbnail", state="cancelled", recording_id=rid)
    retry(probe)
    assert status(rid) == ("failed", "x failed: boom")  # the thumbnail still stands failed
    retry(thumbnail)
    assert status(rid) == ("processing", None)
    # A stopped class's record job keeps its stop (it joins the parts it has at once) and goes to 'stopping'.
    stopped = recording(stopped=True)
    record = a.job(kind="record", state="failed", recording_id=stopped, cancel_requested_at="-1 minute")
    retry(record)
    assert status(stopped) == ("stopping", None)
    assert a.state(record, "state", "cancel_requested_at > now() - interval '1 minute'") == ("queued", True)
    # A class that was never stopped listens again.
    live = recording(stopped=False)
    record = a.job(kind="record", state="failed", recording_id=live)
    retry(record)
    assert status(live) == ("pending", None) and a.state(record, "cancel_requested_at") is None
    # A deleted recording stays as it is.
    gone = a.recording(status="failed", deleted=True)
    retry(a.job(kind="probe", state="failed", recording_id=gone))
    assert status(gone)[0] == "failed"


def check_retry_all(a, sql):
    jobs = [a.job(kind="noop", state="failed"), a.job(kind="probe", state="failed", attempts=5, max_attempts=5)]
    done = a.job(state="succeeded")
    ids = ",".join(map(str, jobs + [done]))
    out, rows = a.psql(sql, check=f"SELECT id, state, max_attempts FROM jobs WHERE id IN ({ids}) ORDER BY id;",
                       rollback=True)
    assert {str(j) for j in jobs} <= {r["vtp_retry_failed"] for r in out}, out
    assert [(r["state"], r["max_attempts"]) for r in rows] == [("queued", "4"), ("queued", "8"), ("succeeded", "5")]
    assert a.state(jobs[0]) == "failed", "the transaction was rolled back"
    # Two failed steps of one recording, retried together: the recording comes back (the second sees the first).
    rid = a.recording(status="failed")
    steps = [a.job(kind=k, state="failed", recording_id=rid) for k in ("thumbnail", "storyboard")]
    ids = ",".join(map(str, steps))
    out, rows = a.psql(sql, check=f"SELECT status FROM recordings WHERE id = '{rid}';", rollback=True)
    assert {str(j) for j in steps} <= {r["vtp_retry_failed"] for r in out}, out
    assert [r["status"] for r in rows] == ["processing"], (rows, ids)


def check_retry_kind(a, sql):
    noop = a.job(kind="noop", state="failed")
    probe = a.job(kind="probe", state="failed")
    out, rows = a.psql(sql, check=f"SELECT id, state FROM jobs WHERE id IN ({noop}, {probe}) ORDER BY id;",
                       rollback=True, kind="noop")
    returned = {r["vtp_retry_failed"] for r in out}
    assert str(noop) in returned and str(probe) not in returned, out
    assert [r["state"] for r in rows] == ["queued", "failed"], rows


def check_cancel(a, sql):
    queued = a.job(run_at="1 hour")
    running = a.job(state="running")
    done = a.job(state="succeeded")
    assert [r["vtp_cancel_job"] for r in a.psql(sql, id=queued)] == [str(queued)]
    state, finished, asked = a.state(queued, "state", "finished_at IS NOT NULL", "cancel_requested_at IS NOT NULL")
    assert (state, finished, asked) == ("cancelled", True, True)
    listener = a.listen("vtp_cancel")
    assert [r["vtp_cancel_job"] for r in a.psql(sql, id=running)] == [str(running)]
    assert wait_notify(listener, "vtp_cancel", lambda p: str(running) in p.split(","))
    assert a.state(running, "state", "cancel_requested_at IS NOT NULL") == ("running", True)
    assert a.psql(sql, id=done) == []
    assert a.state(done, "state", "cancel_requested_at") == ("succeeded", None)


def check_reprioritise(a, sql):
    queued = a.job(run_at="1 hour")
    running = a.job(state="running")
    assert [r["vtp_reprioritise_job"] for r in a.psql(sql, id=queued, priority=10)] == [str(queued)]
    assert a.state(queued, "priority") == 10
    assert a.psql(sql, id=running, priority=10) == []
    assert a.state(running, "priority") == 100


def check_run_now(a, sql):
    later = a.job(run_at="1 hour", queue=f"tq_{a.tag}")
    listener = a.listen("vtp_jobs")
    assert [r["id"] for r in a.psql(sql, id=later)] == [str(later)]
    assert a.state(later, "run_at <= now()") is True
    assert wait_notify(listener, "vtp_jobs", lambda p: f"tq_{a.tag}" in p.split(","))
    running = a.job(state="running")
    assert a.psql(sql, id=running) == []


def check_insert(a, sql):
    rid = a.recording()
    listener = a.listen("vtp_jobs")
    rows = a.psql(sql, recording_id=rid)
    assert len(rows) == 1 and rows[0]["queue"] == "light" and rows[0]["state"] == "queued", rows
    a.job_ids.append(int(rows[0]["id"]))
    assert wait_notify(listener, "vtp_jobs", lambda p: "light" in p.split(","))
    assert a.state(int(rows[0]["id"]), "kind", "recording_id::text", "priority") == ("probe", rid, 100)


def check_prune(a, sql):
    old = a.job(state="failed", finished_at="-31 days", started_at="-32 days")
    a.attempt(old, 1, "failed", "old")
    recent = a.job(state="succeeded", finished_at="-29 days", started_at="-30 days")
    queued = a.job(run_at="-40 days")
    out, rows = a.psql(sql, check=(
        f"SELECT (SELECT count(*) FROM jobs WHERE id = {old}) AS old,"
        f" (SELECT count(*) FROM job_attempts WHERE job_id = {old}) AS attempts,"
        f" (SELECT count(*) FROM jobs WHERE id IN ({recent}, {queued})) AS kept;"), rollback=True)
    assert int(out[0]["vtp_prune_jobs"]) >= 1, out
    assert rows == [{"old": "0", "attempts": "0", "kept": "2"}], rows
    assert a.state(old) == "failed", "the transaction was rolled back"


def check_retention_due(a, sql):
    (due,), = a.q("INSERT INTO recordings (title, room_id, owner_id, source_type, status, retention_days, created_at)"
                  " VALUES (%s, 'admin-sql', 'admin-sql', 'upload', 'ready', 30, now() - interval '31 days')"
                  " RETURNING id::text", (f"admin {a.tag}",))
    (held,), = a.q("INSERT INTO recordings (title, room_id, owner_id, source_type, status, retention_days, legal_hold,"
                   " created_at) VALUES (%s, 'admin-sql', 'admin-sql', 'upload', 'ready', 30, true,"
                   " now() - interval '400 days') RETURNING id::text", (f"admin {a.tag}",))
    young = a.recording()
    try:
        ids = {r["id"] for r in a.psql(sql)}
        assert due in ids and held not in ids and young not in ids, ids
    finally:  # nothing for a retention job of a later test to take
        a.q("UPDATE recordings SET deleted_at = now() WHERE id = ANY(%s::uuid[])", ([due, held, young],))


def check_legal_hold(a, sql):
    rid = a.recording()
    assert a.psql(sql, recording_id=rid) == [{"id": rid, "legal_hold": "t"}]
    assert a.q("SELECT legal_hold FROM recordings WHERE id = %s", (rid,)) == [(True,)]


CHECKS = [
    (r"FROM vtp_queue_depth", check_queue_depth),
    (r"GROUP BY queue, kind, state", check_queue_kind_state),
    (r"FROM vtp_running_jobs", check_running),
    (r"FROM vtp_failed_jobs WHERE finished_at > now\(\) - interval '1 day'", check_failed_last_day),
    (r"DISTINCT ON \(kind\)", check_failed_per_kind),
    (r"FROM job_attempts a JOIN jobs", check_attempts_last_day),
    (r"kind = 'purge'", check_waiting_purge),
    (r"status = 'processing'", check_stuck_processing),
    (r"FROM schema_migrations", check_migrations),
    (r"^SELECT \* FROM jobs WHERE id = :id;$", check_one_job),
    (r"FROM job_attempts WHERE job_id = :id", check_attempts_of_job),
    (r"FROM jobs WHERE recording_id = :'recording_id'", check_jobs_of_recording),
    (r"vtp_retry_job\(:id\)", check_retry_one),
    (r"vtp_retry_failed\(\)", check_retry_all),
    (r"vtp_retry_failed\(:'kind'\)", check_retry_kind),
    (r"vtp_cancel_job\(:id\)", check_cancel),
    (r"vtp_reprioritise_job\(:id, :priority\)", check_reprioritise),
    (r"SET run_at = now\(\)", check_run_now),
    (r"^INSERT INTO jobs \(kind, recording_id\) VALUES \('probe', :'recording_id'\)", check_insert),
    (r"vtp_prune_jobs\(", check_prune),
    (r"FROM vtp_retention_due", check_retention_due),
    (r"SET legal_hold = true", check_legal_hold),
]


def check_for(sql):
    found = [fn for pattern, fn in CHECKS if re.search(pattern, sql)]
    assert len(found) == 1, f"{len(found)} checks match this statement (need exactly one): {sql}"
    return found[0]


# ------------------------------------------------------------------ tests
def test_files_parse_and_every_statement_has_one_check():
    sql_statements = admin_sql_statements()
    md_statements = admin_md_statements()
    assert len(sql_statements) >= 15 and any(t for _, _, t in sql_statements), sql_statements
    assert md_statements, "docs/ADMIN.md has no ```sql statements"
    for _, sql, *_ in sql_statements + md_statements:
        check_for(sql)
    # Every check is used by admin.sql: none is left behind when a query is removed.
    used = {check_for(sql) for _, sql, _ in sql_statements}
    assert used == {fn for _, fn in CHECKS}, {fn.__name__ for _, fn in CHECKS} - {fn.__name__ for fn in used}


def test_every_admin_md_query_is_in_admin_sql():
    in_sql = {sql for _, sql, _ in admin_sql_statements()}
    missing = [f"ADMIN.md:{no}: {sql}" for no, sql in admin_md_statements() if sql not in in_sql]
    assert not missing, "queries of docs/ADMIN.md missing from sql/admin.sql:\n" + "\n".join(missing)


def test_admin_md_covers_the_issue():
    md = {sql for _, sql in admin_md_statements()}
    for needle in ("vtp_queue_depth", "vtp_running_jobs", "vtp_failed_jobs", "job_attempts", "vtp_retry_job(",
                   "vtp_retry_failed(", "vtp_cancel_job(", "vtp_reprioritise_job(", "vtp_prune_jobs(",
                   "INSERT INTO jobs", "kind = 'purge'"):
        assert any(needle in sql for sql in md), f"docs/ADMIN.md shows no query with {needle}"


def test_admin_sql_runs_whole_with_psql_f(stack):
    """Part 1 is safe to run as a report: psql -f sql/admin.sql (templates are comments)."""
    proc = subprocess.run([PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", stack.database_url,
                           "-f", str(ADMIN_SQL)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "ERROR" not in proc.stderr, proc.stderr
    assert "runnable" in proc.stdout and "version" in proc.stdout


@pytest.mark.parametrize("sql", ALL_STATEMENTS)
def test_statement(admin, sql):
    check_for(sql)(admin, sql)
