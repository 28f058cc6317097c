"""vtp-worker and the job queue, against the real PostgreSQL of the test stack: claims, NOTIFY
wake-ups, priorities and scheduling, separate queues, retries with backoff, crashes of a job's
child and of a whole worker, cancellation, timeouts, graceful shutdown, fencing of a lost lease,
--once and --until-idle, and a PostgreSQL restart. Every test uses a queue of its own, so no other
test's jobs are claimed."""

import json
import os
import signal
import subprocess
import time
import uuid

import psycopg2
import pytest


def poll(what, check, timeout=15.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def queue():
    return "t" + uuid.uuid4().hex[:12]


class Workers:
    """Starts vtp-worker processes for one test and stops them at its end."""

    def __init__(self, stack, tmp_path):
        self.stack, self.tmp_path, self.procs = stack, tmp_path, []

    def start(self, *args, **env):
        log = self.tmp_path / f"worker{len(self.procs)}.log"
        full_env = dict(self.stack.env, VTP_RETRY_BASE_MS="100", VTP_LEASE_S="3", VTP_HEARTBEAT_MS="300",
                        VTP_LOG_LEVEL="debug")
        full_env.update({k: str(v) for k, v in env.items()})  # the test's own settings win
        with open(log, "w") as out:
            proc = subprocess.Popen([str(self.stack.build_dir / "vtp-worker"), *args], env=full_env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        proc.log = log
        self.procs.append(proc)
        poll("the worker to listen", lambda: "listening for jobs" in log.read_text() or proc.poll() is not None)
        return proc

    def run(self, *args, timeout=60, **env):
        full_env = dict(self.stack.env, VTP_RETRY_BASE_MS="100", **{k: str(v) for k, v in env.items()})
        return subprocess.run([str(self.stack.build_dir / "vtp-worker"), *args], env=full_env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def stop_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(stack, tmp_path):
    w = Workers(stack, tmp_path)
    yield w
    w.stop_all()


def add_job(db, queue, payload=None, kind="noop", **columns):
    cols = {"kind": kind, "queue": queue, "payload": json.dumps(payload or {}), **columns}
    names = ", ".join(cols)
    marks = ", ".join(["%s"] * len(cols))
    with db.cursor() as cur:
        cur.execute(f"INSERT INTO jobs ({names}) VALUES ({marks}) RETURNING id", list(cols.values()))
        return cur.fetchone()[0]


def job(db, job_id):
    with db.cursor() as cur:
        cur.execute("SELECT state, attempts, max_attempts, last_error, worker, started_at, finished_at, run_at,"
                    " progress FROM jobs WHERE id = %s", (job_id,))
        row = cur.fetchone()
    keys = ("state", "attempts", "max_attempts", "last_error", "worker", "started_at", "finished_at", "run_at",
            "progress")
    return dict(zip(keys, row))


def attempts(db, job_id):
    with db.cursor() as cur:
        cur.execute("SELECT attempt, outcome, error FROM job_attempts WHERE job_id = %s ORDER BY attempt", (job_id,))
        return cur.fetchall()


def state_is(db, job_id, *states):
    return lambda: job(db, job_id)["state"] in states


def child_of(proc):
    out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def test_once_runs_one_job_and_records_its_attempt(db, workers, queue):
    first = add_job(db, queue)
    second = add_job(db, queue)
    result = workers.run("--once", "--queues", queue)
    assert result.returncode == 0, result.stderr
    assert job(db, first)["state"] == "succeeded"
    assert job(db, second)["state"] == "queued"
    assert attempts(db, first) == [(1, "succeeded", None)]
    assert f"job {first} noop recording -" in result.stderr


def test_notify_wakes_an_idle_worker_long_before_the_slow_poll(db, workers, queue):
    workers.start("--queues", queue)
    time.sleep(0.3)  # let the worker settle into its idle poll (5 s), which the NOTIFY must cut short
    job_id = add_job(db, queue)
    poll("the job to finish", state_is(db, job_id, "succeeded"), timeout=3.0)


def test_priority_then_run_at_order(db, workers, queue):
    later = add_job(db, queue, priority=500)
    first = add_job(db, queue, priority=1)
    middle = add_job(db, queue, priority=100)
    scheduled = add_job(db, queue, priority=0, run_at=psycopg2.extensions.AsIs("now() + interval '1.5 seconds'"))
    result = workers.run("--until-idle", "--queues", f"{queue}:1")
    assert result.returncode == 0, result.stderr
    finished = sorted((job(db, j)["finished_at"], j) for j in (later, first, middle))
    assert [j for _, j in finished] == [first, middle, later]
    # The scheduled job was not runnable yet, so --until-idle left it for the next run.
    assert job(db, scheduled)["state"] == "queued"
    worker = workers.start("--queues", queue)
    poll("the scheduled job to run", state_is(db, scheduled, "succeeded"), timeout=5)
    s = job(db, scheduled)
    assert s["started_at"] >= s["run_at"]


def test_light_queue_does_not_wait_behind_a_long_job(db, workers, queue):
    heavy, light = queue + "h", queue + "l"
    workers.start("--queues", f"{heavy}:1,{light}:1")
    long_job = add_job(db, heavy, {"sleep_ms": 20000})
    poll("the long job to run", state_is(db, long_job, "running"))
    quick = add_job(db, light)
    poll("the light job to finish", state_is(db, quick, "succeeded"), timeout=5)
    assert job(db, long_job)["state"] == "running"


def test_failure_is_retried_with_backoff_then_fails_for_good(db, workers, queue):
    job_id = add_job(db, queue, {"fail": "the file is not media"}, max_attempts=3)
    workers.start("--queues", queue)
    poll("the job to fail for good", state_is(db, job_id, "failed"))
    j = job(db, job_id)
    assert j["attempts"] == 3 and j["last_error"] == "the file is not media"
    assert [a[1] for a in attempts(db, job_id)] == ["failed", "failed", "failed"]


def test_sigkill_of_a_child_is_retried_and_succeeds(db, workers, queue):
    worker = workers.start("--queues", queue)
    job_id = add_job(db, queue, {"sleep_ms": 1500})
    poll("the job to run", state_is(db, job_id, "running"))
    child = poll("the child process", lambda: child_of(worker))
    os.kill(child, signal.SIGKILL)
    poll("the job to succeed", state_is(db, job_id, "succeeded"), timeout=20)
    history = attempts(db, job_id)
    assert history[0][1] == "failed" and "killed by signal 9" in history[0][2]
    assert history[-1][1] == "succeeded" and len(history) == 2
    assert worker.poll() is None, "the supervisor must survive its child"


def test_sigkill_of_a_worker_another_finishes_within_15_s(db, workers, queue):
    doomed = workers.start("--queues", queue)
    job_id = add_job(db, queue, {"sleep_ms": 1000})
    poll("the job to run", state_is(db, job_id, "running"))
    child = poll("the child process", lambda: child_of(doomed))
    doomed.kill()
    doomed.wait()
    killed_at = time.monotonic()
    poll("the orphaned child to die with its supervisor", lambda: not os.path.exists(f"/proc/{child}"), timeout=5)
    workers.start("--queues", queue)
    poll("another worker to finish the job", state_is(db, job_id, "succeeded"), timeout=15)
    assert time.monotonic() - killed_at < 15
    assert attempts(db, job_id)[0][1] == "lease_expired"


def test_cancel_of_a_running_job_stops_it_within_a_second(db, workers, queue):
    worker = workers.start("--queues", queue)
    job_id = add_job(db, queue, {"sleep_ms": 60000})
    poll("the job to run", state_is(db, job_id, "running"))
    with db.cursor() as cur:
        cur.execute("SELECT vtp_cancel_job(%s)", (job_id,))
    asked = time.monotonic()
    poll("the job to be cancelled", state_is(db, job_id, "cancelled"), timeout=5)
    assert time.monotonic() - asked < 1.0
    assert worker.poll() is None
    assert attempts(db, job_id)[0][1] == "cancelled"


def test_a_stopped_job_that_says_it_is_still_finishing_is_not_killed_after_the_grace(db, workers, queue):
    # A recorder asked to stop joins its parts, which for a long class outlasts the stop grace (noop's is 1 s):
    # while it reports job_still_finishing() it is left to finish, and its work counts.
    workers.start("--queues", queue)
    saying = add_job(db, queue, {"sleep_ms": 60000, "finish_ms": 5000, "say_finishing": True})
    quiet = add_job(db, queue, {"sleep_ms": 60000, "finish_ms": 5000})
    poll("both jobs to run", lambda: state_is(db, saying, "running")() and state_is(db, quiet, "running")())
    with db.cursor() as cur:
        cur.execute("SELECT vtp_cancel_job(%s), vtp_cancel_job(%s)", (saying, quiet))
    # Both take 5 s to finish, against a 1 s grace: killed, a job ends cancelled; left to finish, succeeded.
    poll("both to end", lambda: not state_is(db, saying, "running")() and not state_is(db, quiet, "running")(),
         timeout=30)
    assert job(db, quiet)["state"] == "cancelled" and attempts(db, quiet)[0][1] == "cancelled"
    assert job(db, saying)["state"] == "succeeded", job(db, saying)


def test_timeout_fails_the_attempt(db, workers, queue):
    job_id = add_job(db, queue, {"sleep_ms": 30000}, max_attempts=1)
    workers.start("--queues", queue, VTP_JOB_TIMEOUT_S=1)
    poll("the job to time out", state_is(db, job_id, "failed"), timeout=10)
    assert job(db, job_id)["last_error"] == "timed out after 1 s"


def test_sigterm_requeues_running_jobs_without_spending_an_attempt(db, workers, queue):
    worker = workers.start("--queues", queue, VTP_SHUTDOWN_GRACE_S=0)
    job_id = add_job(db, queue, {"sleep_ms": 60000})
    poll("the job to run", state_is(db, job_id, "running"))
    before = job(db, job_id)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    after = job(db, job_id)
    assert after["state"] == "queued"
    assert after["max_attempts"] - after["attempts"] == before["max_attempts"] - before["attempts"] + 1
    assert attempts(db, job_id)[0][1] == "requeued"


def test_sigterm_lets_a_running_job_finish_within_the_grace(db, workers, queue):
    worker = workers.start("--queues", queue, VTP_SHUTDOWN_GRACE_S=30)
    job_id = add_job(db, queue, {"sleep_ms": 800})
    poll("the job to run", state_is(db, job_id, "running"))
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert job(db, job_id)["state"] == "succeeded"


def test_a_worker_that_lost_its_lease_publishes_nothing(db, workers, queue):
    worker = workers.start("--queues", queue)
    job_id = add_job(db, queue, {"sleep_ms": 60000})
    poll("the job to run", state_is(db, job_id, "running"))
    # Another worker took the job over (as after a network partition): new attempt, new owner.
    with db.cursor() as cur:
        cur.execute("UPDATE jobs SET attempts = attempts + 1, worker = 'elsewhere:1' WHERE id = %s", (job_id,))
    poll("the worker to notice", lambda: "lease lost" in worker.log.read_text())
    poll("its child to be killed", lambda: child_of(worker) is None, timeout=5)
    j = job(db, job_id)
    assert j["state"] == "running" and j["worker"] == "elsewhere:1"
    assert worker.poll() is None


def test_until_idle_exits_when_done_and_a_second_run_leaves_at_once(db, workers, queue):
    ids = [add_job(db, queue) for _ in range(3)]
    slow = add_job(db, queue, {"sleep_ms": 3000})
    first = subprocess.Popen([str(workers.stack.build_dir / "vtp-worker"), "--until-idle", "--queues", queue],
                             env=dict(workers.stack.env), stderr=subprocess.PIPE, text=True)
    poll("the slow job to run", state_is(db, slow, "running"))
    second = workers.run("--until-idle", "--queues", queue, timeout=10)
    assert second.returncode == 0 and "another vtp-worker --until-idle is running" in second.stderr
    assert first.wait(timeout=30) == 0
    assert all(job(db, j)["state"] == "succeeded" for j in ids + [slow])


def test_worker_carries_on_after_a_postgres_restart(stack, db, workers, queue):
    worker = workers.start("--queues", queue)
    db.close()
    stack.pg_stop()
    try:
        time.sleep(0.5)  # the worker must live through an outage, not merely a blink
    finally:
        stack.pg_start()
    fresh = psycopg2.connect(stack.database_url)
    fresh.autocommit = True
    try:
        job_id = add_job(fresh, queue)
        poll("the job to be done after the restart", state_is(fresh, job_id, "succeeded"), timeout=40)
        assert worker.poll() is None
    finally:
        fresh.close()


def test_sighup_reloads_the_configuration_and_keeps_it_when_broken(db, workers, queue, tmp_path):
    conf = tmp_path / "vtp.conf"
    conf.write_text("job_history_days = 30\n")
    worker = workers.start("--queues", queue, VTP_CONFIG=conf)
    conf.write_text("job_history_days = 7\n")
    worker.send_signal(signal.SIGHUP)
    poll("the reload", lambda: "SIGHUP: configuration reloaded" in worker.log.read_text())
    conf.write_text("job_history_dayz = 7\n")
    worker.send_signal(signal.SIGHUP)
    poll("the refusal", lambda: "keeping the old one" in worker.log.read_text())
    assert f"{conf}:1: unknown setting" in worker.log.read_text()
    job_id = add_job(db, queue)
    poll("the job to run with the kept configuration", state_is(db, job_id, "succeeded"), timeout=5)
    assert worker.poll() is None


def test_jobs_of_kinds_without_code_are_left_for_a_worker_that_has_it(db, workers, queue):
    # 'import' has no code in this worker: it must neither fail nor block the queue.
    foreign = add_job(db, queue, kind="import", priority=1)
    mine = add_job(db, queue, priority=500)
    result = workers.run("--until-idle", "--queues", queue, timeout=20)
    assert result.returncode == 0, result.stderr
    assert job(db, mine)["state"] == "succeeded"
    j = job(db, foreign)
    assert j["state"] == "queued" and j["attempts"] == 0


def dead(pid):
    """The process has ended: gone from /proc, or a zombie not yet reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_job_is_killed_before_its_lease_ends_when_postgres_is_gone(stack, db, workers, queue, tmp_path):
    """Without the database the worker cannot renew the lease; once it ends, the reaper gives the job to
    another attempt: the first one must not be running then (its files would meet the next one's)."""
    lease_s = 3  # Workers.start's VTP_LEASE_S
    worker = workers.start("--queues", queue)
    pid_file = tmp_path / "noop.pid"
    job_id = add_job(db, queue, {"sleep_ms": 120000, "sleep_attempts": 1, "pid_file": str(pid_file)})
    child = int(poll("the job's pid file", lambda: pid_file.exists() and pid_file.read_text().strip()))
    assert child == child_of(worker)
    db.close()
    stack.pg_stop()
    # The last renewal got through before the cluster was down, so the lease ends before this + lease_s.
    lease_end_bound = time.monotonic() + lease_s
    try:
        poll("the child to be killed", lambda: dead(child), timeout=lease_s + 2)
        assert time.monotonic() < lease_end_bound, "the child outlived its lease"
        assert worker.poll() is None, "the worker itself carries on without its database"
    finally:
        stack.pg_start()
    fresh = psycopg2.connect(stack.database_url)
    fresh.autocommit = True
    try:
        poll("the next attempt to succeed", state_is(fresh, job_id, "succeeded"), timeout=40)
        assert job(fresh, job_id)["attempts"] == 2
        history = attempts(fresh, job_id)
        assert [(a, outcome) for a, outcome, _ in history] == [(1, "lease_expired"), (2, "succeeded")], history
        assert "stopped renewing it" in history[0][2]
        log = worker.log.read_text()
        assert f"job {job_id} noop recording - attempt 1: database unreachable for" in log, log[-3000:]
        assert "its lease ends in" in log and "stopping it" in log
        assert f"job {job_id} noop recording - attempt 1: dropped: the lease was lost" in log
        assert worker.poll() is None
    finally:
        fresh.close()


def test_a_supervisor_stuck_in_a_renewal_still_kills_the_job_before_its_lease_ends(stack, db, workers, queue, tmp_path):
    """A renewal that hangs (here: the job's row locked; a frozen server does the same) holds the supervisor's
    loop; its timer still kills the child before the lease it could not renew ends."""
    lease_s = 3
    worker = workers.start("--queues", queue, VTP_DB_STATEMENT_TIMEOUT_MS=30000)
    pid_file = tmp_path / "noop.pid"
    job_id = add_job(db, queue, {"sleep_ms": 120000, "sleep_attempts": 1, "pid_file": str(pid_file)})
    child = int(poll("the job's pid file", lambda: pid_file.exists() and pid_file.read_text().strip()))
    locker = psycopg2.connect(stack.database_url)
    try:
        with locker.cursor() as cur:
            cur.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
        # A renewal that took the row before us committed first: the lease ends before this + lease_s.
        lease_end_bound = time.monotonic() + lease_s
        poll("the child to be killed", lambda: dead(child), timeout=lease_s + 2)
        assert time.monotonic() < lease_end_bound, "the child outlived its lease"
    finally:
        locker.rollback()
        locker.close()
    poll("the next attempt to succeed", state_is(db, job_id, "succeeded"), timeout=40)
    history = attempts(db, job_id)
    assert [(a, outcome) for a, outcome, _ in history] == [(1, "lease_expired"), (2, "succeeded")], history
    log = worker.log.read_text()
    assert f"job {job_id} noop recording - attempt 1: database unreachable for" in log, log[-3000:]
    assert f"job {job_id} noop recording - attempt 1: dropped: the lease was lost" in log
    assert "crashed" not in log
    assert worker.poll() is None


def test_sigterm_ends_a_worker_whose_job_the_lease_guard_killed_during_an_outage(stack, db, workers, queue, tmp_path):
    """A dropped job has nothing to write to the database, so its slot must not wait for it: SIGTERM ends the
    worker while PostgreSQL is still down."""
    worker = workers.start("--queues", queue)
    pid_file = tmp_path / "noop.pid"
    add_job(db, queue, {"sleep_ms": 120000, "sleep_attempts": 1, "pid_file": str(pid_file)})
    child = int(poll("the job's pid file", lambda: pid_file.exists() and pid_file.read_text().strip()))
    db.close()
    stack.pg_stop()
    try:
        poll("the child to be killed", lambda: dead(child), timeout=10)
        worker.send_signal(signal.SIGTERM)
        poll("the worker to exit", lambda: worker.poll() is not None, timeout=10)
        assert worker.returncode == 0, worker.log.read_text()[-3000:]
        assert "dropped: the lease was lost" in worker.log.read_text()
    finally:
        stack.pg_start()
