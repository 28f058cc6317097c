#!/usr/bin/python3
"""bench/playable_bench.py: time to playable, from the end of the upload (the import's 201) to the first 200 of
the master playlist (GET /recordings/{id}/stream/playlist.m3u8), with a vtp-worker running as in production
(default queues and slots) through the real stack, for:

  h264-60   60 s 1080p30 H.264/AAC (the anchor's make-source.sh): the playable job remuxes it
  h264-120  the same, 120 s: the time must not grow with the length
  vp8-60    60 s 1080p30 VP8/Opus (what WebRTC records): the playable job encodes the lowest rung

Baselines measured in the same run, on the same sources: `ffmpeg` remuxing the source into HLS (-c copy), and
`ffmpeg` encoding the 360p rung alone (libx264 veryfast): what a pipeline that waits for a whole rung needs.
Between sources, the previous recording's remaining jobs (the ladder) are cancelled so that they do not load
the machine. Not part of `make test`. Usage: /usr/bin/python3 bench/playable_bench.py [--build build]
[--anchors DIR] [--runs 1]. Targets (issue 4): h264 < 5 s, vp8 < 10 s, h264-120 not above h264-60.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from ingest_bench import connect, make_token, start_stack  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def wall(argv):
    t = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True)
    return time.monotonic() - t


def make_vp8(src, out):
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src), "-c:v", "libvpx",
                    "-deadline", "realtime", "-cpu-used", "8", "-b:v", "4M", "-g", "60", "-c:a", "libopus", "-b:a",
                    "96k", str(out)], check=True)


def time_to_playable(stack, db, token, path, content_type):
    """Seconds from the upload's 201 to the master playlist's first 200; and the recording id."""
    base = stack.frontends["nginx"]
    headers = {"Authorization": f"Bearer {token}"}
    r = requests.post(f"{base}/api/v1/recordings?title=bench", data=path.read_bytes(),
                      headers={**headers, "Content-Type": content_type})
    t0 = time.monotonic()
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    s = requests.Session()
    while True:
        m = s.get(f"{base}/api/v1/recordings/{rid}/stream/playlist.m3u8", headers=headers)
        if m.status_code == 200:
            return time.monotonic() - t0, rid
        assert m.status_code == 409, m.text
        if time.monotonic() - t0 > 300:
            raise AssertionError(f"not playable after 300 s: {m.text}")
        time.sleep(0.01)


def cancel_rest(db, rid):
    with db.cursor() as cur:
        cur.execute("SELECT vtp_cancel_job(id) FROM jobs WHERE recording_id = %s AND state IN ('queued', 'running')",
                    (rid,))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            cur.execute("SELECT count(*) FROM jobs WHERE recording_id = %s AND state = 'running'", (rid,))
            if cur.fetchone()[0] == 0:
                return
            time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--anchors", default=str(ROOT.parent / "shared" / "anchors"))
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    anchors = Path(args.anchors)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sources = {"h264-60": (tmp / "a60.mp4", "video/mp4"), "h264-120": (tmp / "a120.mp4", "video/mp4"),
                   "vp8-60": (tmp / "v60.webm", "video/webm")}
        subprocess.run(["sh", str(anchors / "make-source.sh"), str(sources["h264-60"][0]), "60"], check=True)
        subprocess.run(["sh", str(anchors / "make-source.sh"), str(sources["h264-120"][0]), "120"], check=True)
        make_vp8(sources["h264-60"][0], sources["vp8-60"][0])

        baseline = {}
        for name, (path, _) in sources.items():
            out = tmp / f"base-{name}"
            out.mkdir()
            remux = wall(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(path), "-c:v", "copy",
                          "-c:a", "aac" if "vp8" in name else "copy", "-f", "hls", "-hls_time", "6",
                          "-hls_playlist_type", "vod", str(out / "remux.m3u8")]) if "vp8" not in name else None
            rung = wall(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(path), "-vf",
                         "scale=640:360", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "500k", "-maxrate",
                         "535k", "-bufsize", "750k", "-g", "180", "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-f",
                         "hls", "-hls_time", "6", "-hls_playlist_type", "vod", str(out / "360p.m3u8")])
            baseline[name] = (remux, rung)

        stack = start_stack(args.build)
        worker = None
        results = {}
        try:
            db = connect(stack.database_url)
            token = make_token(stack, "bench-owner", "instructor")
            worker = subprocess.Popen([str(stack.build_dir / "vtp-worker")], env=dict(stack.env, VTP_HLS_SEGMENT_S="6"),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, (path, content_type) in sources.items():
                times = []
                for _ in range(args.runs):
                    load = os.getloadavg()[0]
                    t, rid = time_to_playable(stack, db, token, path, content_type)
                    times.append((t, load))
                    cancel_rest(db, rid)
                results[name] = times
        finally:
            if worker:
                worker.terminate()
                worker.wait(timeout=60)
            stack.stop()

    print(f"time to playable (upload's 201 -> master playlist 200), 1080p30 sources, 6 s segments, "
          f"{os.cpu_count()} CPUs")
    print(f"{'source':10} {'ours s':>8} {'load1':>6} {'ffmpeg remux s':>15} {'ffmpeg 360p s':>14} {'ours/360p':>10}")
    for name, times in results.items():
        remux, rung = baseline[name]
        for t, load in times:
            print(f"{name:10} {t:8.2f} {load:6.2f} {remux if remux is not None else float('nan'):15.2f} "
                  f"{rung:14.2f} {t / rung:10.2f}")
    h60 = min(t for t, _ in results["h264-60"])
    h120 = min(t for t, _ in results["h264-120"])
    print(f"h264-120 / h264-60: {h120 / h60:.2f}  (must not grow with the length: ~1)")
    print(f"targets: h264-60 {h60:.2f} s (< 5), vp8-60 {min(t for t, _ in results['vp8-60']):.2f} s (< 10)")


if __name__ == "__main__":
    main()
