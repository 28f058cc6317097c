"""The record job end to end with real senders. A recording is started through the API with an SDP
shaped like a mediasoup PlainTransport consumer's (RTP/AVPF, VP8 or H.264 video, Opus audio, RTCP on
port+1); a vtp-worker on a queue of the test's own records it while the ffmpeg CLI sends; the stop goes
through the API; then source.mkv holds what was sent (duration within 0.5 s, by ffprobe, and decodes
without an error), the recording is 'processing' and a probe follows. Also: health per stream in the
job's progress_detail; an 11 s pause without packets (longer than libavformat's 10 s RTP read timeout)
is one recording on one timeline, and short parts are joined; a camera that never sends does not hold
back the microphone; the maximum duration and the inactivity limit end a recording and say so; ports
in use are a clear error; SIGKILL of the worker mid-stream is recovered by another worker (the final
file covers what was recorded before and after, and the recording notes the gap); a worker shutdown
hands the recording over without losing the first part; an RTMP encoder pushes to a listening
recorder, and so do an SRT caller (MPEG-TS, AAC) and an RTSP encoder (ANNOUNCE/RECORD); a muted
microphone's gaps are filled with silence up to the video's end; the health is in GET /recordings/{id}
while the recorder runs, with RTP loss and jitter counted by the recorder's relay (a UDP forwarder in the
test drops every 10th video datagram: the loss reported matches). Streams are 5-15 s long; test_record_long.py has the long scenarios."""

import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from helpers import API, Client, make_token, unique
from test_probe import only_job, run_job
from test_worker import Workers, poll

FFMPEG_LOG = ["-hide_banner", "-loglevel", "error", "-nostdin"]


def free_udp_pairs(n):
    """n even UDP ports P with P and P+1 free (RTP and RTCP)."""
    pairs = []
    while len(pairs) < n:
        p = random.randrange(20000, 60000, 2)
        socks = []
        try:
            for port in (p, p + 1):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            if p not in pairs:
                pairs.append(p)
        except OSError:
            pass
        finally:
            for s in socks:
                s.close()
    return pairs


def port_taken(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def udp_sockets():
    """{socket inode: the columns of its line in /proc/net/udp or udp6} of every UDP socket."""
    sockets = {}
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                sockets[cols[9]] = cols
    return sockets


def udp_receive_queues():
    """{socket inode: (local port, bytes waiting in its receive queue)} of every UDP socket."""
    return {inode: (int(cols[1].rsplit(":", 1)[1], 16), int(cols[4].split(":")[1], 16))
            for inode, cols in udp_sockets().items()}


def udp_drops():
    """{socket inode: datagrams the kernel dropped because its receive queue was full} of every UDP socket."""
    return {inode: int(cols[12]) for inode, cols in udp_sockets().items()}


def socket_inodes(pid):
    """The inodes of the sockets pid holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def holder_of(inode):
    """The pid of one of our processes that holds the socket inode, or None."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if inode in socket_inodes(pid):
                return pid
        except OSError:
            continue  # another user's process, or one that ended
    return None


def sdp_for(video_port, audio_port, video="vp8"):
    """An SDP as a mediasoup PlainTransport consumer would hand to a recorder."""
    if video == "vp8":
        vlines = ["a=rtpmap:96 VP8/90000"]
    else:
        vlines = ["a=rtpmap:96 H264/90000", "a=fmtp:96 packetization-mode=1;profile-level-id=42e01f"]
    lines = ["v=0", "o=- 0 0 IN IP4 127.0.0.1", "s=vtp-test", "c=IN IP4 127.0.0.1", "t=0 0",
             f"m=video {video_port} RTP/AVPF 96", f"a=rtcp:{video_port + 1}", *vlines,
             "a=rtcp-fb:96 nack", "a=rtcp-fb:96 nack pli", "a=recvonly",
             f"m=audio {audio_port} RTP/AVPF 100", f"a=rtcp:{audio_port + 1}", "a=rtpmap:100 opus/48000/2",
             "a=fmtp:100 minptime=10;useinbandfec=1", "a=recvonly"]
    return "\r\n".join(lines) + "\r\n"


def sender(video_port, audio_port, seconds, video="vp8", gap=None):
    """ffmpeg sending `seconds` of test pattern and tone as RTP, in real time; gap=(a, b): nothing is sent
    from a to b s (one sender, one SSRC and sequence, timestamps jump: as a paused camera and a muted
    microphone through an SFU)."""
    filters = []
    if gap:
        filters = ["-vf", f"select='not(between(t,{gap[0]},{gap[1]}))'", "-af",
                   f"aselect='not(between(t,{gap[0]},{gap[1]}))'", "-fps_mode", "passthrough"]
    vcodec = ["-c:v", "libvpx", "-deadline", "realtime", "-b:v", "300k", "-g", "15"] if video == "vp8" else [
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline",
        "-pix_fmt", "yuv420p", "-g", "15"]
    argv = ["ffmpeg", *FFMPEG_LOG, "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15",
            "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
            "-map", "0:v", *filters[:2], *filters[4:], *vcodec, "-payload_type", "96", "-f", "rtp", f"rtp://127.0.0.1:{video_port}?rtcpport={video_port + 1}",
            "-t", str(seconds), "-map", "1:a", *filters[2:4], "-c:a", "libopus", "-b:a", "48k", "-ac", "2", "-payload_type", "100",
            "-f", "rtp", f"rtp://127.0.0.1:{audio_port}?rtcpport={audio_port + 1}"]
    if video is None:  # the camera is off: only the microphone sends
        cut = argv.index("-map")
        argv = argv[:cut] + argv[argv.index("-map", cut + 1) - 2:]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def ffprobe_duration(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name,codec_type",
                          "-of", "json", str(path)], capture_output=True, text=True, check=True).stdout
    info = json.loads(out)
    return float(info["format"]["duration"]), sorted(s["codec_name"] for s in info["streams"])


