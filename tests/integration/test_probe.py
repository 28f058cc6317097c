"""The probe and purge jobs end to end: a file imported through the API
(POST /api/v1/recordings) is probed by `vtp-worker --once`, and
GET /api/v1/recordings/{id}/info answers, through every frontend, with the
codecs, dimensions and duration of the media that ffmpeg made (H.264/AAC
MP4, VP8/Opus WebM); before the probe it is 409 info_not_ready. Random bytes
sent as video/mp4 make the probe fail on every attempt with a readable error,
then the job is `failed` and the recording too. A purge job removes the
recording's folder, and running it again succeeds.

Other tests leave queued jobs behind in the shared database, so each test
gives its own job priority 0 (as an admin would with SQL) and runs the worker
on the light queue only: `--once` then claims that job (or, should another
leftover have priority 0 too, the next `--once` does)."""

import os
import random
import subprocess
import time
from pathlib import Path

import pytest

from helpers import API, Client, assert_json, assert_problem, make_token, unique
from test_import import MEDIA, make_media, upload

WORKER_TIMEOUT = 120


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe-media")
    return {name: make_media(folder / f"source.{ext}", args) for name, (_, ext, args) in MEDIA.items()}


@pytest.fixture
def owner(stack):
    sub = unique("inst")
    return sub, make_token(stack, sub, "instructor")


def run_worker(stack, *args, **env):
    """vtp-worker with the stack's environment (plus env) and args; returns the CompletedProcess."""
    proc = subprocess.run([str(stack.build_dir / "vtp-worker"), *args], env=dict(stack.env, **env),
                          capture_output=True, text=True, timeout=WORKER_TIMEOUT)
    assert proc.returncode == 0, f"vtp-worker {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
    return proc


def only_job(db, rid, kind):
    """The recording's job of kind, made the next one the light queue runs."""
    with db.cursor() as cur:
        cur.execute("UPDATE jobs SET priority = 0 WHERE recording_id = %s AND kind = %s AND state = 'queued'"
                    " RETURNING id", (rid, kind))
        rows = cur.fetchall()
    assert len(rows) == 1, f"expected one queued {kind} job for {rid}, got {rows}"
    return rows[0][0]


def run_job(stack, db, job_id, until, **env):
    """Runs `vtp-worker --once --queues light` until until(row of job_id) holds; returns the row."""
    for _ in range(10):
        run_worker(stack, "--once", "--queues", "light", **env)
        row = job_row(db, job_id)
        if until(row):
            return row
    raise AssertionError(f"job {job_id} did not get there after 10 runs of the worker: {row}")


def job_row(db, job_id):
    with db.cursor() as cur:
        cur.execute("SELECT state, attempts, max_attempts, last_error, progress FROM jobs WHERE id = %s", (job_id,))
        return dict(zip(("state", "attempts", "max_attempts", "last_error", "progress"), cur.fetchone()))


def recording_status(db, rid):
    with db.cursor() as cur:
        cur.execute("SELECT status, status_detail FROM recordings WHERE id = %s", (rid,))
        return cur.fetchone()


def import_file(stack, token, data, content_type):
    c = Client(stack.frontends["nginx"], token)
    return assert_json(upload(c, data, content_type), 201)


