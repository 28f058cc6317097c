#!/usr/bin/python3
"""bench/record_playable_bench.py: how long after the stop a live RTP recording is playable as HLS (issue 5: a
5-minute recording, VP8/Opus as well as H.264/Opus, playable within 10 s of stop), through the real stack as in
production: nginx, vtp-api and one release vtp-worker with its default queues and slots.

For each codec a recording is started through the API with a mediasoup-shaped SDP on its own ports, and a real
`ffmpeg -re -c copy -f rtp` sender sends --seconds (default 300) of a pre-encoded 1280x720 30 fps stream at
2.4 Mb/s (keyframe every 2 s) with Opus; the codecs run concurrently. When a sender ends, POST .../stop, then
poll as a player would: GET /recordings/{id} until it has a stream_url, that URL (with the Bearer token) until
the master playlist's first 200, then its first media playlist (through the tokened URI the master gives) until
it lists a segment whose bytes, fetched through the playlist's URIs (init section and segment), ffprobe reads
as video and audio. Then GET /recordings/{id} until it is 'ready' (the whole pipeline, the ladder included).

Printed per codec: stop -> source.mkv renamed into place (polled on the file), -> master 200, stop -> first readable segment, stop -> ready; where the time went, from
the jobs' timestamps (record job finished, probe and playable queued/started/finished); the load average.
Baseline, in the same run and on the same captured file (source.mkv): the `ffmpeg` CLI making the first HLS
segment (--segment seconds) from it: a remux (video copied, Opus to AAC) for H.264, a 360p H.264 encode for VP8,
as the playable job does. --part-s sets the recorder's VTP_RECORD_PART_S (the parts are joined while it records
but for the last, and the worker's log says how long the stop's join took and how many parts it had left);
--until source ends each recording's measurement at source.mkv (no HLS, no baseline). Not part of `make test`.
Usage: /usr/bin/python3 bench/record_playable_bench.py [--build build] [--seconds 300] [--codecs vp8,h264]
[--sources DIR: keep the pre-encoded sources there] [--part-s 600] [--until ready|source].
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from ingest_bench import connect, make_token, start_stack  # noqa: E402
from record_bench import LOG, make_source, sdp, send  # noqa: E402

API = "/api/v1"
POLL_S = 0.05  # a player polls less often; this is the resolution of the measurement


def bound(port):
    """True when a UDP socket is bound to port (read from /proc: binding a probe socket could take the port
    from the recorder at the moment it binds)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as f:
            if any(int(line.split()[1].rsplit(":", 1)[1], 16) == port for line in f.readlines()[1:]):
                return True
    return False