def packet_times(path):
    """The start and end times of every timed packet of a file, in seconds."""
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "packet=pts_time,duration_time", "-of", "csv=p=0",
                          str(path)], capture_output=True, text=True, check=True).stdout
    starts, ends = [], []
    for line in out.split():
        pts, _, dur = line.partition(",")
        if pts not in ("", "N/A"):
            starts.append(float(pts))
            ends.append(float(pts) + (float(dur) if dur not in ("", "N/A") else 0))
    return starts, ends


def media_span(path):
    """How much media a file holds, in seconds: from its first packet's start to its last packet's end (a part
    cut by SIGKILL has no duration field, and a part's timestamps do not start at 0)."""
    starts, ends = packet_times(path)
    return max(ends) - min(starts)


def media_end(path):
    """Where the last packet of a file ends, in seconds."""
    return max(packet_times(path)[1])


def starts_with_keyframe(path):
    """True when the file's first video packet is a keyframe (what comes before one does not decode)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-read_intervals", "%+#1", "-show_entries",
                          "packet=flags", "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.strip().startswith("K")


def stream_packets(path, kind):
    """(start, end) in seconds of each packet of the file's first `kind` stream ("v" or "a")."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", f"{kind}:0", "-show_entries",
                          "packet=pts_time,duration_time", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True).stdout
    spans = []
    for line in out.split():
        pts, _, dur = line.partition(",")
        if pts not in ("", "N/A"):
            spans.append((float(pts), float(pts) + (float(dur) if dur not in ("", "N/A") else 0)))
    return sorted(spans)


def decode_errors(path):
    """What ffmpeg says when it decodes the whole file ("" when nothing)."""
    proc = subprocess.run(["ffmpeg", *FFMPEG_LOG, "-i", str(path), "-f", "null", "-"], capture_output=True, text=True)
    return proc.stderr if proc.returncode else proc.stderr.strip()


