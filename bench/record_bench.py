#!/usr/bin/python3
"""bench/record_bench.py: how many concurrent 2.5 Mb/s RTP recordings one vtp-worker sustains, and its CPU per
recording, with ratios against a baseline of one recording measured in the same run.

One H.264 (1280x720, 30 fps, 2.4 Mb/s, keyframe every 2 s) + Opus (96 kb/s) stream is encoded once; for each
N, N recordings are started through the API with mediasoup-shaped SDPs on their own ports, one worker
(release build, --concurrency N on its own queue) records them all, and N `ffmpeg -re -c copy -f rtp`
senders send a copy each. After the stop, each source.mkv is compared with what was sent: video and audio
packets (frames) recorded against the frames in the sent file, and the duration. On loopback the wire
loses nothing, so a missing frame was lost either by us or by a sender starved of CPU; the kernel's
per-socket drop counter (/proc/net/udp, read for the recorders' ports before the stop) tells: it counts
datagrams lost because a recorder did not read its socket in time. CPU: the recorders are the worker's
children, reaped by it, so wait4() on the worker gives their time with its own.

Note the senders run on the same machine: N ffmpeg processes pacing and packetising take CPU the
recorder then does not have. Usage: /usr/bin/python3 bench/record_bench.py [--build DIR] [--seconds S]
[--counts 1,5,10,20]. Target (issue 5): 20 streams without loss on 2 cores.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from ingest_bench import connect, make_token, start_stack  # noqa: E402

LOG = ["-hide_banner", "-loglevel", "error", "-nostdin"]


def make_source(path, seconds, video="h264", size="1280x720"):
    """seconds of test pattern and tone, encoded as a WebRTC sender would (H.264 or VP8 at 2.4 Mb/s, keyframe
    every 2 s, Opus 96 kb/s), into a Matroska file that `send` copies to RTP."""
    vcodec = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline",
              "-x264-params", "repeat-headers=1"] if video == "h264" else [
              "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-error-resilient", "1"]
    subprocess.run(["ffmpeg", *LOG, "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
                    *vcodec, "-b:v", "2400k", "-maxrate", "2400k", "-bufsize", "1200k", "-g", "60",
                    "-pix_fmt", "yuv420p", "-c:a", "libopus", "-b:a", "96k", "-ac", "2", str(path)], check=True)


def count_packets(path):
    """(video packets, audio packets, duration s) of a file."""
    out = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-show_entries",
                          "stream=codec_type,nb_read_packets:format=duration", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    info = json.loads(out)
    n = {s["codec_type"]: int(s["nb_read_packets"]) for s in info["streams"]}
    return n.get("video", 0), n.get("audio", 0), float(info["format"]["duration"])


def sdp(vport, aport, video="h264"):
    """An SDP shaped like a mediasoup PlainTransport consumer's, for H.264 or VP8 video and Opus audio."""
    vlines = ["a=rtpmap:96 H264/90000", "a=fmtp:96 packetization-mode=1;profile-level-id=42e01f"] \
        if video == "h264" else ["a=rtpmap:96 VP8/90000"]
    return "\r\n".join(["v=0", "o=- 0 0 IN IP4 127.0.0.1", "s=bench", "c=IN IP4 127.0.0.1", "t=0 0",
                        f"m=video {vport} RTP/AVPF 96", f"a=rtcp:{vport + 1}", *vlines,
                        "a=rtcp-fb:96 nack", "a=rtcp-fb:96 nack pli", "a=recvonly", f"m=audio {aport} RTP/AVPF 100",
                        f"a=rtcp:{aport + 1}", "a=rtpmap:100 opus/48000/2", "a=recvonly"]) + "\r\n"


