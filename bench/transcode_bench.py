#!/usr/bin/python3
"""bench/transcode_bench.py: the 4-rung HLS ladder (1080p 5 Mb/s, 720p 2.8, 480p 1.4, 360p 0.5; 6 s segments)
from one 1080p30 H.264/AAC source (the anchor's make-source.sh), made three ways in one run:

  ours        vtp-worker --once runs the transcode job (decode once, each rung scaled from the one above,
              4 x libx264 in one process, each rung with its preset: the config default unless --presets)
  cli         the one-pass ffmpeg command line (../shared/anchors/ffmpeg-ladder.sh: split + var_stream_map)
  sequential  four ffmpeg runs, one per rung (the seed's way: the source decoded four times)

Prints wall time, CPU time and peak RSS of each (GNU time), the ratios ours/cli and ours/sequential, and the
SSIM of every rung against the source scaled to that size. Not part of `make test` (`make bench` runs it).
Usage: /usr/bin/python3 bench/transcode_bench.py [--seconds 60] [--build build] [--anchors DIR] [--rounds N]
(ours and the CLI N times each, alternating, compared by median: the machine's load changes during a run).
Targets (issue 4): wall ours/cli <= 1.0 (goal 0.8), SSIM within 0.005 of the CLI's per rung, peak RSS below the
CLI's, and ours/sequential <= 0.5.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from ingest_bench import connect, make_token, start_stack  # noqa: E402

RUNGS = [("1080p", 1920, 1080, 5000, 5350, 7500), ("720p", 1280, 720, 2800, 2996, 4200),
         ("480p", 854, 480, 1400, 1498, 2100), ("360p", 640, 360, 500, 535, 750)]
ROOT = Path(__file__).resolve().parents[1]


def timed(argv, env=None):
    """(wall s, cpu s, peak RSS MB) of argv under GNU time."""
    proc = subprocess.run(["/usr/bin/time", "-f", "TIME %e %U %S %M", *argv], env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r"TIME ([\d.]+) ([\d.]+) ([\d.]+) (\d+)", proc.stderr)
    return float(m[1]), float(m[2]) + float(m[3]), int(m[4]) / 1024


def ssim(rendition, source, w, h):
    proc = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(rendition), "-i", str(source),
                           "-lavfi", f"[1:v]scale={w}:{h}:flags=bicubic[ref];[0:v][ref]ssim", "-f", "null", "-"],
                          capture_output=True, text=True)
    m = re.search(r"All:([\d.]+)", proc.stderr)
    return float(m[1]) if m else float("nan")


def resolution(playlist):
    proc = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                           "stream=width,height", "-of", "csv=p=0", str(playlist)], capture_output=True, text=True)
    w, h = proc.stdout.split()[0].split(",")[:2]  # an HLS playlist lists its stream once per program
    return int(w), int(h)


def run_ours(stack, db, rid, env):
    """Queues a transcode of rid first in the heavy queue and runs it; returns (wall, cpu, rss) and the job's seconds."""
    with db.cursor() as cur:
        cur.execute("INSERT INTO jobs (kind, recording_id, priority, payload) SELECT 'transcode', id, 0,"
                    " jsonb_build_object('source_file', source_file) FROM recordings WHERE id = %s RETURNING id", (rid,))
        job = cur.fetchone()[0]
    t = timed([str(stack.build_dir / "vtp-worker"), "--once", "--queues", "heavy"], env=env)
    with db.cursor() as cur:
        cur.execute("SELECT state, last_error, extract(epoch FROM finished_at - started_at) FROM jobs WHERE id = %s",
                    (job,))
        state = cur.fetchone()
    assert state[0] == "succeeded", state
    return t, float(state[2])


def default_presets():
    """The libx264 preset of each rung of lib/config.c's default transcode_profiles (veryfast when not given)."""
    text = (ROOT / "lib" / "config.c").read_text()
    profiles = re.search(r'"VTP_TRANSCODE_PROFILES",\s*((?:"[^"]*"\s*)+)\)', text)[1]
    rungs = "".join(re.findall(r'"([^"]*)"', profiles)).split(",")
    return [r.split(":")[-1] if r.split(":")[-1].isalpha() else "veryfast" for r in rungs]


