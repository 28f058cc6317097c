"""The web UI in a real browser: tests/browser/*.mjs (playwright-core driving
Debian's chromium) against the test stack's nginx frontend. Screenshots go to
build/browser-artifacts/. Skipped when chromium or node_modules is missing
(`make test` installs both through deploy/install-deps)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from helpers import SDP, auth, unique

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "browser-artifacts"
CHROMIUM = "/usr/bin/chromium"
API = "/api/v1"


def _need_browser():
    # Missing parts are failures, not skips: make test installs and builds all of them.
    assert os.access(CHROMIUM, os.X_OK), "chromium not installed (deploy/install-deps installs it)"
    assert (REPO / "node_modules" / "playwright-core").is_dir(), "node_modules/playwright-core missing (npm ci)"
    assert (REPO / "www" / "vendor" / "hls.min.js").is_file(), "www/vendor/hls.min.js missing (make all copies it)"


def _run(script, *args, timeout=60):
    proc = subprocess.run(["node", str(REPO / "tests" / "browser" / script), *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)
    return proc, proc.stdout.splitlines()


def _run_talking(script, args, db, timeout=60):
    """Run a browser script that may print `NEED progress <recording id> <fraction>`: mark the
    recording's first job running at that fraction (as a worker would) and answer `done`."""
    proc = subprocess.Popen(["node", str(REPO / "tests" / "browser" / script), *map(str, args)], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if line.startswith("NEED progress "):
                _, _, rec_id, frac = line.split()
                with db.cursor() as cur:
                    cur.execute("UPDATE jobs SET state = 'running', worker = 'browser-test', attempts = 1,"
                                " started_at = coalesce(started_at, now()), lease_expires_at = now() + interval '1 hour',"
                                " progress = %s WHERE id = (SELECT min(id) FROM jobs WHERE recording_id = %s)",
                                (float(frac), rec_id))
                    assert cur.rowcount == 1
                proc.stdin.write("done\n")
                proc.stdin.flush()
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, lines, proc.stderr.read()


def test_ui_recordings_shares_and_errors(stack, token, db):
    _need_browser()
    base = stack.frontends["nginx"]
    sub = unique("teacher")
    tok = token(sub, "instructor", name="Ms Browser")
    title = unique("UI class")
    r = requests.post(f"{base}{API}/recordings/start", headers=auth(tok), timeout=15,
                      json={"title": title, "room_id": "room-ui", "source": {"type": "sdp", "sdp": SDP}})
    assert r.status_code == 201, r.text
    rec_id = r.json()["id"]
    out = ARTIFACTS / "ui"
    shutil.rmtree(out, ignore_errors=True)

    try:
        code, lines, stderr = _run_talking("ui.mjs", (base, tok, out, title), db)
    finally:
        # The job this test pretended to run: cancelled, so no worker of a later test holds or runs it.
        with db.cursor() as cur:
            cur.execute("UPDATE jobs SET state = 'cancelled', finished_at = now(), worker = NULL,"
                        " lease_expires_at = NULL WHERE worker = 'browser-test'")
    stdout = "\n".join(lines)
    assert code == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    oks = [line for line in lines if line.startswith("ok ")]
    assert len(oks) == 14, stdout
    result = json.loads(next(line for line in lines if line.startswith("RESULT "))[7:])

    # What the browser did happened on the server.
    assert requests.get(f"{base}{API}/recordings/{result['deleted']}", headers=auth(tok),
                        timeout=15).status_code == 404
    imported = requests.get(f"{base}{API}/recordings/{result['imported']}", headers=auth(tok), timeout=15).json()
    assert imported["source"]["type"] == "upload" and imported["size_bytes"] == 2 * 1024 * 1024
    assert requests.get(f"{base}{API}/recordings/{rec_id}", headers=auth(tok), timeout=15).status_code == 200
    shares = requests.get(f"{base}{API}/recordings/{rec_id}/shares", headers=auth(tok), timeout=15).json()["items"]
    assert len(shares) == 1 and shares[0]["revoked_at"] is not None
    for name in ("signin-bad-token.png", "recordings.png", "start-error.png", "delete-confirm.png", "import.png", "job-progress.png",
                 "player-not-ready.png", "analytics.png", "shares.png", "share-open.png", "share-revoked.png",
                 "recordings-phone.png"):
        assert (out / name).stat().st_size > 1000, name


@pytest.mark.parametrize("path,ctype", [
    ("/", "text/html"), ("/js/app.js", "javascript"), ("/js/player.js", "javascript"),
    ("/css/app.css", "text/css"), ("/vendor/hls.min.js", "javascript"),
])
def test_ui_files_served_by_every_frontend(base_url, path, ctype):
    """The UI is static files: every frontend (nginx, Apache, shared hosting) serves them, and
    modules only run with a JavaScript content type."""
    r = requests.get(base_url + path, timeout=15)
    assert r.status_code == 200, (path, r.status_code)
    assert ctype in r.headers.get("Content-Type", ""), r.headers.get("Content-Type")


def test_ui_player_with_the_apis_own_stream(stack, token, db, tmp_path):
    """Once the pipeline publishes HLS (import, probe, transcode by vtp-worker), the player plays the API's
    own stream."""
    _need_browser()
    base = stack.frontends["nginx"]
    tok = token(unique("teacher"), "instructor")
    src = tmp_path / "class.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=640x360:rate=25:duration=16", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=16", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", str(src)], check=True, timeout=60)
    r = requests.post(f"{base}{API}/recordings", params={"title": unique("UI stream")}, data=src.read_bytes(),
                      headers={**auth(tok), "Content-Type": "video/mp4"}, timeout=30)
    assert r.status_code == 201, r.text
    rec_id = r.json()["id"]
    # Run this recording's jobs only (probe, then transcode, thumbnails, storyboard), first in their
    # queues, one at a time, as tests/integration/test_transcode.py does.
    for _ in range(10):
        with db.cursor() as cur:
            cur.execute("UPDATE jobs SET priority = 0 WHERE recording_id = %s AND state = 'queued' RETURNING queue",
                        (rec_id,))
            queues = sorted({row[0] for row in cur.fetchall()})
        if not queues:
            break
        for queue in queues:
            proc = stack.run("vtp-worker", "--once", "--queues", queue, timeout=120)
            assert proc.returncode == 0, proc.stderr
    with db.cursor() as cur:   # nothing of ours left at the head of a queue for later tests' workers
        cur.execute("UPDATE jobs SET state = 'cancelled', finished_at = now() WHERE recording_id = %s"
                    " AND state = 'queued'", (rec_id,))
    rec = requests.get(f"{base}{API}/recordings/{rec_id}", headers=auth(tok), timeout=15).json()
    assert rec and rec.get("stream_url"), f"no stream from the API (status {rec and rec.get('status')})"
    share = requests.post(f"{base}{API}/recordings/{rec_id}/shares", headers=auth(tok), json={"max_views": 1000},
                          timeout=15)
    assert share.status_code == 201, share.text
    out = ARTIFACTS / "player-api-stream"
    shutil.rmtree(out, ignore_errors=True)
    proc, lines = _run("player.mjs", base, tok, out, rec_id, "-", share.json()["token"])
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert len([line for line in lines if line.startswith("ok ")]) == 6, proc.stdout
    shares = requests.get(f"{base}{API}/recordings/{rec_id}/shares", headers=auth(tok), timeout=15).json()["items"]
    assert shares[0]["revoked_at"] is not None and shares[0]["views"] >= 1, shares
