#!/usr/bin/python3
"""bench/thumbnail_bench.py: GET /api/v1/recordings/{id}/thumbnail through nginx from a 1080p30 source, with
ratios against a baseline measured in the same run.

  cold      a new size and time each request: rendered on the spot by a child process (decode with libav,
            resize and encode with MagickWand), then cached; one request at a time: p50/p95/p99.
  cached    the same requests again: the access check, then nginx sends the file (X-Accel-Redirect).
  baseline  GET /api/v1/recordings/{id} on the same connection (token check, access check, one query):
            the floor of an authenticated read through this web stack.

The source is 20 s of testsrc2 at 1920x1080, 30 fps, H.264 with a keyframe every 2 s (the worst case
decodes 59 frames to reach a time). Usage: /usr/bin/python3 bench/thumbnail_bench.py [--requests N]
[--build DIR] [--gop FRAMES]. Target (issue 6): cold p95 < 300 ms.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from ingest_bench import connect, make_token, percentile, start_stack  # noqa: E402


def make_source(path, gop):
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "testsrc2=size=1920x1080:rate=30:duration=20", "-c:v", "libx264", "-preset", "veryfast",
                    "-g", str(gop), "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path)], check=True)


def run_jobs(stack, db, rid):
    for kind in ("probe", "thumbnail"):
        with db.cursor() as cur:
            cur.execute("UPDATE jobs SET priority = 0 WHERE recording_id = %s AND kind = %s AND state = 'queued'",
                        (rid, kind))
        subprocess.run([str(stack.build_dir / "vtp-worker"), "--once", "--queues", "light"], env=stack.env,
                       check=True, capture_output=True, timeout=300)


def timed(session, url, **kw):
    t = time.perf_counter()
    r = session.get(url, **kw)
    ms = (time.perf_counter() - t) * 1000
    assert r.status_code == 200, (url, r.status_code, r.text[:200])
    return ms


def summary(name, values, base=None):
    p50, p95, p99 = (percentile(values, p) for p in (50, 95, 99))
    ratio = f"  ({p95 / base:.1f}x baseline p95)" if base else ""
    print(f"{name:9s} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  p99 {p99:7.1f} ms  mean {statistics.mean(values):7.1f}{ratio}")
    return p95


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--build", default="build")
    ap.add_argument("--gop", type=int, default=60)
    args = ap.parse_args()
    stack = start_stack(args.build)
    try:
        db = connect(stack.database_url)
        token = make_token(stack, "bench-owner", "instructor")
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "source.mp4"
            make_source(src, args.gop)
            base = stack.frontends["nginx"]
            r = requests.post(f"{base}/api/v1/recordings?title=bench", data=src.read_bytes(),
                              headers={"Authorization": f"Bearer {token}", "Content-Type": "video/mp4"})
            assert r.status_code == 201, r.text
            rid = r.json()["id"]
        run_jobs(stack, db, rid)
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {token}"
        url = f"{base}/api/v1/recordings/{rid}/thumbnail"
        timed(s, f"{base}/api/v1/recordings/{rid}")  # warm the connection
        params = [{"time": round(0.37 * i % 19.5, 2), "width": 160 + 8 * i} for i in range(args.requests)]
        baseline = [timed(s, f"{base}/api/v1/recordings/{rid}") for _ in range(args.requests)]
        cold = [timed(s, url, params=p) for p in params]
        cached = [timed(s, url, params=p) for p in params]
        print(f"thumbnail bench: 1920x1080 source, GOP {args.gop} frames, {args.requests} requests each, nginx")
        b = summary("baseline", baseline)
        summary("cold", cold, b)
        summary("cached", cached, b)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
