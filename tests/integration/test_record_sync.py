"""Audio/video sync of an RTP recording when the sender's first RTCP sender report comes late and one stream
starts later than the other (issue 5 item 4). mediasoup sends its first sender report on its RTCP timer, up to
seconds after its first RTP packet, and a consumer's audio and video start at different instants; the ffmpeg
CLI sends a report before its first packet, so a UDP forwarder in the test makes the situation: it drops one
stream's first 1.5 s of RTP (that stream starts late) and holds back every RTCP packet of each stream until a
moment of its own (video's at 5 s, audio's at 5.5 s, so the order is known), or forever (a sender without RTCP).
The media is a lip-sync probe (a white flash and a 1 kHz click at the same instant every 2 s), VP8+Opus and
H.264+Opus, 40 s, sent in real time with `ffmpeg -re -c copy -f rtp`; the scenarios run at the same time.
In the recorded file: every flash has its click within 40 ms, from the first probe on; neither stream has a
timestamp jump (no gap or overlap beyond one frame); audio and video end within one frame; the early stream
starts at 0 and the late one at its offset (a late video at its first keyframe after 1.5 s; before a late
microphone the recorder writes silence from 0, as for any microphone that starts after the camera, so its
offset shows in where its clicks are)."""

import math
import subprocess
import time
from types import SimpleNamespace

import psycopg2
import pytest

from test_record import FFMPEG_LOG, PortPairForwarder, Recording, decode_errors, ffprobe_duration, stream_packets
from test_record_long import click_times, flash_times, pair_offsets, send_file
from test_worker import Workers

SECONDS = 40
PERIOD = 2  # a probe every 2 s, so that the first seconds are checked too
FPS, GOP = 15, 15
LATE_S = 1.5
# name: (video codec, the stream that starts late, when each stream's RTCP is let through (s after its first
# RTP packet; None: never), how far the audio's later reports claim its RTP clock drifts from the sender's clock)
SCENARIOS = {
    "vp8-audio-late": ("vp8", "audio", {"video": 5.0, "audio": 5.5}, 0),
    "vp8-video-late": ("vp8", "video", {"video": 5.0, "audio": 5.5}, 0),
    "h264-audio-late": ("h264", "audio", {"video": 5.0, "audio": 5.5}, 0),
    "h264-video-late": ("h264", "video", {"video": 5.0, "audio": 5.5}, 0),
    "vp8-audio-late-no-rtcp": ("vp8", "audio", None, 0),
    "vp8-audio-drifts": ("vp8", "audio", {"video": 5.0, "audio": 5.5}, 0.002),
}


def encode_probe(path, video):
    """SECONDS of 160x120 black with a white flash (0.1 s) and silence with a 1 kHz click (30 ms), both at every
    whole PERIOD s, into path (Matroska, VP8 or H.264 with a keyframe every GOP frames, and Opus in 20 ms frames)."""
    at_probe = f"lt(mod(t,{PERIOD}),%s)"
    codec = {"vp8": ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "100k", "-auto-alt-ref", "0",
                     "-lag-in-frames", "0"],
             "h264": ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline",
                      "-pix_fmt", "yuv420p", "-x264-params", "repeat-headers=1"]}[video]
    subprocess.run(["ffmpeg", *FFMPEG_LOG, "-y", "-f", "lavfi", "-i", f"color=c=black:s=160x120:r={FPS}", "-f", "lavfi",
                    "-i", f"aevalsrc='if({at_probe % 0.03},0.8*sin(2*PI*1000*t),0)':s=48000", "-t", str(SECONDS),
                    "-vf", f"drawbox=c=white:t=fill:enable='{at_probe % 0.1}'", "-af", "aformat=channel_layouts=stereo",
                    "-fps_mode", "passthrough", *codec, "-g", str(GOP), "-c:a", "libopus", "-b:a", "32k",
                    "-frame_duration", "20", "-f", "matroska", str(path)], check=True, capture_output=True, timeout=300)


