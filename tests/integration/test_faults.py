"""Faults the service must survive, with real parts: a full storage filesystem and processes killed at random.

Storage full: the worker gets a small tmpfs (mounted here; the tests run as root) as its storage root. During a
transcode the job fails with a readable last_error naming the lack of space, publishes no rendition (none in
the database, none through the API, no hls/ or leftover temporary folder on disk) and leaves the source as it
was. During a live recording the job fails the same way, publishes no source.mkv, and the Matroska parts
already captured stay on disk and play.

Killed processes: see test_killed_processes_during_a_scripted_session."""

import hashlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from helpers import API, Client, assert_json, assert_problem, make_token, unique
from test_import import upload
from test_probe import job_row, only_job, run_worker
from test_record import Recording, media_end, sender
from test_transcode import H264, make
from test_worker import Workers, poll


@pytest.fixture
def small_fs(tmp_path):
    """mount(size_kib) -> Path of a fresh tmpfs of that size; unmounted at the end of the test."""
    mounted = []

    def mount(size_kib):
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(where)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"cannot mount a tmpfs (the tests run as root): {proc.stderr}"
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def workers(stack, tmp_path):
    w = Workers(stack, tmp_path)
    yield w
    w.stop_all()


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def free_kib(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize // 1024


def test_storage_full_during_a_transcode(stack, db, small_fs, tmp_path):
    tok = make_token(stack, unique("inst"), "instructor")
    c = Client(stack.frontends["nginx"], tok)
    src = make(tmp_path / "a.mp4", "640x360", seconds=4, args=H264)
    rid = assert_json(upload(c, src.read_bytes(), "video/mp4"), 201)["id"]
    probe = only_job(db, rid, "probe")
    run_worker(stack, "--once", "--queues", "light")
    assert job_row(db, probe)["state"] == "succeeded", job_row(db, probe)
    queue = "full" + uuid.uuid4().hex[:10]
    job = only_job(db, rid, "transcode")
    with db.cursor() as cur:  # a queue of its own; one attempt, so the failure is final
        cur.execute("UPDATE jobs SET queue = %s, max_attempts = 1 WHERE id = %s", (queue, job))

    # The recording's folder on a filesystem with room for the source and 48 KiB more.
    folder = Path(stack.storage_path) / rid
    size_kib = sum(f.stat().st_size for f in folder.iterdir()) // 1024 + 64
    fs = small_fs(size_kib)
    shutil.copytree(folder, fs / rid)
    source = next(p for p in (fs / rid).iterdir() if p.name.startswith("source."))
    digest = sha256(source)
    assert free_kib(fs) <= 64, free_kib(fs)

    out = run_worker(stack, "--once", "--queues", queue, STORAGE_PATH=str(fs), VTP_HLS_SEGMENT_S="1")
    assert "AddressSanitizer" not in out.stderr, out.stderr  # (a second av_write_trailer crashed here)
    row = job_row(db, job)
    assert row["state"] == "failed", row
    assert "no space left on device" in (row["last_error"] or "").lower(), row
    # Nothing half-written is published: no rendition anywhere, no output left on disk.
    assert sorted(p.name for p in (fs / rid).iterdir()) == sorted(p.name for p in folder.iterdir()), \
        [(str(p.relative_to(fs)), p.stat().st_size) for p in (fs / rid).rglob("*")]
    assert sha256(source) == digest, "the source was changed"
    with db.cursor() as cur:
        cur.execute("SELECT renditions, status, status_detail FROM recordings WHERE id = %s", (rid,))
        renditions, status, detail = cur.fetchone()
    assert renditions is None, renditions
    assert status == "failed" and "no space left on device" in detail.lower(), (status, detail)
    rec = assert_json(c.get(f"{API}/recordings/{rid}"), 200)
    assert rec["renditions"] == [] and rec["stream_url"] is None, rec
    assert rec["status"] == "failed", rec
    assert_problem(c.get(f"{API}/recordings/{rid}/stream/playlist.m3u8"), 409, "stream_not_ready")
    transcode_job = assert_json(c.get(f"{API}/jobs/{job}"), 200)
    assert "no space left on device" in transcode_job["last_error"].lower(), transcode_job


def test_storage_full_during_a_recording(stack, db, workers, small_fs):
    fs = small_fs(384)
    rec = Recording(stack, db, workers)
    with db.cursor() as cur:
        cur.execute("UPDATE jobs SET max_attempts = 1 WHERE id = %s", (rec.job,))
    rec.start_worker(STORAGE_PATH=str(fs), VTP_RECORD_PART_S="2")
    rec.wait_listening()
    # 300 kbit/s of VP8 and 48 of Opus fill 384 KiB in about 9 s; 30 s are offered.
    proc = sender(rec.vport, rec.aport, 30)
    try:
        row = poll("the record job to fail", lambda: (r := rec.row())["state"] not in ("queued", "running") and r,
                   timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert row["state"] == "failed", row
    assert "no space left on device" in (row["error"] or "").lower(), row
    assert "no space left on device" in (row["detail"] or "").lower(), row  # the recording says why
    # Nothing half-written is published: no source.mkv, no source_file, no renditions.
    folder = fs / rec.id
    assert not (folder / "source.mkv").exists() and row["source_file"] is None, (row, list(folder.iterdir()))
    api = assert_json(rec.client.get(f"{API}/recordings/{rec.id}"), 200)
    assert api["status"] == "failed" and api["renditions"] == [] and api["stream_url"] is None, api
    # What was captured is kept: the parts are there and play for seconds.
    parts = sorted((folder / "parts").iterdir())
    assert len(parts) >= 2, list(folder.iterdir())
    # Every part but the one the disk filled up in holds media; the parts' timestamps continue each other.
    ends = [media_end(p) for p in parts[:-1]]
    assert ends == sorted(ends) and ends[-1] >= 3.0, (ends, [(p.name, p.stat().st_size) for p in parts])
