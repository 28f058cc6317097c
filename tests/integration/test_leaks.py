"""LeakSanitizer on both long-running programs through a realistic session: vtp-api (the stack's spawn-fcgi
process, restarted for this test with ASAN_OPTIONS=detect_leaks=1) answers requests of every kind through
nginx and Apache mod_proxy_fcgi, errors included; a vtp-worker (same options) runs a whole pipeline for an
import (probe, thumbnail, storyboard, transcode), an mp4 job, a live recording with its pipeline, a purge, and
a cancelled and retried job. Both are then stopped cleanly (SIGTERM); each must exit 0 and its log must hold
no LeakSanitizer or AddressSanitizer report. The worker's job children run the leak check before they leave
(worker/supervisor.c does it in sanitizer builds), so job code is covered too, as is the API's thumbnail child.

Before this test nothing read the sanitizers' reports of the services: the harness passed ASAN_OPTIONS through
only when set, and a leak report at exit went to api.log unread."""

import os
import signal
import subprocess
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import requests

from helpers import API, Client, assert_json, assert_problem, auth, claims, make_token, sign_jwt, unique
from test_import import upload
from test_record import Recording, send
from test_transcode import H264, make
from test_worker import Workers, poll

LEAK_OPTIONS = {"ASAN_OPTIONS": "detect_leaks=1", "LSAN_OPTIONS": "report_objects=1"}
REPORTS = ("LeakSanitizer", "AddressSanitizer", "runtime error:")


@pytest.fixture
def leak_checked_api(stack):
    """The stack's vtp-api restarted with LEAK_OPTIONS; yields a function that stops it with SIGTERM and
    returns (exit code, what it logged). A plain vtp-api is started again afterwards."""
    saved = dict(stack.env)
    stack._stop_api()
    offset = stack.logs["api"].stat().st_size
    stack.env.update(LEAK_OPTIONS)
    try:
        stack._start_api()
    finally:
        stack.env.clear()
        stack.env.update(saved)

    def stop():
        proc = stack.api_proc
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        with open(stack.logs["api"], "rb") as f:
            f.seek(offset)
            return code, f.read().decode("utf-8", "replace")

    try:
        yield stop
    finally:
        if stack.api_proc.poll() is None:
            stack._stop_api()
        stack._start_api()