class LateForwarder(PortPairForwarder):
    """Forwards one stream from a sender to the recorder's RTP/RTCP port pair. Drops the RTP that arrives within
    late_s of the stream's first packet (the stream starts late); holds back the sender's RTCP until release_s
    after that first packet and then passes on the last report it held and everything after it (release_s None:
    no RTCP ever). With drift, each sender report after the first one passed on claims a sender time later by
    drift times the time since that first one (the stream's RTP clock runs slow by that much). Datagrams from the
    recorder itself (its receiver reports and feedback) are not echoed back."""

    def __init__(self, to_port, late_s, release_s, drift=0):
        self.late_s, self.release_s, self.drift = late_s, release_s, drift
        self.first_ntp = None
        self.first = None  # time.monotonic() of the first RTP packet
        self.dropped = self.forwarded = self.withheld = 0
        self.held = None
        super().__init__(to_port, interval=0.05)

    def released(self, now):
        return self.release_s is not None and self.first is not None and now - self.first >= self.release_s

    def on_tick(self, now):
        if self.held and self.released(now):
            self.pass_rtcp(self.held)
            self.held = None

    def on_datagram(self, sock, data, source, now):
        if source[1] in (self.to_port, self.to_port + 1):
            return
        if sock is self.rtp:
            self.first = self.first or now
            if now - self.first < self.late_s:
                self.dropped += 1
            else:
                self.forwarded += 1
                self.rtp.sendto(data, ("127.0.0.1", self.to_port))
        elif self.released(now):
            self.pass_rtcp(data)
        else:
            self.withheld += 1
            self.held = data

    def pass_rtcp(self, data):
        if data[1] == 200 and len(data) >= 28:  # a sender report first: its NTP time is at bytes 8-16
            ntp = int.from_bytes(data[8:16], "big")
            self.first_ntp = self.first_ntp or ntp
            moved = ntp + int((ntp - self.first_ntp) * self.drift)
            data = data[:8] + moved.to_bytes(8, "big") + data[16:]
        self.rtcp.sendto(data, ("127.0.0.1", self.to_port + 1))


@pytest.fixture(scope="module")
def module_db(stack):
    db = psycopg2.connect(stack.database_url)
    db.autocommit = True
    yield db
    db.close()


@pytest.fixture(scope="module")
def module_workers(stack, tmp_path_factory):
    workers = Workers(stack, tmp_path_factory.mktemp("record-sync-workers"))
    yield workers
    workers.stop_all()


@pytest.fixture(scope="module")
def runs(stack, module_db, module_workers, tmp_path_factory):
    """Records every scenario at the same time; returns name -> Recording (with .stopped_row, .forwarders)."""
    tmp = tmp_path_factory.mktemp("record-sync")
    files = {codec: tmp / f"probe-{codec}.mkv" for codec in ("vp8", "h264")}
    for codec, path in files.items():
        encode_probe(path, codec)
    recs = {name: Recording(stack, module_db, module_workers, codec) for name, (codec, *_) in SCENARIOS.items()}
    forwarders, senders = [], []
    try:
        for name, rec in recs.items():
            _, late, release, drift = SCENARIOS[name]
            rec.start_worker()
            rec.forwarders = {kind: LateForwarder(port, LATE_S if kind == late else 0, release and release[kind],
                                                  drift if kind == "audio" else 0)
                              for kind, port in (("video", rec.vport), ("audio", rec.aport))}
            forwarders.extend(rec.forwarders.values())
        for rec in recs.values():
            rec.wait_listening()
        senders.extend(send_file(SimpleNamespace(vport=rec.forwarders["video"].port,
                                                 aport=rec.forwarders["audio"].port), files[SCENARIOS[name][0]])
                       for name, rec in recs.items())
        for proc in senders:
            _, err = proc.communicate(timeout=SECONDS + 60)
            assert proc.returncode == 0, err.decode()
        # What is still in the recorder's reorder buffer (max_delay 0.5 s) comes out when newer packets come or
        # the buffer's time is up; a stop right at the end of a class would lose it, so the stop comes a bit later.
        time.sleep(0.7)
        for rec in recs.values():
            rec.stopped_row = rec.stop()
    finally:
        for proc in senders:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for fwd in forwarders:
            fwd.close()
    return recs


def lip_sync(src):
    """flash - click (s) of each probe from the late stream's start on, checking that every probe has both."""
    # (silencedetect also ends a silence at the end of the file)
    flashes = [t for t in flash_times(src) if LATE_S <= t < SECONDS - PERIOD / 2]
    clicks = [t for t in click_times(src) if LATE_S <= t < SECONDS - PERIOD / 2]
    probes = len(range(math.ceil(LATE_S / PERIOD) * PERIOD, SECONDS, PERIOD))
    offsets = pair_offsets(flashes, clicks)
    assert len(flashes) == probes and len(clicks) == probes and len(offsets) == probes, (flashes, clicks)
    return flashes, offsets