def median(values):
    ordered = sorted(values)
    n = len(ordered)
    return (ordered[n // 2] + ordered[(n - 1) // 2]) / 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--build", default="build")
    ap.add_argument("--anchors", default=str(ROOT.parent / "shared" / "anchors"))
    ap.add_argument("--rounds", type=int, default=1,
                    help="ours and the CLI run this many times, alternating which goes first (a shared machine's "
                         "load changes during a run); medians are compared")
    ap.add_argument("--presets", metavar="P1,P2,P3,P4",
                    help="our rungs' libx264 presets, 1080p first (default: those of the worker's default "
                         "transcode_profiles); the CLI and the sequential runs keep the anchor's veryfast")
    args = ap.parse_args()
    presets = args.presets.split(",") if args.presets else default_presets()
    assert len(presets) == len(RUNGS), presets
    anchors = Path(args.anchors)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "source.mp4"
        subprocess.run(["sh", str(anchors / "make-source.sh"), str(src), str(args.seconds)], check=True)
        runs = {"ours": [], "cli": []}
        job_s = []
        loads = []

        # sequential: one ffmpeg per rung (once: it is the slow baseline).
        wall = cpu = rss = 0.0
        for name, w, h, b, mx, buf in RUNGS:
            out = tmp / "seq" / name
            out.mkdir(parents=True)
            t = timed(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src), "-vf",
                       f"scale={w}:{h}", "-c:v", "libx264", "-b:v", f"{b}k", "-maxrate", f"{mx}k", "-bufsize",
                       f"{buf}k", "-preset", "veryfast", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
                       "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-f", "hls", "-hls_time", "6",
                       "-hls_playlist_type", "vod", "-hls_segment_filename", str(out / "seg%03d.ts"),
                       str(out / "index.m3u8")])
            wall, cpu, rss = wall + t[0], cpu + t[1], max(rss, t[2])
        sequential = (wall, cpu, rss)

        # ours: the transcode job, through the real stack (import, probe and playable job first, then the timed
        # job); cli: the one-pass anchor. Alternating.
        stack = start_stack(args.build)
        try:
            db = connect(stack.database_url)
            token = make_token(stack, "bench-owner", "instructor")
            r = requests.post(f"{stack.frontends['nginx']}/api/v1/recordings?title=bench", data=src.read_bytes(),
                              headers={"Authorization": f"Bearer {token}", "Content-Type": "video/mp4"})
            assert r.status_code == 201, r.text
            rid = r.json()["id"]
            worker = str(stack.build_dir / "vtp-worker")
            # the probe, then the playable job (sql/008_playable.sql), which queues the transcode: set aside
            for _ in range(2):
                subprocess.run([worker, "--once", "--queues", "light"], env=stack.env, check=True, capture_output=True)
            with db.cursor() as cur:
                cur.execute("UPDATE jobs SET state = 'cancelled', finished_at = now() WHERE recording_id = %s"
                            " AND state = 'queued'", (rid,))
            env = dict(stack.env, VTP_TRANSCODE_PROFILES=",".join(
                f"{n}:{w}x{h}:{b}:{mx}:{buf}:{p}" for (n, w, h, b, mx, buf), p in zip(RUNGS, presets)),
                VTP_HLS_SEGMENT_S="6")
            for k in range(args.rounds):
                for who in (("cli", "ours") if k % 2 == 0 else ("ours", "cli")):
                    loads.append(os.getloadavg()[0])
                    if who == "cli":
                        shutil.rmtree(tmp / "cli", ignore_errors=True)
                        runs["cli"].append(timed(["sh", str(anchors / "ffmpeg-ladder.sh"), str(src), str(tmp / "cli")]))
                    else:
                        t, s = run_ours(stack, db, rid, env)
                        runs["ours"].append(t)
                        job_s.append(s)
            hls = Path(stack.storage_path) / rid / "hls"
            quality = {"ours": {name: ssim(hls / name / "index.m3u8", src, *resolution(hls / name / "index.m3u8"))
                                for name, *_ in RUNGS},
                       "cli": {name: ssim(tmp / "cli" / f"v{i}" / "index.m3u8", src, *resolution(
                           tmp / "cli" / f"v{i}" / "index.m3u8")) for i, (name, *_) in enumerate(RUNGS)}}
        finally:
            stack.stop()

    results = {k: tuple(median([r[i] for r in v]) for i in range(3)) for k, v in runs.items()}
    results["sequential"] = sequential
    print(f"transcode ladder, {args.seconds} s 1080p30 source, 4 rungs, 6 s segments, {os.cpu_count()} CPUs, "
          f"{args.rounds} round(s), load average {min(loads):.1f}-{max(loads):.1f}; our presets "
          f"{','.join(presets)}, the CLI's and sequential runs' veryfast")
    for k in ("ours", "cli"):
        print(f"{k:12} runs (wall s): " + ", ".join(f"{r[0]:.1f}" for r in runs[k]))
    print(f"{'':12} {'wall s':>8} {'cpu s':>8} {'peak MB':>8}   (medians)")
    for k in ("ours", "cli", "sequential"):
        print(f"{k:12} {results[k][0]:8.1f} {results[k][1]:8.1f} {results[k][2]:8.0f}")
    print(f"{'ours: job':12} {median(job_s):8.1f}            (the job alone: claimed to finished, without the worker's start)")
    print(f"wall ratio ours/cli        {results['ours'][0] / results['cli'][0]:.2f}  (target <= 1.0, goal 0.8)")
    print(f"wall ratio ours/sequential {results['ours'][0] / results['sequential'][0]:.2f}  (target <= 0.5)")
    print(f"cpu ratio ours/cli         {results['ours'][1] / results['cli'][1]:.2f}")
    print(f"peak RSS ratio ours/cli    {results['ours'][2] / results['cli'][2]:.2f}  (target < 1)")
    print(f"{'SSIM':12} {'ours':>8} {'cli':>8} {'diff':>8}")
    for name, *_ in RUNGS:
        o, c = quality["ours"][name], quality["cli"][name]
        print(f"{name:12} {o:8.4f} {c:8.4f} {o - c:+8.4f}")


if __name__ == "__main__":
    main()