def wait_for(check, timeout, what, interval=POLL_S):
    """check()'s first true value, polled every interval s; AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(interval)


def playlist_uris(text):
    """The URIs a playlist names, in order: EXT-X-MAP init sections and segments (or variant playlists)."""
    uris = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXT-X-MAP:") and 'URI="' in line:
            uris.append(("init", line.split('URI="', 1)[1].split('"', 1)[0]))
        elif line and not line.startswith("#"):
            uris.append(("uri", line))
    return uris


def unreadable(path):
    """Why ffprobe does not read video and audio packets from the file without an error; "" when it does."""
    p = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-show_entries", "stream=codec_type,nb_read_packets",
                        "-of", "json", str(path)], capture_output=True, text=True)
    if p.returncode != 0 or p.stderr.strip():
        return f"ffprobe: {p.stderr.strip()[:300]}"
    n = {s["codec_type"]: int(s.get("nb_read_packets", 0)) for s in json.loads(p.stdout).get("streams", [])}
    return "" if n.get("video", 0) > 0 and n.get("audio", 0) > 0 else f"ffprobe found {n}"


class Recording:
    """One codec's recording: started, sent, stopped and watched, with the epoch times of what happened."""

    def __init__(self, base, headers, codec, source, vport, aport, tmp, storage, until):
        self.base, self.headers, self.codec, self.source = base, headers, codec, source
        self.storage, self.until = storage, until
        self.vport, self.aport, self.tmp = vport, aport, tmp
        self.http = requests.Session()
        self.t = {}
        self.error = None
        self.last = None
        r = self.http.post(f"{base}{API}/recordings/start", headers=headers, timeout=10,
                           json={"title": f"bench {codec}", "room_id": f"bench-{codec}-{uuid.uuid4().hex[:8]}",
                                 "source": {"type": "sdp", "sdp": sdp(vport, aport, codec)}})
        assert r.status_code == 201, r.text
        self.id = r.json()["id"]

    def get(self):
        r = self.http.get(f"{self.base}{API}/recordings/{self.id}", headers=self.headers, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def answer(self, url, headers=None):
        """The response to GET url when it is a 200, else None (the last one is kept in self.last)."""
        r = self.http.get(url, headers=headers, timeout=30)
        # Not r.text: guessing the character set of a 2 MB segment takes seconds.
        self.last = f"{url}: {r.status_code} {r.content[:300].decode('utf-8', 'replace')}"
        return r if r.status_code == 200 else None

    def first_segment_readable(self, media_url):
        """True when the media playlist lists a segment that ffprobe reads, fetched through its URIs."""
        r = self.answer(media_url)
        if not r:
            return False
        init, segment = None, None
        for kind, uri in playlist_uris(r.content.decode("utf-8", "replace")):
            if kind == "init" and init is None:
                init = urllib.parse.urljoin(media_url, uri)
            elif kind == "uri":
                segment = urllib.parse.urljoin(media_url, uri)
                break
        if not segment:
            return False
        data = b""
        fetched = None
        for url in (init, segment):
            if url:
                part = self.answer(url)
                if not part:
                    return False
                data += part.content
                fetched = time.time()
        path = self.tmp / f"first-{self.codec}.seg"
        path.write_bytes(data)
        why = unreadable(path)
        self.last = f"{segment}: {why}" if why else self.last
        if not why:
            self.t["segment"] = fetched  # a player had it then; checking it here is not its wait
        return not why

    def run(self, ready_timeout, playable_timeout):
        try:
            # The recorder has bound the SDP's ports: it is listening.
            wait_for(lambda: bound(self.vport) and bound(self.aport), 120, "the recorder's ports")
            sender = send(self.source, self.vport, self.aport)
            self.t["send"] = time.time()
            assert sender.wait() == 0, f"the {self.codec} sender failed"
            self.t["stop"] = time.time()
            self.load_at_stop = os.getloadavg()[0]
            r = self.http.post(f"{self.base}{API}/recordings/{self.id}/stop", headers=self.headers, timeout=10)
            assert r.status_code == 202, r.text
            source_mkv = self.storage / self.id / "source.mkv"
            wait_for(source_mkv.exists, playable_timeout, "source.mkv", interval=0.01)
            self.t["source"] = time.time()
            if self.until == "source":
                return
            stream_url = wait_for(lambda: self.get()["stream_url"], playable_timeout, "a stream_url")
            master_url = urllib.parse.urljoin(self.base, stream_url)
            master = wait_for(lambda: self.answer(master_url, self.headers), playable_timeout, "the master playlist")
            self.t["master"] = time.time()
            self.load_at_master = os.getloadavg()[0]
            variants = [u for k, u in playlist_uris(master.content.decode("utf-8", "replace")) if k == "uri"]
            assert variants, master.content
            media_url = urllib.parse.urljoin(master_url, variants[0])
            wait_for(lambda: self.first_segment_readable(media_url), playable_timeout, "a readable first segment")
            rec = wait_for(lambda: (lambda r: r if r["status"] in ("ready", "failed") else None)(self.get()),
                           ready_timeout, "status ready", interval=0.5)  # minutes away: no need to be exact
            assert rec["status"] == "ready", rec
            self.t["ready"] = time.time()
        except Exception as e:  # reported with the others' results; the other codec keeps going
            self.error = f"{e!r}; last answer: {self.last}"


def job_times(db, rid):
    """{kind: (queued, started, finished)} as epoch seconds, and the recording's stopped_at."""
    with db.cursor() as cur:
        cur.execute("SELECT kind, extract(epoch FROM created_at), extract(epoch FROM started_at),"
                    " extract(epoch FROM finished_at) FROM jobs WHERE recording_id = %s ORDER BY id", (rid,))
        jobs = {k: tuple(float(x) if x is not None else None for x in row) for k, *row in cur.fetchall()}
        cur.execute("SELECT extract(epoch FROM stopped_at) FROM recordings WHERE id = %s", (rid,))
        return jobs, float(cur.fetchone()[0])


def cli_first_segment(codec, source, seconds, out):
    """Seconds the ffmpeg CLI takes to make the first HLS segment of `seconds` from source, as the playable
    job would: H.264 video copied, else a 360p H.264 encode; Opus to AAC."""
    out.mkdir()
    video = ["-c:v", "copy"] if codec == "h264" else [
        "-vf", "scale=-2:360", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "500k", "-maxrate", "535k",
        "-bufsize", "750k", "-x264-params", "scenecut=0:open-gop=0"]
    t = time.monotonic()
    subprocess.run(["ffmpeg", *LOG, "-y", "-i", str(source), "-t", str(seconds), "-map", "0:v", "-map", "0:a",
                    *video, "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-f", "hls", "-hls_time", str(seconds),
                    "-hls_segment_type", "fmp4", "-hls_playlist_type", "vod", str(out / "index.m3u8")], check=True)
    return time.monotonic() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--seconds", type=int, default=300)
    ap.add_argument("--codecs", default="vp8,h264")
    ap.add_argument("--sources", help="a folder to keep the pre-encoded sources in between runs")
    ap.add_argument("--ready-timeout", type=int, default=3600)
    ap.add_argument("--playable-timeout", type=int, default=300)
    ap.add_argument("--part-s", type=int, help="the recorder's VTP_RECORD_PART_S (default: the worker's, 600)")
    ap.add_argument("--until", choices=("ready", "source"), default="ready")
    args = ap.parse_args()
    codecs = args.codecs.split(",")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        keep = Path(args.sources) if args.sources else tmp
        keep.mkdir(parents=True, exist_ok=True)
        sources = {}
        for codec in codecs:
            sources[codec] = keep / f"{codec}-{args.seconds}s.mkv"
            if not sources[codec].exists():
                make_source(sources[codec].with_suffix(".part.mkv"), args.seconds, codec)
                sources[codec].with_suffix(".part.mkv").rename(sources[codec])
        stack = start_stack(os.path.abspath(args.build))
        worker = None
        try:
            db = connect(stack.database_url)
            segment_s = 6
            log = open(keep / "worker.log", "w")
            # As the services run (the vtp user when the bench runs as root): the API must read what it writes.
            env = dict(stack.env, VTP_HLS_SEGMENT_S=str(segment_s))
            if args.part_s:
                env["VTP_RECORD_PART_S"] = str(args.part_s)
            worker = subprocess.Popen(stack._as_svc([str(stack.build_dir / "vtp-worker")]), env=env,
                                      stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            base = stack.frontends["nginx"]
            headers = {"Authorization": "Bearer " + make_token(stack, "bench-teacher", "instructor")}
            recs = []
            for i, codec in enumerate(codecs):
                vport = 31000 + 10 * i
                assert not any(bound(p) for p in range(vport, vport + 4)), f"ports {vport}..{vport + 3} are taken"
                recs.append(Recording(base, headers, codec, sources[codec], vport, vport + 2, tmp,
                                      Path(stack.storage_path), args.until))
            load_before = os.getloadavg()[0]
            threads = [threading.Thread(target=r.run, args=(args.ready_timeout, args.playable_timeout)) for r in recs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            load_after = os.getloadavg()[0]
            print(f"{args.seconds} s RTP recordings (1280x720 30 fps 2.4 Mb/s + Opus 96 kb/s), "
                  f"{' and '.join(codecs)} at once; one release vtp-worker (light:2, heavy:2, record:2), "
                  f"{segment_s} s segments, {os.cpu_count()} CPUs, parts of {args.part_s or 'the default'} s; "
                  f"load average {load_before:.2f} before, {load_after:.2f} after")
            worker_log = (keep / "worker.log").read_text()
            for r in recs:
                if r.error:
                    print(f"{r.codec}: FAILED: {r.error}; the worker's log: {keep / 'worker.log'}")
                    continue
                stop = r.t["stop"]
                jobs, stopped_at = job_times(db, r.id)
                joins = [float(t) for t in re.findall(rf"recording {r.id}: part \d+ joined while recording, in ([0-9.]+) s",
                                                       worker_log)]
                at_stop = re.search(rf"recording {r.id}: the join at the stop took ([0-9.]+) s: (\d+) part\(s\) joined at "
                                    r"the stop, (\d+) while recording", worker_log)
                print(f"{r.codec}: stop -> source.mkv renamed {r.t['source'] - stop:.2f} s (load {r.load_at_stop:.2f} at "
                      f"stop); the worker: "
                      + (f"the stop's join {at_stop[1]} s for {at_stop[2]} part(s), {at_stop[3]} joined while recording"
                         if at_stop else "no 'join at the stop' line (an older vtp-worker)")
                      + (f" (each in {min(joins):.2f}..{max(joins):.2f} s)" if joins else ""))
                if args.until == "source":
                    continue
                source_mkv = Path(stack.storage_path) / r.id / "source.mkv"
                load_cli = os.getloadavg()[0]
                cli = cli_first_segment(r.codec, source_mkv, segment_s, tmp / f"cli-{r.codec}")
                master, segment, ready = (r.t[k] - stop for k in ("master", "segment", "ready"))
                print(f"{r.codec}: stop -> master 200 {master:.2f} s, -> first readable segment {segment:.2f} s, "
                      f"-> ready {ready:.1f} s (target <= 10 s: {'met' if segment <= 10 else 'MISSED'}); load "
                      f"{r.load_at_stop:.2f} at stop, {r.load_at_master:.2f} at the master's 200")
                print(f"  baseline: ffmpeg CLI, first {segment_s} s HLS segment from the same source.mkv "
                      f"({'remux' if r.codec == 'h264' else '360p encode'}): {cli:.2f} s at load {load_cli:.2f}; "
                      f"ours (stop -> segment) / CLI = {segment / cli:.2f}")

                def at(kind, i):
                    v = jobs.get(kind, (None, None, None))[i]
                    return f"{v - stop:+.2f}" if v is not None else "-"
                print(f"  where the time went (s after the stop request; the API took it at {stopped_at - stop:+.2f}):"
                      f" record finished {at('record', 2)}; probe queued {at('probe', 0)} started {at('probe', 1)}"
                      f" finished {at('probe', 2)}; playable queued {at('playable', 0)} started {at('playable', 1)}"
                      f" finished {at('playable', 2)}; master 200 {master:+.2f}; transcode started"
                      f" {at('transcode', 1)} finished {at('transcode', 2)}")
            db.close()
        finally:
            if worker:
                worker.terminate()
                worker.wait(timeout=60)
            stack.stop()


if __name__ == "__main__":
    main()