@pytest.mark.parametrize("name", sorted(MEDIA))
def test_probe_fills_the_info(stack, db, owner, media, name):
    sub, token = owner
    content_type, ext, _ = MEDIA[name]
    data = media[name].read_bytes()
    rec = import_file(stack, token, data, content_type)
    rid = rec["id"]
    for base in stack.frontends.values():
        assert_problem(Client(base, token).get(f"{API}/recordings/{rid}/info"), 409, "info_not_ready")

    job = only_job(db, rid, "probe")
    row = run_job(stack, db, job, lambda r: r["state"] != "queued")
    assert row["state"] == "succeeded", row
    assert row["progress"] == 1, row
    # The probe queued the steps that follow it (sql/006_images.sql: the
    # thumbnail and the storyboard); the recording is ready after them.
    assert recording_status(db, rid)[0] == "processing"
    for kind in ("thumbnail", "storyboard"):
        assert run_job(stack, db, only_job(db, rid, kind), lambda r: r["state"] != "queued")["state"] == "succeeded"
    # ... and the playable rendition (sql/008_playable.sql), then the transcode (sql/005_hls.sql), in the heavy queue.
    assert run_job(stack, db, only_job(db, rid, "playable"), lambda r: r["state"] != "queued")["state"] == "succeeded"
    transcode = only_job(db, rid, "transcode")
    assert recording_status(db, rid)[0] == "processing"
    run_worker(stack, "--once", "--queues", "heavy")
    assert job_row(db, transcode)["state"] == "succeeded", job_row(db, transcode)
    assert recording_status(db, rid)[0] == "ready"

    for base in stack.frontends.values():
        info = assert_json(Client(base, token).get(f"{API}/recordings/{rid}/info"), 200)
        assert list(info) == ["duration_s", "size_bytes", "bit_rate", "container", "video", "audio", "renditions"]
        assert abs(info["duration_s"] - 3.0) < 0.1, info
        assert info["size_bytes"] == len(data), info
        assert isinstance(info["bit_rate"], int) and info["bit_rate"] > 0, info
        assert info["container"] == ext, info
        video, audio = info["video"], info["audio"]
        assert set(video) == {"codec", "profile", "width", "height", "fps", "bit_rate"}, video
        assert (video["codec"], video["width"], video["height"]) == (
            {"mp4": "h264", "webm": "vp8"}[name], 640, 360), video
        assert video["fps"] == 30, video
        assert set(audio) == {"codec", "sample_rate", "channels", "bit_rate"}, audio
        assert (audio["codec"], audio["sample_rate"], audio["channels"]) == (
            {"mp4": "aac", "webm": "opus"}[name], 48000, 2), audio
        # The pipeline ran the transcode too: the one rung a 640x360 source gets.
        assert [(r["name"], r["width"], r["height"]) for r in info["renditions"]] == [("360p", 640, 360)], info
        assert info["renditions"][0]["size_bytes"] > 0, info
    if name == "mp4":
        assert isinstance(info["video"]["profile"], str) and info["video"]["profile"], info
        assert isinstance(info["audio"]["bit_rate"], int), info

    # The recording now has its duration; readers who are not allowed see 404.
    got = assert_json(Client(stack.frontends["nginx"], token).get(f"{API}/recordings/{rid}"), 200)
    assert got["status"] == "ready" and abs(got["duration_s"] - 3.0) < 0.1, got
    stranger = Client(stack.frontends["nginx"], make_token(stack, unique("stud"), "student"))
    assert_problem(stranger.get(f"{API}/recordings/{rid}/info"), 404, "recording_not_found")


def test_info_of_an_unknown_recording_is_404(stack, owner):
    c = Client(stack.frontends["nginx"], owner[1])
    assert_problem(c.get(f"{API}/recordings/5d0c9f2e-8a1b-4c3d-9e7f-0a1b2c3d4e5f/info"), 404, "recording_not_found")
    assert_problem(c.get(f"{API}/recordings/NOT-A-UUID/info"), 400, "invalid_uuid")


def test_corrupt_file_fails_the_probe_and_the_recording(stack, db, owner):
    sub, token = owner
    # Fixed bytes, not os.urandom(): one CI run in many, random bytes probed as raw H.263 (another error).
    rec = import_file(stack, token, random.Random(7).randbytes(256 * 1024), "video/mp4")
    rid = rec["id"]
    job = only_job(db, rid, "probe")
    with db.cursor() as cur:
        cur.execute("UPDATE jobs SET max_attempts = 2 WHERE id = %s", (job,))
    for attempt in (1, 2):
        # Retries wait VTP_RETRY_BASE_MS (1 ms here) before they may run again.
        row = run_job(stack, db, job, lambda r: r["attempts"] == attempt and r["state"] != "running",
                      VTP_RETRY_BASE_MS="1")
        assert row["state"] == ("queued" if attempt == 1 else "failed"), row
        time.sleep(0.05)
    error = row["last_error"]
    assert "source.mp4 is not a media file that can be read" in error, error
    assert "/" not in error.replace("source.mp4", ""), f"no paths in errors: {error}"
    status, detail = recording_status(db, rid)
    assert status == "failed", (status, detail)
    assert "probe" in detail and "not a media file" in detail, detail
    problem = assert_problem(Client(stack.frontends["nginx"], token).get(f"{API}/recordings/{rid}/info"), 409,
                             "info_not_ready")
    assert "failed" in problem["detail"]


def test_purge_removes_the_files_and_is_idempotent(stack, db, owner, media):
    sub, token = owner
    rec = import_file(stack, token, media["mp4"].read_bytes(), "video/mp4")
    rid = rec["id"]
    folder = Path(stack.storage_path) / rid
    assert folder.is_dir()
    c = Client(stack.frontends["nginx"], token)
    assert c.delete(f"{API}/recordings/{rid}").status_code == 204
    job = only_job(db, rid, "purge")
    row = run_job(stack, db, job, lambda r: r["state"] != "queued")
    assert row["state"] == "succeeded", row
    assert not folder.exists()
    # A second purge (an admin's, by SQL) finds nothing to do and succeeds.
    with db.cursor() as cur:
        cur.execute("INSERT INTO jobs (kind, recording_id, priority) VALUES ('purge', %s, 0) RETURNING id", (rid,))
        again = cur.fetchone()[0]
    row = run_job(stack, db, again, lambda r: r["state"] != "queued")
    assert row["state"] == "succeeded", row
    assert os.path.isdir(stack.storage_path)