class Recording:
    def __init__(self, stack, db, workers, video="vp8", source=None):
        self.stack, self.db, self.workers = stack, db, workers
        self.queue = "rec" + uuid.uuid4().hex[:10]
        self.vport, self.aport = free_udp_pairs(2)
        self.token = make_token(stack, unique("inst"), "instructor")
        self.client = Client(stack.frontends["nginx"], self.token)
        r = self.client.post(API + "/recordings/start", {
            "title": unique("live"), "room_id": unique("room"),
            "source": source or {"type": "sdp", "sdp": sdp_for(self.vport, self.aport, video)}})
        assert r.status_code == 201, r.text
        self.id = r.json()["id"]
        # Other tests leave record jobs behind: this one moves to a queue of its own.
        with db.cursor() as cur:
            cur.execute("UPDATE jobs SET queue = %s WHERE recording_id = %s AND kind = 'record' RETURNING id, payload",
                        (self.queue, self.id))
            (self.job, payload), = cur.fetchall()
        if not source:
            assert payload["source_type"] == "sdp" and payload["sdp"].startswith("v=0"), payload
        self.folder = Path(stack.storage_path) / self.id

    def start_worker(self, **env):
        return self.workers.start("--queues", self.queue, **env)

    def wait_listening(self):
        poll("the recorder to bind the SDP's ports",
             lambda: port_taken(self.vport) and port_taken(self.aport), timeout=15)

    def wait_drained(self):
        """Until the recorder has read every datagram sent to it: the receive queues of all its UDP sockets (the
        SDP's ports, and the loopback ones its relay hands each datagram to libavformat on) are empty. A sender
        that exited has sent all it will; what is still queued would be cut off by a stop now. (The health
        report cannot say so: the recorder writes it only while packets arrive.)"""
        def drained():
            queues = udp_receive_queues()
            sdp_socket = next((inode for inode, (port, _) in queues.items() if port == self.vport), None)
            recorder = sdp_socket and holder_of(sdp_socket)
            if not recorder:
                return False
            mine = [queues[i] for i in socket_inodes(recorder) if i in queues]
            self.recorder_pid = recorder
            return len(mine) >= 4 and all(waiting == 0 for _, waiting in mine)
        poll("the recorder to read what was sent", drained, timeout=15)

    def socket_drops(self):
        """{inode: drops} of the recorder's UDP sockets (after wait_drained): the SDP's ports and the loopback
        ones libavformat reads, which the relay's loss count cannot see."""
        drops = udp_drops()
        return {i: drops[i] for i in socket_inodes(self.recorder_pid) if i in drops}

    def recorded_s(self):
        """How much media the recorder has written, by its last health report (one a second while packets
        arrive)."""
        detail = self.detail()
        return detail["recorded_s"] if detail else 0

    def row(self):
        with self.db.cursor() as cur:
            cur.execute("SELECT r.status, r.status_detail, r.source_file, r.size_bytes, r.duration_s,"
                        " j.state, j.attempts, j.last_error"
                        " FROM recordings r JOIN jobs j ON j.id = %s WHERE r.id = %s", (self.job, self.id))
            return dict(zip(("status", "detail", "source_file", "size", "duration", "state", "attempts", "error"),
                           cur.fetchone()))

    def detail(self):
        with self.db.cursor() as cur:
            cur.execute("SELECT progress_detail FROM jobs WHERE id = %s", (self.job,))
            return cur.fetchone()[0]

    def stop(self):
        r = self.client.post(f"{API}/recordings/{self.id}/stop")
        assert r.status_code == 202, r.text
        poll("the record job to finish", lambda: self.row()["state"] in ("succeeded", "failed", "cancelled"),
             timeout=30)
        return self.row()


@pytest.fixture
def workers(stack, tmp_path):
    w = Workers(stack, tmp_path)
    yield w
    w.stop_all()


def send(rec, seconds, video="vp8"):
    proc = sender(rec.vport, rec.aport, seconds, video)
    _, err = proc.communicate(timeout=seconds + 30)
    assert proc.returncode == 0, err.decode()


@pytest.mark.parametrize("video", ["vp8", "h264"])
def test_rtp_recording_is_remuxed_published_and_probed(stack, db, workers, video):
    rec = Recording(stack, db, workers, video)
    rec.start_worker()
    rec.wait_listening()
    assert rec.row()["status"] == "pending"
    proc = sender(rec.vport, rec.aport, 6, video)
    poll("status recording", lambda: rec.row()["status"] == "recording", timeout=10)
    health = poll("health in the job's progress detail", lambda: (d := rec.detail()) and all(
        st["bit_rate"] > 0 for st in d["streams"]) and d, timeout=10)
    assert health["part"] == 1 and len(health["streams"]) == 2, health
    kinds = {st["type"]: st for st in health["streams"]}
    assert kinds["video"]["codec"] == video and kinds["audio"]["codec"] == "opus", health
    for st in health["streams"]:
        assert st["packets"] > 0 and st["bytes"] > 0 and st["bit_rate"] > 0 and "last_keyframe_age_s" in st, st
        # A clean local stream: nothing lost. Jitter is the sender's (it encodes in real time on a loaded
        # machine, tens of ms at worst); a wrong clock rate or unit would be 10-1000 times off.
        assert st["lost"] == 0 and 0 <= st["jitter_ms"] < 100, st
    # The same report in the API while it records.
    got = poll("health in GET /recordings/{id}",
               lambda: (b := rec.client.get(f"{API}/recordings/{rec.id}").json())["health"] and b, timeout=10)
    assert got["status"] == "recording" and got["health"]["part"] == 1, got
    assert sorted(st["type"] for st in got["health"]["streams"]) == ["audio", "video"], got["health"]
    assert all(st["packets"] > 0 and st["bit_rate"] > 0 for st in got["health"]["streams"]), got["health"]
    _, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err.decode()
    rec.wait_drained()
    t = time.monotonic()
    row = rec.stop()
    assert time.monotonic() - t < 2, "the file was not finalised within 2 s of the stop"
    assert row["state"] == "succeeded", row
    assert row["status"] == "processing" and row["source_file"] == "source.mkv", row
    src = rec.folder / "source.mkv"
    duration, codecs = ffprobe_duration(src)
    assert abs(duration - 6.0) <= 0.5, duration
    assert codecs == sorted(["opus", video]), codecs
    assert starts_with_keyframe(src) and stream_packets(src, "v")[0][0] <= 0.1, stream_packets(src, "v")[:3]
    assert row["size"] == src.stat().st_size and abs(row["duration"] - duration) < 0.2, row
    assert rec.client.get(f"{API}/recordings/{rec.id}").json()["health"] is None
    assert decode_errors(src) == ""
    # The probe follows (sql/007_record.sql) and reads the joined file.
    probe = only_job(db, rec.id, "probe")
    assert run_job(stack, db, probe, lambda r: r["state"] != "queued")["state"] == "succeeded"
    assert rec.row()["status"] in ("processing", "ready")


