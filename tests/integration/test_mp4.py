"""POST /api/v1/recordings/{id}/transcode and the mp4 job: the endpoint queues a transcode (HLS, with a
subset of the configured profiles) or an mp4 job for the owner; the mp4 job writes STORAGE/<id>/mp4/<rung>.mp4
with the moov box before the mdat (faststart): by remux for an H.264/AAC source, by encode for VP8/Opus;
GET .../download?rendition=mp4 then serves it."""

import json
import struct
import subprocess
from pathlib import Path

import pytest

from helpers import API, Client, assert_json, assert_problem, make_token, unique
from test_import import upload
from test_probe import job_row, run_worker
from test_transcode import FFPROBE, H264, make, variants


@pytest.fixture(scope="module")
def owner(stack):
    sub = unique("inst")
    return sub, make_token(stack, sub, "instructor")


def top_level_boxes(path):
    data = Path(path).read_bytes()
    out, i = [], 0
    while i + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[i:i + 8])
        if size == 1:
            size = struct.unpack(">Q", data[i + 8:i + 16])[0]
        out.append(kind.decode("latin-1"))
        if size < 8:
            break
        i += size
    return out


def streams(path):
    proc = subprocess.run([FFPROBE, "-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "json",
                           str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [(s["codec_name"], s.get("width"), s.get("height")) for s in json.loads(proc.stdout)["streams"]]


def queue(stack, db, token, rid, body):
    r = Client(stack.frontends["nginx"], token).post(f"{API}/recordings/{rid}/transcode", body)
    job = assert_json(r, 202)["job"]
    with db.cursor() as cur:  # run it next
        cur.execute("UPDATE jobs SET priority = 0 WHERE id = %s", (job["id"],))
    return job


def run(stack, db, job_id):
    for _ in range(3):
        run_worker(stack, "--once", "--queues", "heavy")
        row = job_row(db, job_id)
        if row["state"] not in ("queued", "running"):
            return row
    raise AssertionError(job_row(db, job_id))


@pytest.mark.parametrize("name, video, args, remuxed, ctype", [
    ("h264", "640x360", H264, True, "video/mp4"),
    ("vp8", "480x360", ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus"], False,
     "video/webm"),
])
def test_mp4_job_makes_a_faststart_file(stack, db, owner, tmp_path, name, video, args, remuxed, ctype):
    ext = "webm" if ctype == "video/webm" else "mp4"
    src = make(tmp_path / f"s.{ext}", video, seconds=3, args=args)
    c = Client(stack.frontends["nginx"], owner[1])
    rid = assert_json(upload(c, src.read_bytes(), ctype), 201)["id"]
    job = queue(stack, db, owner[1], rid, {"format": "mp4"})
    assert (job["kind"], job["state"], job["recording_id"]) == ("mp4", "queued", rid), job
    row = run(stack, db, job["id"])
    assert row["state"] == "succeeded", row
    out = Path(stack.storage_path) / rid / "mp4" / "360p.mp4"
    boxes = top_level_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat"), boxes
    got = streams(out)
    assert ("h264", int(video.split("x")[0]), 360) in got and ("aac", None, None) in got, got
    if remuxed:  # a copy: the same bytes of picture, so the same size within the container's overhead
        assert abs(out.stat().st_size - src.stat().st_size) < 20000, (out.stat().st_size, src.stat().st_size)
    assert not [p for p in out.parent.iterdir() if ".tmp-" in p.name]
    r = c.get(f"{API}/recordings/{rid}/download?rendition=mp4")
    assert r.status_code == 200 and r.content == out.read_bytes(), r.status_code


def test_transcode_endpoint_queues_chosen_profiles(stack, db, owner, tmp_path):
    src = make(tmp_path / "s.mp4", "960x720", seconds=3, args=H264)
    c = Client(stack.frontends["nginx"], owner[1])
    rid = assert_json(upload(c, src.read_bytes(), "video/mp4"), 201)["id"]
    job = queue(stack, db, owner[1], rid, {"profiles": ["360p"], "format": "hls"})
    assert job["kind"] == "transcode", job
    with db.cursor() as cur:
        cur.execute("SELECT payload FROM jobs WHERE id = %s", (job["id"],))
        assert cur.fetchone()[0]["profiles"] == ["360p"]
    assert run(stack, db, job["id"])["state"] == "succeeded"
    got = variants(Path(stack.storage_path) / rid / "hls")
    assert [(a["RESOLUTION"], u) for a, u in got] == [("480x360", "360p/index.m3u8")], got


def test_transcode_endpoint_checks(stack, db, owner, tmp_path):
    base = stack.frontends["nginx"]
    c = Client(base, owner[1])
    rid = assert_json(upload(c, b"\0" * 100, "video/mp4"), 201)["id"]
    url = f"{API}/recordings/{rid}/transcode"
    assert_problem(c.post(url, {"profiles": ["4k"]}), 422, "invalid_value")
    assert_problem(c.post(url, {"profiles": []}), 422, "invalid_value")
    assert_problem(c.post(url, {"profiles": [1]}), 400, "invalid_type")
    assert_problem(c.post(url, {"format": "dash"}), 422, "invalid_value")
    assert_problem(c.post(url, {"speed": 2}), 400, "unknown_field")
    stranger = Client(base, make_token(stack, unique("stud"), "student"))
    assert_problem(stranger.post(url, {}), 404, "recording_not_found")
    started = assert_json(c.post(f"{API}/recordings/start", {"title": "t", "room_id": "r",
                                                             "source": {"type": "url", "url": "rtmp://127.0.0.1/x"}}), 201)
    assert_problem(c.post(f"{API}/recordings/{started['id']}/transcode", {}), 409, "source_not_ready")
