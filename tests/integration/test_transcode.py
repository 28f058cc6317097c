"""The transcode job end to end: a file imported through the API is probed, then `vtp-worker --once --queues
heavy` runs the transcode job (queued by the probe: sql/005_hls.sql). It must publish STORAGE/<id>/hls/ with
one folder per rung (never upscaled, odd sizes made even), our master playlist (peak and average bandwidth,
codecs, resolution, frame rate, sorted), segments of 2 s here (VTP_HLS_SEGMENT_S) that each start with an IDR
frame at the same time in every rung (checked with ffprobe), and playlists that a strict HLS parser
(npm hls-parser, tests/hls/check.js) accepts. The recording then lists its renditions and a stream_url.
Audio-only, video-only and VP8/Opus sources work; a corrupt source fails with a readable error."""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers import API, Client, assert_json, make_token, unique
from test_import import FFMPEG, upload
from test_probe import job_row, only_job, run_worker

SEG_S = 2
FFPROBE = shutil.which("ffprobe") or "/usr/bin/ffprobe"
NODE = shutil.which("node") or "/usr/bin/node"
ROOT = Path(__file__).resolve().parents[2]
LADDER = ("1080p:1920x1080:5000:5350:7500,720p:1280x720:2800:2996:4200,480p:854x480:1400:1498:2100,"
          "360p:640x360:500:535:750")