def send(source, vport, aport):
    """An `ffmpeg -re` sender copying source's video and audio to RTP on vport and aport (RTCP on port+1)."""
    return subprocess.Popen(["ffmpeg", *LOG, "-re", "-i", str(source), "-map", "0:v", "-c", "copy", "-f", "rtp",
                             "-payload_type", "96", f"rtp://127.0.0.1:{vport}?rtcpport={vport + 1}&pkt_size=1200",
                             "-map", "0:a", "-c", "copy", "-f", "rtp", "-payload_type", "100",
                             f"rtp://127.0.0.1:{aport}?rtcpport={aport + 1}"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL)


def all_cpu(pid):
    """Seconds of CPU of pid and its reaped children (utime + stime + cutime + cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def socket_drops(first, last):
    """Datagrams the kernel dropped because a socket bound to a port in [first, last) was full: loss
    that is the recorder's fault (it did not read in time)."""
    drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if first <= int(cols[1].rsplit(":", 1)[1], 16) < last:
                    drops += int(cols[-1])
    return drops


def child_socket_inodes(pid):
    """The socket inodes held by pid's children (the recorders: their relay and libavformat's loopback sockets)."""
    inodes = set()
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += (task / "children").read_text().split()
    for kid in kids:
        try:
            for fd in Path(f"/proc/{kid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            pass
    return inodes


def inode_drops(inodes):
    """Datagrams the kernel dropped on the UDP sockets with these inodes because they were full."""
    drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[9] in inodes:
                    drops += int(cols[-1])
    return drops


def relay_lost(db, queue):
    """RTP packets the recorders' relays counted as lost (RFC 3550), summed over every stream."""
    with db.cursor() as cur:
        cur.execute("SELECT progress_detail FROM jobs WHERE queue = %s", (queue,))
        return sum(st.get("lost", 0) for (d,) in cur.fetchall() if d for st in d.get("streams", []))


def run(stack, db, source, sent, n, base_port, tmp):
    api = stack.frontends["nginx"] + "/api/v1"
    headers = {"Authorization": "Bearer " + make_token(stack, f"bench-{uuid.uuid4().hex[:8]}", "instructor")}
    queue = "rb" + uuid.uuid4().hex[:10]
    recs = []
    for i in range(n):
        vport, aport = base_port + 4 * i, base_port + 4 * i + 2
        r = requests.post(api + "/recordings/start", headers=headers, timeout=10,
                          json={"title": f"bench {i}", "room_id": f"bench-{queue}-{i}",
                                "source": {"type": "sdp", "sdp": sdp(vport, aport)}})
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        with db.cursor() as cur:
            cur.execute("UPDATE jobs SET queue = %s WHERE recording_id = %s AND kind = 'record'", (queue, rid))
        recs.append((rid, vport, aport))
    log = open(tmp / f"worker-{n}.log", "w")
    worker = subprocess.Popen([str(stack.build_dir / "vtp-worker"), "--queues", f"{queue}:{n}"], env=stack.env,
                              stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:  # every recorder has bound its ports
        with db.cursor() as cur:
            cur.execute("SELECT count(*) FROM jobs WHERE queue = %s AND state = 'running'", (queue,))
            running = cur.fetchone()[0]
        if running == n:
            break
        assert time.monotonic() < deadline, f"only {running} of {n} recorders started"
        time.sleep(0.2)
    time.sleep(1)  # the last recorders to start are opening their sockets
    cpu0 = all_cpu(worker.pid)
    t0 = time.monotonic()
    senders = [send(source, v, a) for _, v, a in recs]
    for s in senders:
        s.wait()
    wall = time.monotonic() - t0
    time.sleep(1)
    drops = socket_drops(base_port, base_port + 4 * n)
    # The relay hands each datagram on to libavformat over loopback: drops there are ours too.
    inner_drops = inode_drops(child_socket_inodes(worker.pid))
    time.sleep(1.2)  # one more health report after the last packet
    rtp_lost = relay_lost(db, queue)
    stop_at = time.monotonic()
    for rid, _, _ in recs:
        r = requests.post(f"{api}/recordings/{rid}/stop", headers=headers, timeout=10)
        assert r.status_code == 202, r.text
    deadline = time.monotonic() + 120
    while True:
        with db.cursor() as cur:
            cur.execute("SELECT count(*) FROM jobs WHERE queue = %s AND state IN ('succeeded', 'failed')", (queue,))
            if cur.fetchone()[0] == n:
                break
        assert time.monotonic() < deadline, "the recorders did not finish"
        time.sleep(0.05)
    finalised = time.monotonic() - stop_at
    # The worker's own time and that of the recorders it forked and reaped (wait4 counts both).
    worker.terminate()
    _, status, usage = os.wait4(worker.pid, 0)
    worker.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime - cpu0
    log.close()
    lost_v = lost_a = 0
    worst = 0.0
    for rid, _, _ in recs:
        path = Path(stack.storage_path) / rid / "source.mkv"
        v, a, d = count_packets(path) if path.exists() else (0, 0, 0.0)
        lost_v += max(0, sent[0] - v)
        lost_a += max(0, sent[1] - a)
        worst = max(worst, abs(sent[2] - d))
    return {"n": n, "wall": wall, "cpu": cpu, "lost_v": lost_v, "lost_a": lost_a, "worst_dur": worst,
            "finalised": finalised, "drops": drops, "inner_drops": inner_drops, "rtp_lost": rtp_lost}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--counts", default="1,5,10,20")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    stack = start_stack(os.path.abspath(args.build))
    try:
        db = connect(stack.database_url)
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            source = tmp / "source.mkv"
            make_source(source, args.seconds)
            sent = count_packets(source)
            print(f"stream: {sent[0]} video + {sent[1]} audio frames, {sent[2]:.2f} s, "
                  f"{source.stat().st_size * 8 / sent[2] / 1e6:.2f} Mb/s; load before: {os.getloadavg()[0]:.2f}")
            base = None
            for i, n in enumerate(counts):
                res = run(stack, db, source, sent, n, 30000 + 200 * i, tmp)
                per = res["cpu"] / n / res["wall"] * 100
                base = base or per
                frames = n * (sent[0] + sent[1])
                print(f"N={n:3d}: worker CPU {res['cpu']:6.1f} s over {res['wall']:5.1f} s = {per:5.1f} % of a core"
                      f" per recording ({per / base:.2f}x baseline N={counts[0]}); frames lost {res['lost_v']} video"
                      f" + {res['lost_a']} audio of {frames} ({(res['lost_v'] + res['lost_a']) / frames * 100:.3f} %),"
                      f" datagrams dropped by full sockets {res['drops']} on the SDP ports,"
                  f" {res['inner_drops']} on all the recorders' sockets; RTP packets lost {res['rtp_lost']};"
                      f" worst duration error {res['worst_dur']:.2f} s; all {n} stopped and joined in"
                      f" {res['finalised']:.1f} s; load {os.getloadavg()[0]:.2f}")
        db.close()
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