def test_pause_without_packets_is_one_recording_and_parts_are_joined(stack, db, workers):
    rec = Recording(stack, db, workers)
    rec.start_worker(VTP_RECORD_PART_S="2")
    rec.wait_listening()
    # 11 s without packets: longer than libavformat's 10 s RTP read timeout; a muted class goes on.
    proc = sender(rec.vport, rec.aport, 15, gap=(2, 13))
    # Time has to pass here: 12.5 s after the sender started, the pause has lasted longer than the 10 s RTP
    # read timeout, and the recording must still be going.
    time.sleep(12.5)
    assert rec.row()["state"] == "running" and rec.row()["status"] == "recording"
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    rec.wait_drained()
    row = rec.stop()
    assert row["state"] == "succeeded" and row["status"] == "processing", row
    parts = sorted(p.name for p in (rec.folder / "parts").iterdir())
    assert len(parts) >= 2, parts
    duration, _ = ffprobe_duration(rec.folder / "source.mkv")
    # 2 s, the 11 s pause, 2 s: one timeline.
    assert abs(duration - 15) <= 0.5, duration
    assert decode_errors(rec.folder / "source.mkv") == ""


def test_sigkill_of_the_worker_is_recovered_by_another(stack, db, workers):
    rec = Recording(stack, db, workers)
    doomed = rec.start_worker()
    rec.wait_listening()
    proc = sender(rec.vport, rec.aport, 12)
    poll("5 s recorded", lambda: rec.recorded_s() >= 5, timeout=20)
    doomed.kill()
    doomed.wait()
    retry = rec.start_worker()  # claims the job once the lease of the dead one expires
    poll("the retry", lambda: rec.row()["attempts"] == 2 and rec.row()["state"] == "running", timeout=15)
    _, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err.decode()
    rec.wait_drained()
    row = rec.stop()
    assert row["state"] == "succeeded" and row["status"] == "processing", row
    assert re.search(r"worker stopped at \d+\.\d s and another one continued .* \(about \d+ s\) is missing",
                     row["detail"] or ""), row
    duration, _ = ffprobe_duration(rec.folder / "source.mkv")
    first = media_span(rec.folder / "parts" / "part-0001.mkv")
    # Killed at 5 s: the last cluster (1 s) and the interleaving (0.5 s) may be lost, no more.
    assert first >= 3.4, first
    # ... and what arrived once the retry had bound the ports again is joined after it.
    assert first + 1 <= duration <= 12.5, (first, duration)
    assert decode_errors(rec.folder / "source.mkv") == ""
    # The first attempt's part was joined while the retry recorded; its stop joined only its own part.
    log = retry.log.read_text()
    assert "part 1 joined while recording" in log, log
    m = re.search(JOINED_AT_STOP, log)
    assert m and (int(m[2]), int(m[3])) == (1, 1), log


def test_maximum_duration_ends_the_recording_and_says_so(stack, db, workers):
    rec = Recording(stack, db, workers)
    rec.start_worker(VTP_RECORD_MAX_S="3")
    rec.wait_listening()
    proc = sender(rec.vport, rec.aport, 6)
    poll("the recorder to end by itself", lambda: rec.row()["state"] == "succeeded", timeout=15)
    proc.kill()
    proc.wait()
    row = rec.row()
    assert row["status"] == "processing" and "maximum duration of 3 s" in row["detail"], row
    duration, _ = ffprobe_duration(rec.folder / "source.mkv")
    assert 2.5 <= duration <= 3.6, duration


def test_no_packets_within_the_inactivity_limit_fails_the_recording(stack, db, workers):
    rec = Recording(stack, db, workers)
    rec.start_worker(VTP_RECORD_INACTIVITY_S="2")
    poll("the recorder to give up", lambda: rec.row()["state"] == "succeeded", timeout=15)
    row = rec.row()
    assert row["status"] == "failed" and row["source_file"] is None, row
    assert row["detail"] == "ended after 2 s without packets; no media was received", row