def make(path, video=None, audio=True, seconds=5, args=()):
    """seconds of testsrc2 at size video (None: no video) and/or a sine, encoded with args."""
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y"]
    if video:
        cmd += ["-f", "lavfi", "-i", f"testsrc2=size={video}:rate=30:duration={seconds}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    cmd += [*args, str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return path


H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("transcode-media")
    return {
        "h264": (make(d / "a.mp4", "640x360", args=H264), "video/mp4"),
        "odd": (make(d / "b.mp4", "500x282", args=H264), "video/mp4"),
        "vp8": (make(d / "c.webm", "480x360", args=["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8",
                                                     "-c:a", "libopus"]), "video/webm"),
        "audio": (make(d / "d.mp4", None, args=["-c:a", "aac"]), "video/mp4"),
        "video": (make(d / "e.mp4", "640x360", audio=False, args=H264[:6]), "video/mp4"),
        # variable frame rate: 20 of every 30 frames kept, timestamps as they came
        "vfr": (make(d / "f.mkv", "640x360", args=[*H264, "-vf", "select='lt(mod(n,30),20)'", "-fps_mode", "vfr"]),
                "video/x-matroska"),
    }


@pytest.fixture(scope="module")
def owner(stack):
    sub = unique("inst")
    return sub, make_token(stack, sub, "instructor")


def transcode(stack, db, token, path, content_type, **env):
    """Imports path, runs its probe and its transcode job; returns (recording id, transcode job row)."""
    c = Client(stack.frontends["nginx"], token)
    rid = assert_json(upload(c, Path(path).read_bytes(), content_type), 201)["id"]
    probe = only_job(db, rid, "probe")
    run_worker(stack, "--once", "--queues", "light")
    assert job_row(db, probe)["state"] == "succeeded", job_row(db, probe)
    env = {"VTP_HLS_SEGMENT_S": str(SEG_S), **env}
    playable = only_job(db, rid, "playable")  # the quick rendition first (sql/008_playable.sql)
    run_worker(stack, "--once", "--queues", "light", **env)
    assert job_row(db, playable)["state"] == "succeeded", job_row(db, playable)
    job = only_job(db, rid, "transcode")
    for _ in range(3):
        run_worker(stack, "--once", "--queues", "heavy", **env)
        row = job_row(db, job)
        if row["state"] not in ("queued", "running"):
            return rid, row
    raise AssertionError(f"transcode job {job} did not finish: {job_row(db, job)}")


def master_lines(folder):
    return (folder / "master.m3u8").read_text().splitlines()


def variants(folder):
    """[(attributes dict, uri)] of the master playlist."""
    lines = master_lines(folder)
    out = []
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            attrs = dict(re.findall(r'([A-Z-]+)=("[^"]*"|[^,]*)', line.split(":", 1)[1]))
            out.append(({k: v.strip('"') for k, v in attrs.items()}, lines[i + 1]))
    return out


def segment_starts(rung):
    """[(key_frame, pict_type, pts_time)] of the first video frame of each segment of a rung folder."""
    playlist = (rung / "index.m3u8").read_text().splitlines()
    init = next((re.search(r'URI="([^"]+)"', l).group(1) for l in playlist if l.startswith("#EXT-X-MAP")), None)
    out = []
    for name in [l for l in playlist if l and not l.startswith("#")]:
        data = ((rung / init).read_bytes() if init else b"") + (rung / name).read_bytes()
        proc = subprocess.run([FFPROBE, "-v", "error", "-select_streams", "v:0", "-show_frames", "-read_intervals",
                               "%+#1", "-show_entries", "frame=key_frame,pict_type,pts_time", "-of", "json", "-"],
                              input=data, capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        f = json.loads(proc.stdout)["frames"][0]
        out.append((f["key_frame"], f["pict_type"], round(float(f["pts_time"]), 3)))
    return out


def key_times(rung):
    """Presentation times of the video key frames of a rung, read through its media playlist."""
    proc = subprocess.run([FFPROBE, "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time,flags",
                           "-of", "csv=p=0", str(rung / "index.m3u8")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    times = [float(line.split(",")[0]) for line in proc.stdout.split() if "K" in line.split(",")[1]]
    return [round(t - times[0], 3) for t in times]


def offsets(starts):
    """Segment start times from the first (B-frames delay the first picture by a frame or two)."""
    return [round(s[2] - starts[0][2], 3) for s in starts]


def x264_settings(rung):
    """The settings libx264 wrote into the first picture of a rung folder (its SEI: "cabac=1 ... subme=2 ...")."""
    first = min(p for p in rung.iterdir() if p.name.startswith("seg_"))
    return re.search(rb"x264 - core .*? options: (.*?)\x00", first.read_bytes(), re.S)[1].decode()


def hls_check(*paths):
    proc = subprocess.run([NODE, str(ROOT / "tests/hls/check.js"), *map(str, paths)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_h264_source_makes_aligned_ladder(stack, db, owner, sources):
    rid, row = transcode(stack, db, owner[1], *sources["h264"])
    assert row["state"] == "succeeded", row
    hls = Path(stack.storage_path) / rid / "hls"
    # The quick rendition the recording played from stays for players that chose it, out of the master.
    assert sorted(p.name for p in hls.iterdir()) == ["360p", "master.m3u8", "quick"], list(hls.iterdir())
    assert not [p for p in (Path(stack.storage_path) / rid).iterdir() if p.name.startswith("hls-tmp")]
    lines = master_lines(hls)
    assert lines[:3] == ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"], lines
    [(attrs, uri)] = variants(hls)
    assert uri == "360p/index.m3u8"
    assert attrs["RESOLUTION"] == "640x360" and attrs["FRAME-RATE"] == "30.000", attrs
    assert re.fullmatch(r"avc1\.(?:64|4d)[0-9a-f]{4},mp4a\.40\.2", attrs["CODECS"]), attrs
    assert int(attrs["BANDWIDTH"]) >= int(attrs["AVERAGE-BANDWIDTH"]) > 0, attrs
    # The default ladder's 360p rung is encoded with ultrafast (subme 0; README, docs/performance.md).
    assert re.search(r"\bsubme=0\b", x264_settings(hls / "360p")), x264_settings(hls / "360p")
    starts = segment_starts(hls / "360p")
    assert offsets(starts) == [0.0, 2.0, 4.0], starts  # 5 s in 2 s segments
    assert all(s[0] == 1 and s[1] == "I" for s in starts), starts
    hls_check(hls / "master.m3u8", hls / "360p/index.m3u8")
    assert (hls / "360p/init.mp4").exists() and list((hls / "360p").glob("seg_*.m4s"))
    # The recording lists its renditions.
    rec = assert_json(Client(stack.frontends["nginx"], owner[1]).get(f"{API}/recordings/{rid}"), 200)
    assert [(r["name"], r["width"], r["height"], r["status"]) for r in rec["renditions"]] == [
        ("360p", 640, 360, "ready")], rec
    assert rec["renditions"][0]["bandwidth"] == int(attrs["BANDWIDTH"])
    assert rec["stream_url"] == f"/api/v1/recordings/{rid}/stream/playlist.m3u8", rec
    # /info lists the same renditions, with the bytes of their segments.
    info = assert_json(Client(stack.frontends["nginx"], owner[1]).get(f"{API}/recordings/{rid}/info"), 200)
    on_disk = sum(p.stat().st_size for p in (hls / "360p").iterdir() if p.suffix in (".mp4", ".m4s"))
    assert [(r["name"], r["size_bytes"]) for r in info["renditions"]] == [("360p", on_disk)], info


def test_ladder_rungs_share_idr_times_and_never_upscale(stack, db, owner, tmp_path):
    # A 960x720 (4:3) source: 720p, 480p and 360p rungs, no 1080p; MPEG-TS segments by option.
    src = make(tmp_path / "s.mp4", "960x720", seconds=5, args=H264)
    # The 360p profile names its H.264 level (3.0); the others leave it to the encoder. Presets: 720p superfast,
    # 360p ultrafast (after its level), 480p none (veryfast).
    ladder = LADDER.replace("360p:640x360:500:535:750", "360p:640x360:500:535:750:3.0:ultrafast").replace(
        "720p:1280x720:2800:2996:4200", "720p:1280x720:2800:2996:4200:superfast")
    rid, row = transcode(stack, db, owner[1], src, "video/mp4", VTP_HLS_SEGMENT_TYPE="mpegts",
                         VTP_TRANSCODE_PROFILES=ladder)
    assert row["state"] == "succeeded", row
    hls = Path(stack.storage_path) / rid / "hls"
    got = variants(hls)
    assert [(a["RESOLUTION"], u) for a, u in got] == [
        ("960x720", "720p/index.m3u8"), ("640x480", "480p/index.m3u8"), ("480x360", "360p/index.m3u8")], got
    # level_idc 30 (avc1.PPCCLL); ultrafast, without CABAC, needs only the Main profile (4d), veryfast High (64)
    assert re.match(r"avc1\.4d..1e,", got[2][0]["CODECS"]) and got[1][0]["CODECS"].startswith("avc1.64"), got
    assert not got[0][0]["CODECS"][9:11] == "1e", got
    bandwidths = [int(a["BANDWIDTH"]) for a, _ in got]
    assert bandwidths == sorted(bandwidths, reverse=True), got
    starts = {u.split("/")[0]: segment_starts(hls / u.split("/")[0]) for _, u in got}
    assert starts["720p"] == starts["480p"] == starts["360p"], starts
    assert offsets(starts["720p"]) == [0.0, 2.0, 4.0], starts
    assert all(s[0] == 1 and s[1] == "I" for s in starts["720p"]), starts
    assert list((hls / "720p").glob("seg_*.ts"))
    hls_check(hls / "master.m3u8", *(hls / u for _, u in got))
    # Each rung was encoded with its preset: libx264 writes its settings into the first picture (subme is 0
    # in ultrafast, 1 in superfast, 2 in veryfast; ultrafast also has no CABAC).
    settings = {rung: x264_settings(hls / rung) for rung in ("720p", "480p", "360p")}
    subme = {rung: re.search(r"\bsubme=(\d+)", text)[1] for rung, text in settings.items()}
    assert subme == {"720p": "1", "480p": "2", "360p": "0"}, settings
    assert "cabac=0" in settings["360p"] and "cabac=1" in settings["480p"], settings


@pytest.mark.parametrize("name, resolution, codecs", [
    ("odd", "500x282", r"avc1\.(?:64|4d)[0-9a-f]{4},mp4a\.40\.2"),
    ("vp8", "480x360", r"avc1\.(?:64|4d)[0-9a-f]{4},mp4a\.40\.2"),
    ("audio", None, r"mp4a\.40\.2"),
    ("video", "640x360", r"avc1\.(?:64|4d)[0-9a-f]{4}"),
    ("vfr", "640x360", r"avc1\.(?:64|4d)[0-9a-f]{4},mp4a\.40\.2"),
])
def test_other_sources(stack, db, owner, sources, name, resolution, codecs):
    # VFR in MPEG-TS: its segments carry absolute timestamps, so ffprobe sees the real key frame times
    # (reading fMP4 segments one after another, it runs the timeline on over the gaps of a VFR source).
    env = {"VTP_HLS_SEGMENT_TYPE": "mpegts"} if name == "vfr" else {}
    rid, row = transcode(stack, db, owner[1], *sources[name], **env)
    assert row["state"] == "succeeded", row
    hls = Path(stack.storage_path) / rid / "hls"
    [(attrs, uri)] = variants(hls)
    assert attrs.get("RESOLUTION") == resolution, attrs
    assert re.fullmatch(codecs, attrs["CODECS"]), attrs
    hls_check(hls / "master.m3u8", hls / uri)
    if resolution:
        starts = segment_starts(hls / uri.split("/")[0])
        assert all(s[0] == 1 and s[1] == "I" for s in starts), starts
        # one key frame per segment, at every 2 s boundary (VFR too)
        assert key_times(hls / uri.split("/")[0]) == pytest.approx([0.0, 2.0, 4.0], abs=0.05), starts


def test_1080p_source_gets_the_four_rungs(stack, db, owner, tmp_path):
    src = make(tmp_path / "hd.mp4", "1920x1080", seconds=3, args=H264)
    rid, row = transcode(stack, db, owner[1], src, "video/mp4", VTP_TRANSCODE_PROFILES=LADDER)
    assert row["state"] == "succeeded", row
    hls = Path(stack.storage_path) / rid / "hls"
    got = variants(hls)
    assert [(a["RESOLUTION"], u) for a, u in got] == [
        ("1920x1080", "1080p/index.m3u8"), ("1280x720", "720p/index.m3u8"), ("854x480", "480p/index.m3u8"),
        ("640x360", "360p/index.m3u8")], got
    starts = [segment_starts(hls / u.split("/")[0]) for _, u in got]
    assert all(s == starts[0] for s in starts) and offsets(starts[0]) == [0.0, 2.0], starts
    hls_check(hls / "master.m3u8", *(hls / u for _, u in got))


def test_corrupt_source_fails_readably(stack, db, owner, sources):
    data = bytearray(Path(sources["h264"][0]).read_bytes())
    cut = bytes(data[: len(data) // 3])  # faststart is off: the moov is at the end, cut away
    c = Client(stack.frontends["nginx"], owner[1])
    rid = assert_json(upload(c, cut + os.urandom(2000), "video/mp4"), 201)["id"]
    with db.cursor() as cur:  # skip the probe: the transcode job meets the file itself
        cur.execute("INSERT INTO jobs (kind, recording_id, priority, max_attempts, payload)"
                    " SELECT 'transcode', id, 0, 1, jsonb_build_object('source_file', source_file)"
                    " FROM recordings WHERE id = %s RETURNING id", (rid,))
        job = cur.fetchone()[0]
    run_worker(stack, "--once", "--queues", "heavy")
    row = job_row(db, job)
    assert row["state"] == "failed", row
    assert "is not a media file that can be read" in row["last_error"] or "cannot be transcoded" in row["last_error"], row
    assert "/" not in row["last_error"].split(":")[0], row  # no file path
    assert not (Path(stack.storage_path) / rid / "hls").exists()


def test_cancel_stops_the_job_and_leaves_nothing(stack, db, owner, tmp_path):
    src = make(tmp_path / "long.mp4", "640x360", seconds=40, args=H264)
    c = Client(stack.frontends["nginx"], owner[1])
    rid = assert_json(upload(c, src.read_bytes(), "video/mp4"), 201)["id"]
    with db.cursor() as cur:
        cur.execute("INSERT INTO jobs (kind, recording_id, priority, payload) SELECT 'transcode', id, 0,"
                    " jsonb_build_object('source_file', source_file) FROM recordings WHERE id = %s RETURNING id", (rid,))
        job = cur.fetchone()[0]
    worker = subprocess.Popen([str(stack.build_dir / "vtp-worker"), "--once", "--queues", "heavy"],
                              env=dict(stack.env, VTP_HEARTBEAT_MS="200"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while job_row(db, job)["progress"] <= 0 and time.time() < deadline:
            time.sleep(0.1)
        assert job_row(db, job)["state"] == "running", job_row(db, job)
        admin = Client(stack.frontends["nginx"], make_token(stack, unique("adm"), "admin"))
        assert admin.post(f"/api/v1/jobs/{job}/cancel").status_code == 202
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    row = job_row(db, job)
    assert row["state"] == "cancelled", row
    folder = Path(stack.storage_path) / rid
    assert sorted(p.name for p in folder.iterdir()) == ["source.mp4"], list(folder.iterdir())