@pytest.mark.parametrize("name", [name for name, (*_, drift) in SCENARIOS.items() if not drift])
def test_late_stream_and_late_sender_report_stay_in_sync(runs, name):
    codec, late, release, _ = SCENARIOS[name]
    rec = runs[name]
    # The scenario happened: the late stream lost its first 1.5 s, and the sender's first report was held back.
    fwd = rec.forwarders
    assert fwd[late].dropped > 0 and fwd[late].forwarded > 0, vars(fwd[late])
    assert all(f.withheld > 0 for f in fwd.values()), {k: vars(f) for k, f in fwd.items()}
    row = rec.stopped_row
    assert row["state"] == "succeeded" and row["status"] == "processing", row
    src = rec.folder / "source.mkv"
    duration, codecs = ffprobe_duration(src)
    assert abs(duration - SECONDS) <= 0.5 and codecs == sorted(["opus", codec]), (duration, codecs)
    video, audio = stream_packets(src, "v"), stream_packets(src, "a")
    frame = 1 / FPS

    # Where each stream begins: the early one at 0; a late camera at its first keyframe after its start (what
    # comes before a keyframe does not decode); a late microphone's silence is filled from 0.
    assert audio[0][0] <= 0.021, audio[:3]
    if late == "video":
        first_key = math.ceil(LATE_S * FPS / GOP) * GOP / FPS
        assert abs(video[0][0] - first_key) <= frame, (video[:3], first_key)
    else:
        assert video[0][0] <= frame, video[:3]

    # Lip sync at every probe from the late stream's start on, the first seconds included.
    _, offsets = lip_sync(src)
    print(f"{name}: flash - click over {len(offsets)} probes: {[round(o * 1000) for o in offsets]} ms")
    assert max(abs(o) for o in offsets) <= 0.040, f"flash - click: {[round(o * 1000) for o in offsets]} ms"

    # No timestamp jump: video frames follow each other one frame apart (at most one missing), the audio has no
    # gap and no overlap beyond 1 ms (Matroska's rounding); and the two end within one frame of each other.
    steps = [b[0] - a[0] for a, b in zip(video, video[1:])]
    assert 0 < min(steps) and max(steps) <= 2 * frame + 0.002, (min(steps), max(steps))
    gaps = [b[0] - a[1] for a, b in zip(audio, audio[1:])]
    assert -0.001 <= min(gaps) and max(gaps) <= 0.021, (min(gaps), max(gaps))
    assert abs(audio[-1][1] - video[-1][1]) <= frame, (audio[-1], video[-1])
    assert decode_errors(src) == ""


def test_later_sender_reports_are_followed(runs):
    """The audio's reports after its first claim that its RTP clock runs 0.2 % slow against the sender's clock:
    the recorder follows them (as it would real drift), so the clicks move later against the flashes by 0.2 % of
    the time since the first report, report by report (every ~5 s; ffmpeg's first report passed is at ~5 s)."""
    name = "vp8-audio-drifts"
    drift = SCENARIOS[name][3]
    rec = runs[name]
    assert rec.stopped_row["state"] == "succeeded" and rec.stopped_row["status"] == "processing", rec.stopped_row
    src = rec.folder / "source.mkv"
    flashes, offsets = lip_sync(src)
    print(f"{name}: flash - click over {len(offsets)} probes: {[round(o * 1000) for o in offsets]} ms")
    base = [o for t, o in zip(flashes, offsets) if t < 9.5]
    assert base and max(abs(o) for o in base) <= 0.040, offsets
    base = sum(base) / len(base)
    # A probe at t follows the last report before it, sent at t - 5 s .. t, and that report's claim is drift times
    # its time since the first one (~5 s).
    for t, o in zip(flashes, offsets):
        assert base - drift * max(0, t - 4.5) - 0.004 <= o <= base - drift * max(0, t - 10.5) + 0.004, (t, o, offsets)
    assert offsets[-1] <= base - drift * 25, offsets