def test_ports_in_use_are_a_clear_error(stack, db, workers):
    rec = Recording(stack, db, workers)
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", rec.vport))
    try:
        rec.start_worker()
        poll("the attempt to fail", lambda: rec.row()["error"], timeout=10)
        assert "ports named in the SDP" in rec.row()["error"] and "in use" in rec.row()["error"], rec.row()
    finally:
        holder.close()


def tcp_listening(port):
    with open("/proc/net/tcp") as f:
        return any(line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A" for line in f.readlines()[1:])


def test_rtmp_push_to_a_listening_recorder(stack, db, workers):
    port = free_udp_pairs(1)[0]
    url = f"rtmp://127.0.0.1:{port}/live/class?listen"
    rec = Recording(stack, db, workers, source={"type": "url", "url": url})
    with db.cursor() as cur:
        cur.execute("SELECT payload FROM jobs WHERE id = %s", (rec.job,))
        assert cur.fetchone()[0] == {"source_type": "url", "url": url}
    rec.start_worker()
    poll("the recorder to listen", lambda: tcp_listening(port), timeout=10)
    proc = subprocess.run(["ffmpeg", *FFMPEG_LOG, "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15", "-re",
                           "-f", "lavfi", "-i", "sine=sample_rate=44100", "-t", "5", "-c:v", "libx264", "-preset",
                           "ultrafast", "-g", "15", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv",
                           f"rtmp://127.0.0.1:{port}/live/class"], capture_output=True, text=True, timeout=40)
    assert proc.returncode == 0, proc.stderr
    # The encoder hung up: the recording ends by itself and says so.
    poll("the recording to end", lambda: rec.row()["state"] == "succeeded", timeout=15)
    row = rec.row()
    assert row["status"] == "processing" and row["detail"] == "ended by the source", row
    duration, codecs = ffprobe_duration(rec.folder / "source.mkv")
    assert abs(duration - 5) <= 0.5 and codecs == ["aac", "h264"], (duration, codecs)
    assert decode_errors(rec.folder / "source.mkv") == ""


def test_a_camera_that_never_sends_does_not_hold_back_the_microphone(stack, db, workers):
    rec = Recording(stack, db, workers)
    rec.start_worker()
    rec.wait_listening()
    proc = sender(rec.vport, rec.aport, 8, video=None)
    _, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err.decode()
    rec.wait_drained()
    row = rec.stop()
    assert row["state"] == "succeeded" and row["status"] == "processing", row
    duration, codecs = ffprobe_duration(rec.folder / "source.mkv")
    assert codecs == ["opus"] and abs(duration - 8) <= 0.5, (duration, codecs)


def test_a_worker_shutdown_hands_the_recording_to_the_next_worker(stack, db, workers):
    rec = Recording(stack, db, workers)
    first = rec.start_worker(VTP_SHUTDOWN_GRACE_S="0")
    rec.wait_listening()
    proc = sender(rec.vport, rec.aport, 8)
    poll("3 s recorded", lambda: rec.recorded_s() >= 3, timeout=20)
    first.send_signal(signal.SIGTERM)  # a deploy: the part is closed and the job requeued, not finished
    assert first.wait(timeout=20) == 0
    row = rec.row()
    assert row["state"] == "queued" and row["status"] == "recording", row
    rec.start_worker()
    poll("the next worker to continue", lambda: rec.row()["state"] == "running", timeout=10)
    _, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err.decode()
    rec.wait_drained()
    row = rec.stop()
    assert row["state"] == "succeeded" and row["status"] == "processing", row
    assert "another one continued" in row["detail"], row
    parts = sorted(p.name for p in (rec.folder / "parts").iterdir())
    assert parts == ["part-0001.mkv", "part-0002.mkv"], parts
    first_part = media_span(rec.folder / "parts" / "part-0001.mkv")
    assert first_part >= 2.5, first_part  # closed cleanly: nothing of the first 3 s lost
    duration, _ = ffprobe_duration(rec.folder / "source.mkv")
    assert first_part + 2 <= duration <= 8.5, (first_part, duration)


def test_a_muted_microphone_is_filled_with_silence_to_the_length_of_the_video(stack, db, workers):
    rec = Recording(stack, db, workers)
    rec.start_worker()
    rec.wait_listening()
    # The microphone sends for 1 s, is muted from 1 s to 3 s, sends again until 5 s and is muted to the end
    # at 8 s; the camera sends throughout. One sender, so one SSRC per stream and timestamps that jump.
    argv = ["ffmpeg", *FFMPEG_LOG, "-re", "-t", "8", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15", "-re", "-t",
            "8", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-map", "0:v", "-c:v", "libvpx", "-deadline",
            "realtime", "-b:v", "200k", "-g", "15", "-payload_type", "96", "-f", "rtp",
            f"rtp://127.0.0.1:{rec.vport}?rtcpport={rec.vport + 1}", "-map", "1:a", "-af",
            "aselect='not(between(t,1,3))*lt(t,5)'", "-c:a", "libopus", "-b:a", "32k", "-ac", "2", "-payload_type",
            "100", "-f", "rtp", f"rtp://127.0.0.1:{rec.aport}?rtcpport={rec.aport + 1}"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=40)
    assert proc.returncode == 0, proc.stderr
    rec.wait_drained()
    row = rec.stop()
    assert row["state"] == "succeeded" and row["status"] == "processing", row
    src = rec.folder / "source.mkv"
    video, audio = stream_packets(src, "v"), stream_packets(src, "a")
    assert abs(video[-1][1] - 8) <= 0.5, video[-1]
    # Audio and video end within one video frame of each other, and the audio has no hole left.
    assert abs(audio[-1][1] - video[-1][1]) <= 1 / 15, (audio[-1], video[-1])
    assert audio[0][0] <= 1 / 15, audio[0]
    assert max(b[0] - a[1] for a, b in zip(audio, audio[1:])) <= 0.021, "a gap left in the audio"
    assert decode_errors(src) == ""


def pushed_recording(stack, db, workers, port, url, push_argv, codecs):
    """A recording whose recorder listens at url (on port); push_argv (an ffmpeg command) pushes 5 s to it."""
    rec = Recording(stack, db, workers, source={"type": "url", "url": url})
    rec.start_worker()
    poll("the recorder to listen", lambda: tcp_listening(port) or udp_bound(port), timeout=10)
    proc = subprocess.run(push_argv, capture_output=True, text=True, timeout=40)
    assert proc.returncode == 0, proc.stderr
    poll("the recording to end", lambda: rec.row()["state"] == "succeeded", timeout=15)
    row = rec.row()
    assert row["status"] == "processing" and row["detail"] == "ended by the source", row
    duration, got = ffprobe_duration(rec.folder / "source.mkv")
    assert abs(duration - 5) <= 0.5 and got == codecs, (duration, got)
    assert decode_errors(rec.folder / "source.mkv") == ""


def udp_bound(port):
    with open("/proc/net/udp") as f:
        return any(line.split()[1].endswith(f":{port:04X}") for line in f.readlines()[1:])


ENCODE_5S = ["-re", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15", "-re", "-f", "lavfi", "-i",
             "sine=sample_rate=48000", "-t", "5", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
             "-g", "15", "-pix_fmt", "yuv420p"]


def test_srt_push_to_a_listening_recorder(stack, db, workers):
    port = free_udp_pairs(1)[0]
    pushed_recording(stack, db, workers, port, f"srt://127.0.0.1:{port}?mode=listener",
                     ["ffmpeg", *FFMPEG_LOG, *ENCODE_5S, "-c:a", "aac", "-f", "mpegts",
                      f"srt://127.0.0.1:{port}?mode=caller&pkt_size=1316"], ["aac", "h264"])


def test_rtsp_push_to_a_listening_recorder(stack, db, workers):
    # ffmpeg cannot serve RTSP to a recorder that pulls, so the recorder is the RTSP server and the encoder
    # pushes (ANNOUNCE + RECORD, interleaved over TCP), as OBS or an IP camera's "push" mode does.
    port = free_udp_pairs(1)[0]
    pushed_recording(stack, db, workers, port, f"rtsp://127.0.0.1:{port}/live/class?listen",
                     ["ffmpeg", *FFMPEG_LOG, *ENCODE_5S, "-c:a", "libopus", "-f", "rtsp", "-rtsp_transport", "tcp",
                      f"rtsp://127.0.0.1:{port}/live/class"], ["h264", "opus"])


class PortPairForwarder:
    """A UDP forwarder between a sender and the recorder's RTP/RTCP port pair (to_port, to_port + 1), listening on
    a free pair of its own (self.port, self.port + 1). A thread hands every datagram to
    on_datagram(sock, data, source, now) (sock: self.rtp or self.rtcp) and calls on_tick(now) at least every
    `interval` s, until close(). A subclass sets its own state, then calls this __init__, which starts the thread."""

    def __init__(self, to_port, interval=0.1):
        self.to_port, self.interval = to_port, interval
        self.port = free_udp_pairs(1)[0]
        self.rtp, self.rtcp = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
        self.rtp.bind(("127.0.0.1", self.port))
        self.rtcp.bind(("127.0.0.1", self.port + 1))
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.is_set():
            ready, _, _ = select.select([self.rtp, self.rtcp], [], [], self.interval)
            self.on_tick(time.monotonic())
            for sock in ready:
                data, source = sock.recvfrom(65536)
                self.on_datagram(sock, data, source, time.monotonic())

    def on_tick(self, now):
        pass

    def on_datagram(self, sock, data, source, now):
        raise NotImplementedError

    def close(self):
        self.done.set()
        self.thread.join()
        self.rtp.close()
        self.rtcp.close()


class DroppingForwarder(PortPairForwarder):
    """Drops every `every`-th RTP datagram on the way to the recorder (a real network fault on loopback) and
    passes RTCP on."""

    def __init__(self, to_port, every):
        self.every = every
        self.forwarded = self.dropped = 0
        super().__init__(to_port)

    def on_datagram(self, sock, data, source, now):
        if sock is not self.rtp:
            self.rtcp.sendto(data, ("127.0.0.1", self.to_port + 1))
        elif (self.forwarded + self.dropped + 1) % self.every == 0:
            self.dropped += 1
        else:
            self.forwarded += 1
            self.rtp.sendto(data, ("127.0.0.1", self.to_port))


def test_lost_packets_and_jitter_are_counted_per_stream(stack, db, workers):
    rec = Recording(stack, db, workers)
    rec.start_worker()
    rec.wait_listening()
    fwd = DroppingForwarder(rec.vport, every=10)
    try:
        # The video goes through the forwarder; the audio straight to the recorder.
        proc = sender(fwd.port, rec.aport, 8)
        # While it records, the API shows the loss.
        poll("loss in GET /recordings/{id}", lambda: (h := rec.client.get(f"{API}/recordings/{rec.id}").json()["health"])
             and [st for st in h["streams"] if st["type"] == "video" and st["lost"] > 0], timeout=15)
        # Someone else (127.0.0.2) sends RTP and RTCP to the audio's ports: dropped and counted, not lost.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.bind(("127.0.0.2", 0))
            rtp = bytes([0x80, 111, 0, 1]) + (12345).to_bytes(4, "big") + (0xfeedbeef).to_bytes(4, "big") + b"x" * 40
            for _ in range(5):
                stranger.sendto(rtp, ("127.0.0.1", rec.aport))
            for _ in range(3):
                stranger.sendto(bytes([0x81, 201, 0, 1]) + (0xfeedbeef).to_bytes(4, "big"), ("127.0.0.1", rec.aport + 1))
        poll("the stranger's datagrams in GET /recordings/{id}", lambda: [
            st for st in rec.client.get(f"{API}/recordings/{rec.id}").json()["health"]["streams"]
            if st["type"] == "audio" and st["foreign"] == 8], timeout=15)
        _, err = proc.communicate(timeout=40)
        assert proc.returncode == 0, err.decode()
        assert fwd.dropped > 10, (fwd.dropped, fwd.forwarded)
        poll("the forwarder to pass on what it was sent", lambda: all(
            waiting == 0 for port, waiting in udp_receive_queues().values() if port == fwd.port), timeout=15)
        rec.wait_drained()
        row = rec.stop()
        assert row["state"] == "succeeded" and row["status"] == "processing", row
        # The recorder's last report, written when it stopped, counts every drop (but one at the very end,
        # which RFC 3550 cannot see: it counts up to the highest sequence number received).
        got = {st["type"]: st for st in rec.detail()["streams"]}
        assert fwd.dropped - 1 <= got["video"]["lost"] <= fwd.dropped, (got, fwd.dropped)
        assert got["video"]["jitter_ms"] >= 0, got
        assert got["audio"]["lost"] == 0 and 0 <= got["audio"]["jitter_ms"] < 100, got
        assert (got["audio"]["foreign"], got["video"]["foreign"]) == (8, 0), got
    finally:
        fwd.close()


JOINED_AT_STOP = r"the join at the stop took ([0-9.]+) s: (\d+) part\(s\) joined at the stop, (\d+) while recording"


def packets_by_type(path):
    """{"video"/"audio": [(pts in ms, size), ...]} of a file's packets, in file order."""
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=index,codec_type:packet=stream_index,pts,size",
                          "-of", "json", str(path)], capture_output=True, text=True, check=True).stdout
    info = json.loads(out)
    kinds = {s["index"]: s["codec_type"] for s in info["streams"]}
    got = {"video": [], "audio": []}
    for p in info["packets"]:
        got[kinds[p["stream_index"]]].append((int(p["pts"]), int(p["size"])))
    return got


