"""Leases and the files of a job's attempts. Scratch folders are per attempt: a transcode attempt that dies
leaves STORAGE/<id>/hls-tmp-<job>-<attempt> behind; the next attempt writes its own folder, removes the dead
one's, and publishes hls/ with nothing of the first attempt left. A recorder is the one job that outlives a
lease its worker cannot renew (a live class cannot be sent again): with PostgreSQL stopped for longer than
the lease it keeps recording, and once the database is back its worker renews the lease and the recording is
whole, in one attempt. (Other jobs being killed before their lease ends is in test_worker.py.)"""

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import psycopg2
import pytest

from helpers import Client, assert_json, make_token, poll, unique
from test_import import upload
from test_probe import job_row, only_job, run_worker
from test_record import Recording, ffprobe_duration, sender
from test_transcode import H264, make
from test_worker import Workers, child_of, dead, workers  # noqa: F401 - workers is a fixture


def files_under(path):
    return [p for p in path.rglob("*") if p.is_file()]


def test_a_killed_transcode_attempt_leaves_its_scratch_to_the_next_one_which_removes_it(stack, db, tmp_path):
    source = make(tmp_path / "long.mp4", "640x360", seconds=60, args=H264)
    c = Client(stack.frontends["nginx"], make_token(stack, unique("inst"), "instructor"))
    rid = assert_json(upload(c, source.read_bytes(), "video/mp4"), 201)["id"]
    for kind in ("probe", "playable"):
        step = only_job(db, rid, kind)
        run_worker(stack, "--once", "--queues", "light", VTP_HLS_SEGMENT_S="2")
        assert job_row(db, step)["state"] == "succeeded", job_row(db, step)
    job_id = only_job(db, rid, "transcode")
    # Other tests leave heavy jobs behind: this one moves to a queue of its own, which the worker alone serves.
    queue = "lease" + uuid.uuid4().hex[:10]
    with db.cursor() as cur:
        cur.execute("UPDATE jobs SET queue = %s WHERE id = %s", (queue, job_id))
    folder = Path(stack.storage_path) / rid
    first, second = folder / f"hls-tmp-{job_id}-1", folder / f"hls-tmp-{job_id}-2"
    with open(tmp_path / "worker.log", "w") as out:
        worker = subprocess.Popen([str(stack.build_dir / "vtp-worker"), "--queues", f"{queue}:1"],
                                  env=dict(stack.env, VTP_RETRY_BASE_MS="100", VTP_HLS_SEGMENT_S="2"), stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        poll(lambda: first.is_dir() and files_under(first), 60, what="attempt 1 to write its scratch folder")
        children = subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 1, children  # one heavy slot: the transcode's child
        os.kill(int(children[0]), signal.SIGKILL)
        # Attempt 2 works in its own folder, and attempt 1's is gone by then. Polling samples the two
        # conditions; it cannot prove which came first.
        poll(lambda: second.is_dir() and not first.exists(), 60, interval=0.01, what="attempt 2's own scratch folder")
        poll(lambda: job_row(db, job_id)["state"] == "succeeded", 120, what="attempt 2 to succeed")
        assert worker.poll() is None
    finally:
        worker.kill()
        worker.wait()
    with db.cursor() as cur:
        cur.execute("SELECT attempt, outcome, error FROM job_attempts WHERE job_id = %s ORDER BY attempt", (job_id,))
        history = cur.fetchall()
    assert [(a, outcome) for a, outcome, _ in history] == [(1, "failed"), (2, "succeeded")], history
    assert "killed by signal 9" in history[0][2]
    assert not [p.name for p in folder.iterdir() if p.name.startswith("hls-tmp")], list(folder.iterdir())
    assert (folder / "hls" / "master.m3u8").is_file()
    assert files_under(folder / "hls" / "360p")


def cpu_seconds(pid):
    """User plus system CPU time the process has used, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_recorder_keeps_recording_through_a_database_outage_longer_than_its_lease(stack, db, workers):
    lease_s = 3  # Workers.start's VTP_LEASE_S
    rec = Recording(stack, db, workers)
    worker = rec.start_worker()
    rec.wait_listening()
    proc = sender(rec.vport, rec.aport, 14)
    poll(lambda: rec.recorded_s() >= 2, 20, what="2 s recorded")
    recorder = child_of(worker)
    db.close()
    stack.pg_stop()
    try:
        cpu_before = cpu_seconds(worker.pid)
        # What is checked is a duration: the recorder stays alive past the lease it cannot renew.
        until = time.monotonic() + lease_s + 1.5
        while time.monotonic() < until:
            assert not dead(recorder), "the recorder was stopped during the outage"
            time.sleep(0.05)
        # The worker waits for its next reconnect instead of waking at once for the recorder's lost lease.
        outage_cpu = cpu_seconds(worker.pid) - cpu_before
        assert outage_cpu < 0.5, f"the worker used {outage_cpu:.2f} s of CPU in a {lease_s + 1.5} s outage"
    finally:
        stack.pg_start()
    rec.db = psycopg2.connect(stack.database_url)
    rec.db.autocommit = True
    try:
        def renewed():
            with rec.db.cursor() as cur:
                cur.execute("SELECT lease_expires_at > clock_timestamp() + interval '1 second' FROM jobs"
                            " WHERE id = %s AND state = 'running' AND attempts = 1", (rec.job,))
                row = cur.fetchone()
            return row and row[0]
        poll(renewed, 15, what="the recorder's worker to renew its lease")
        assert child_of(worker) == recorder
        _, err = proc.communicate(timeout=40)
        assert proc.returncode == 0, err.decode()
        rec.wait_drained()
        row = rec.stop()
        assert row["state"] == "succeeded" and row["attempts"] == 1, row
        duration, _ = ffprobe_duration(rec.folder / "source.mkv")
        assert abs(duration - 14) <= 0.5, duration  # nothing lost to the outage
        log = worker.log.read_text()
        assert "stopping it" not in log and f"job {rec.job}: lease expired" not in log, log[-3000:]
    finally:
        rec.db.close()