def test_no_leaks_in_a_realistic_session(stack, db, tmp_path, leak_checked_api):
    queue = "leak" + uuid.uuid4().hex[:10]
    sub = unique("inst")
    tok = make_token(stack, sub, "instructor")
    owner = Client(stack.frontends["nginx"], tok)
    via_apache = Client(stack.frontends["apache_proxy"], tok)
    student_sub = unique("stu")
    student = Client(stack.frontends["nginx"], make_token(stack, student_sub, "student"))
    workers = Workers(stack, tmp_path)
    rec = Recording(stack, db, workers)  # a live recording on a queue of its own
    worker = workers.start("--queues", f"{queue},{rec.queue}", **LEAK_OPTIONS)
    rec_sub = _sub_of(db, rec.id)

    def claim():
        """Moves every queued job of this test's recordings (but the record job) to the test's worker; a tidy
        job (due a day after the ladder) runs now, so that its code is checked too."""
        with db.cursor() as cur:
            cur.execute("UPDATE jobs j SET queue = %s, run_at = CASE WHEN j.kind = 'tidy' THEN now() ELSE j.run_at"
                        " END FROM recordings r WHERE r.id = j.recording_id"
                        " AND r.owner_id IN (%s, %s) AND j.state = 'queued' AND j.kind <> 'record'"
                        " AND j.queue <> %s", (queue, sub, rec_sub, queue))

    def settle(rid):
        def done():
            claim()
            with db.cursor() as cur:
                cur.execute("SELECT count(*) FILTER (WHERE state IN ('queued', 'running')),"
                            " count(*) FILTER (WHERE state = 'failed') FROM jobs WHERE recording_id = %s", (rid,))
                return cur.fetchone()
        left = poll(f"the jobs of {rid} to end", lambda: (d := done())[0] == 0 and d, timeout=240)
        assert left[1] == 0, _jobs(db, rid)

    try:
        # -- an import and its whole pipeline
        src = make(tmp_path / "s.mp4", "320x240", seconds=3, args=H264)
        rid = assert_json(upload(owner, src.read_bytes(), "video/mp4"), 201)["id"]
        settle(rid)
        base = stack.frontends["nginx"]
        for c in (owner, via_apache):
            assert_json(c.get(f"{API}/recordings/{rid}"), 200)
            assert_json(c.get(API + "/recordings?limit=5"), 200)
            assert_json(c.get(f"{API}/recordings/{rid}/info"), 200)
            assert c.get(f"{API}/recordings/{rid}/thumbnail", params={"width": 64 + len(c.base) % 7}).status_code == 200
            assert c.get(f"{API}/recordings/{rid}/thumbnail").status_code == 200
            for name in ("storyboard.json", "storyboard.vtt", "storyboard.jpg"):
                assert c.get(f"{API}/recordings/{rid}/{name}").status_code == 200, name
            assert requests.head(f"{c.base}{API}/recordings/{rid}", headers=auth(tok), timeout=15).status_code == 200
        master = owner.get(f"{API}/recordings/{rid}/stream/playlist.m3u8")
        assert master.status_code == 200, master.text
        media_url = urllib.parse.urljoin(base + f"{API}/recordings/{rid}/stream/playlist.m3u8",
                                         next(l for l in master.text.splitlines() if l and not l.startswith("#")))
        media = Client(base).get(media_url)
        assert media.status_code == 200, media.text
        seg = next(l for l in media.text.splitlines() if l and not l.startswith("#"))
        assert Client(base).get(urllib.parse.urljoin(media_url, seg)).status_code == 200
        # -- progress, analytics, participants, shares
        assert owner.event(rid, student_sub, "join").status_code == 204
        assert_json(owner.get(f"{API}/recordings/{rid}/participants"), 200)
        body = {"session_id": uuid.uuid4().hex, "event": "heartbeat", "position_s": 2, "from_s": 0, "to_s": 2}
        assert student.post(f"{API}/recordings/{rid}/progress", body).status_code == 204
        assert_json(student.get(f"{API}/recordings/{rid}/progress"), 200)
        assert_json(owner.get(f"{API}/recordings/{rid}/analytics"), 200)
        share = assert_json(owner.post(f"{API}/recordings/{rid}/shares", {"max_views": 3}), 201)
        assert_json(Client(base).get(f"{API}/recordings/{rid}", params={"share": share["token"]}), 200)
        assert_json(owner.get(f"{API}/recordings/{rid}/shares"), 200)
        assert owner.delete(f"{API}/shares/{share['id']}").status_code == 204
        # -- an mp4 rendition and its download; a job cancelled and retried
        job = assert_json(owner.post(f"{API}/recordings/{rid}/transcode", {"format": "mp4"}), 202)["job"]
        settle(rid)
        url = assert_json(owner.get(f"{API}/recordings/{rid}/download-url", params={"rendition": "mp4"}), 200)["url"]
        assert Client(base).get(url).status_code == 200
        again = assert_json(owner.post(f"{API}/recordings/{rid}/transcode", {"profiles": ["360p"]}), 202)["job"]
        with db.cursor() as cur:  # kept away from the worker until it is cancelled
            cur.execute("UPDATE jobs SET queue = 'parked' || %s WHERE id = %s", (queue, again["id"]))
        admin = Client(base, make_token(stack, unique("admin"), "admin"))
        assert admin.post(f"{API}/jobs/{again['id']}/cancel").status_code == 202
        assert admin.post(f"{API}/jobs/{again['id']}/retry").status_code == 202
        settle(rid)
        assert_json(admin.get(f"{API}/jobs", params={"recording_id": rid}), 200)
        assert_json(admin.get(f"{API}/jobs/{job['id']}"), 200)
        # -- errors of every kind
        assert_problem(Client(base).get(API + "/recordings"), 401)
        none_alg = sign_jwt(claims(sub, "instructor"), "", header={"alg": "none", "typ": "JWT"})
        assert_problem(Client(base, none_alg).get(API + "/recordings"), 401)
        assert_problem(owner.get(f"{API}/recordings/{uuid.uuid4()}"), 404)
        assert_problem(owner.post(API + "/recordings/start", {"title": 5}), 400)
        assert_problem(owner.post(API + "/recordings/start", {"title": "x" * (2 << 20)}), 413)
        assert_problem(owner.get(API + "/recordings", params={"limit": "many"}), 400, "invalid_query")
        assert owner.get("/api/v1/nothing/here").status_code == 404
        # -- a live recording: captured, stopped through the API, then its own pipeline
        rec.wait_listening()
        send(rec, 3)
        assert rec.stop()["state"] == "succeeded"
        settle(rec.id)
        # -- a purge
        assert owner.delete(f"{API}/recordings/{rid}").status_code in (202, 204)
        settle(rid)
        assert_json(owner.get("/health"), 200)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker_code = worker.wait(timeout=60)
        api_code, api_log = leak_checked_api()
    worker_log = worker.log.read_text(errors="replace")
    for name, code, log in (("vtp-api", api_code, api_log), ("vtp-worker", worker_code, worker_log)):
        found = [r for r in REPORTS if r in log]
        assert not found, f"{name}: {found} in its log:\n{_report(log)}"
        assert code == 0, f"{name} exited {code}:\n{log[-3000:]}"


def _sub_of(db, rid):
    with db.cursor() as cur:
        cur.execute("SELECT owner_id FROM recordings WHERE id = %s", (rid,))
        return cur.fetchone()[0]


def _jobs(db, rid):
    with db.cursor() as cur:
        cur.execute("SELECT id, kind, state, attempts, last_error FROM jobs WHERE recording_id = %s", (rid,))
        return cur.fetchall()


def _report(log):
    """The sanitizer reports of a log, at most 12 kB of them."""
    lines = log.splitlines()
    start = next((i for i, l in enumerate(lines) if any(r in l for r in REPORTS)), 0)
    return "\n".join(lines[max(0, start - 5):])[:12000]