def test_parts_are_joined_while_recording_and_the_stop_joins_only_the_last(stack, db, workers):
    rec = Recording(stack, db, workers, "h264")
    worker = rec.start_worker(VTP_RECORD_PART_S="3")
    rec.wait_listening()
    send(rec, 12, "h264")
    rec.wait_drained()
    drops = rec.socket_drops()
    row = rec.stop()
    assert row["state"] == "succeeded" and row["status"] == "processing", row
    assert len(drops) >= 4 and all(n == 0 for n in drops.values()), drops
    parts = sorted((rec.folder / "parts").iterdir())
    assert len(parts) >= 4, parts
    log = worker.log.read_text()
    # Every part but the last was appended while the recording went on; the stop appended only the last.
    assert re.findall(r"part (\d+) joined while recording", log) == [str(n) for n in range(1, len(parts))], log
    m = re.search(JOINED_AT_STOP, log)
    assert m and (int(m[2]), int(m[3])) == (1, len(parts) - 1), log
    # Nothing was lost on the way (the relay's count) nor dropped by a full receive queue (the drops above).
    assert all(st["lost"] == 0 for st in rec.detail()["streams"]), rec.detail()
    src = rec.folder / "source.mkv"
    assert not list(rec.folder.glob("source.mkv.tmp*"))
    duration, codecs = ffprobe_duration(src)
    assert abs(duration - 12) <= 0.5 and codecs == ["h264", "opus"], (duration, codecs)
    assert starts_with_keyframe(src) and decode_errors(src) == ""
    # The same content as a join of every part at the stop: each part's packets, in order, moved by the first
    # part's start, no more and no fewer (the audio may only gain silence: before the first packet, when the audio
    # began 20 ms or more after the video, and at the end, up to the video's end).
    joined = packets_by_type(src)
    expected = {"video": [], "audio": []}
    for part in parts:
        for kind, packets in packets_by_type(part).items():
            expected[kind].extend(packets)
    zero = min(min(expected["video"])[0], min(expected["audio"])[0])
    for kind in expected:
        expected[kind] = [(pts - zero, size) for pts, size in expected[kind]]
    assert joined["video"] == expected["video"]
    audio = joined["audio"]
    head = audio.index(expected["audio"][0]) if expected["audio"][0] in audio else -1
    assert head >= 0 and audio[head:head + len(expected["audio"])] == expected["audio"], (audio[:20], expected["audio"][:20])
    silent = audio[:head] + audio[head + len(expected["audio"]):]
    assert len({size for _, size in silent}) <= 1, silent  # silent frames are one and the same frame
    video, audio = stream_packets(src, "v"), stream_packets(src, "a")
    assert all(b[0] > a[0] for a, b in zip(video, video[1:])), "video timestamps not increasing"
    assert max(b[0] - a[0] for a, b in zip(video, video[1:])) <= 2 / 15 + 0.002, "a gap in the video"
    assert max(abs(b[0] - a[1]) for a, b in zip(audio, audio[1:])) <= 0.021, "a gap or overlap in the audio"
    assert abs(audio[-1][1] - video[-1][1]) <= 1 / 15, (audio[-1], video[-1])


def test_a_retry_that_brings_a_camera_joins_every_part_at_the_stop(stack, db, workers):
    rec = Recording(stack, db, workers)
    doomed = rec.start_worker(VTP_RECORD_PART_S="2")
    rec.wait_listening()
    mic = sender(rec.vport, rec.aport, 30, video=None)  # the camera is off at first
    try:
        poll("two parts joined while recording",
             lambda: "part 2 joined while recording" in doomed.log.read_text(), timeout=30)
        doomed.kill()  # leaves source.mkv.tmp-1 behind, half-written
        doomed.wait()
    finally:
        mic.kill()
        mic.wait()
    assert (rec.folder / "source.mkv.tmp-1").exists()
    retry = rec.start_worker(VTP_RECORD_PART_S="2")
    poll("the retry", lambda: rec.row()["attempts"] == 2 and rec.row()["state"] == "running", timeout=15)
    rec.wait_listening()
    send(rec, 6)  # camera and microphone
    rec.wait_drained()
    row = rec.stop()
    assert row["state"] == "succeeded" and row["status"] == "processing", row
    assert "another one continued" in row["detail"], row
    log = retry.log.read_text()
    # The retry began its join with the first attempt's parts (microphone only) and gave it up at its own first
    # part, which has video: the stop joined every part, with every stream.
    assert re.search(r"the join made while recording is not used \(part \d+ has a stream \(vp8\)", log), log
    assert "source.mkv.tmp-1 of an earlier attempt removed" in log, log
    parts = sorted((rec.folder / "parts").iterdir())
    m = re.search(JOINED_AT_STOP, log)
    assert m and (int(m[2]), int(m[3])) == (len(parts), 0), log
    src = rec.folder / "source.mkv"
    duration, codecs = ffprobe_duration(src)
    assert codecs == ["opus", "vp8"], codecs
    kinds = [packets_by_type(p) for p in parts]
    # The first attempt's parts (a part cut before its first packet has none, and no span)
    first = sum(media_span(p) for p, k in zip(parts, kinds) if k["audio"] and not k["video"])
    assert first + 5 <= duration <= first + 30, (first, duration)
    assert decode_errors(src) == ""
    assert not list(rec.folder.glob("source.mkv.tmp*"))
