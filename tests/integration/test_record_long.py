"""The record job's long scenarios, run at the same time so that they cost about 5 minutes of wall time
together: a 5-minute VP8+Opus lip-sync probe (a white flash and a 1 kHz click at the same instant every
10 s) whose flash and click stay within 40 ms of each other in the recorded file, and whose duration is
within 0.5 s of what was sent; an H.264+Opus stream with 30 s of no packets in the middle that is one
recording on one timeline, with the microphone's silence filled; and a 90 s stream whose worker is
SIGKILLed at 60 s, which leaves >= 58 s playable and is recovered by another worker. The media is
encoded once, small, and sent in real time with `ffmpeg -re -c copy -f rtp`, so the senders cost little."""

import re
import subprocess
import time

import psycopg2
import pytest

from test_record import (FFMPEG_LOG, Recording, decode_errors, ffprobe_duration, media_span, starts_with_keyframe,
                         stream_packets)
from test_worker import Workers, poll

PROBE_S = 300  # the lip-sync probe's length
GAP = (10, 40)  # nothing is sent from 10 s to 40 s of a 50 s stream
GAP_S = 50
KILL_S = 90  # the stream whose worker is killed ...
KILL_AT = 60  # ... at this much recorded media


def encode(path, seconds, video, filters_v="", filters_a=""):
    """Encodes `seconds` of the probe (black 160x120 with a white flash, and silence with a 1 kHz click,
    both at every whole 10 s) into path, once, as fast as it goes."""
    vf = "drawbox=c=white:t=fill:enable='lt(mod(t,10),0.1)'" + filters_v
    af = "aformat=channel_layouts=stereo" + filters_a
    vcodec = ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "100k", "-g", "30",
              "-auto-alt-ref", "0", "-lag-in-frames", "0"] if video == "vp8" else [
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline", "-pix_fmt",
        "yuv420p", "-g", "30", "-x264-params", "repeat-headers=1"]
    subprocess.run(["ffmpeg", *FFMPEG_LOG, "-y", "-f", "lavfi", "-i", "color=c=black:s=160x120:r=15",
                    "-f", "lavfi", "-i", "aevalsrc='if(lt(mod(t,10),0.03),0.8*sin(2*PI*1000*t),0)':s=48000",
                    "-t", str(seconds), "-vf", vf, "-af", af, "-fps_mode", "passthrough", *vcodec,
                    "-c:a", "libopus", "-b:a", "32k", "-frame_duration", "20", "-f", "matroska", str(path)],
                   check=True, capture_output=True, timeout=300)


def send_file(rec, path):
    """Sends an encoded file as RTP in real time, video and audio to the recording's SDP ports."""
    return subprocess.Popen(["ffmpeg", *FFMPEG_LOG, "-re", "-i", str(path),
                             "-map", "0:v", "-c", "copy", "-payload_type", "96", "-f", "rtp",
                             f"rtp://127.0.0.1:{rec.vport}?rtcpport={rec.vport + 1}",
                             "-map", "0:a", "-c", "copy", "-payload_type", "100", "-f", "rtp",
                             f"rtp://127.0.0.1:{rec.aport}?rtcpport={rec.aport + 1}"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def flash_times(path):
    """When the video turns white (the first bright frame of each flash), in seconds."""
    proc = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v", "-vf",
                           "signalstats,metadata=mode=print:key=lavfi.signalstats.YAVG", "-f", "null", "-"],
                          capture_output=True, text=True, timeout=300)
    times, t, bright = [], None, False
    for line in proc.stderr.splitlines():
        if m := re.search(r"pts_time:([0-9.]+)", line):
            t = float(m.group(1))
        elif (m := re.search(r"lavfi\.signalstats\.YAVG=([0-9.]+)", line)) and t is not None:
            now = float(m.group(1)) > 128
            if now and not bright:
                times.append(t)
            bright = now
    return times


def click_times(path):
    """When each click starts (the end of each silence), in seconds."""
    proc = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:a", "-af",
                           "silencedetect=noise=-30dB:duration=1", "-f", "null", "-"],
                          capture_output=True, text=True, timeout=300)
    return [float(m) for m in re.findall(r"silence_end: ([0-9.]+)", proc.stderr)]


def pair_offsets(flashes, clicks):
    """flash minus click, in seconds, for each flash with a click within 1 s of it."""
    return [min((f - c for c in clicks), key=abs) for f in flashes if any(abs(f - c) < 1 for c in clicks)]


@pytest.fixture(scope="module")
def long_runs(stack, tmp_path_factory):
    """Starts the three long scenarios together and returns their Recordings once each has been stopped."""
    tmp = tmp_path_factory.mktemp("record-long")
    db = psycopg2.connect(stack.database_url)
    db.autocommit = True
    workers = Workers(stack, tmp)
    senders = []
    try:
        files = {"probe": tmp / "probe.mkv", "gap": tmp / "gap.mkv", "kill": tmp / "kill.mkv"}
        encode(files["probe"], PROBE_S, "vp8")
        gap = f",select='not(between(t,{GAP[0]},{GAP[1]}))'"
        encode(files["gap"], GAP_S, "h264", gap, gap.replace("select", "aselect"))
        encode(files["kill"], KILL_S, "h264")
        recs = {"probe": Recording(stack, db, workers, "vp8"), "gap": Recording(stack, db, workers, "h264"),
                "kill": Recording(stack, db, workers, "h264")}
        doomed = None
        for name, rec in recs.items():
            proc = rec.start_worker()
            doomed = proc if name == "kill" else doomed
        for rec in recs.values():
            rec.wait_listening()
        started = time.monotonic()
        procs = {name: send_file(rec, files[name]) for name, rec in recs.items()}
        senders.extend(procs.values())
        kill = recs["kill"]
        poll(f"{KILL_AT} s recorded", lambda: ((kill.detail() or {}).get("recorded_s") or 0) >= KILL_AT,
             timeout=KILL_AT + 30, interval=0.2)
        doomed.kill()
        doomed.wait()
        kill.killed_after = time.monotonic() - started
        kill.start_worker()
        poll("the retry", lambda: kill.row()["attempts"] == 2 and kill.row()["state"] == "running", timeout=20)
        for name in ("gap", "kill", "probe"):
            _, err = procs[name].communicate(timeout=PROBE_S + 60)
            assert procs[name].returncode == 0, err.decode()
            # The last packets are in the recorder's reorder buffer (max_delay, 0.5 s) until newer ones come:
            # the stop waits a moment for them, as a stop after the end of a class would.
            time.sleep(0.7)
            recs[name].stopped_row = recs[name].stop()
        yield recs
    finally:
        for proc in senders:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        workers.stop_all()
        db.close()


def test_lip_sync_probe_stays_within_40_ms_over_5_minutes(long_runs):
    rec = long_runs["probe"]
    assert rec.stopped_row["state"] == "succeeded" and rec.stopped_row["status"] == "processing", rec.stopped_row
    src = rec.folder / "source.mkv"
    flashes, clicks = flash_times(src), click_times(src)
    assert len(flashes) >= PROBE_S // 10 - 1 and len(clicks) >= PROBE_S // 10 - 1, (flashes, clicks)
    offsets = pair_offsets(flashes, clicks)
    assert len(offsets) >= PROBE_S // 10 - 1, (flashes, clicks)
    worst = max(offsets, key=abs)
    print(f"lip-sync: flash - click over {len(offsets)} probes: {[round(o * 1000) for o in offsets]} ms")
    assert abs(worst) <= 0.040, f"flash - click: {[round(o * 1000) for o in offsets]} ms"


def test_a_5_minute_recording_lasts_what_was_sent(long_runs):
    src = long_runs["probe"].folder / "source.mkv"
    duration, codecs = ffprobe_duration(src)
    assert abs(duration - PROBE_S) <= 0.5, duration
    assert codecs == ["opus", "vp8"], codecs
    # The sender's first frame is a keyframe, sent at once: it is in the recording (it was dropped when a
    # stream's first packet was timed before the first packet that arrived).
    assert starts_with_keyframe(src)
    assert abs(long_runs["probe"].stopped_row["duration"] - duration) < 0.2, long_runs["probe"].stopped_row
    assert decode_errors(src) == ""


def test_30_s_without_packets_is_one_recording_with_the_silence_filled(long_runs):
    rec = long_runs["gap"]
    row = rec.stopped_row
    assert row["state"] == "succeeded" and row["status"] == "processing", row
    assert row["attempts"] == 1 and not row["detail"], row
    src = rec.folder / "source.mkv"
    duration, codecs = ffprobe_duration(src)
    assert abs(duration - GAP_S) <= 0.5 and codecs == ["h264", "opus"], (duration, codecs)
    assert starts_with_keyframe(src)
    video, audio = stream_packets(src, "v"), stream_packets(src, "a")
    # The first frame is there (libavformat's H.264 parser gives it no timestamp; it was dropped, and with it
    # everything up to the next keyframe).
    assert video[0][0] <= 0.1, video[:3]
    # The video has its 30 s hole (a frozen picture); the audio is continuous silence through it.
    holes = [b[0] - a[0] for a, b in zip(video, video[1:]) if b[0] - a[0] > 1]
    assert len(holes) == 1 and abs(holes[0] - (GAP[1] - GAP[0])) <= 0.5, holes
    assert max(b[0] - a[1] for a, b in zip(audio, audio[1:])) <= 0.021, "a gap left in the audio"
    assert abs(audio[-1][1] - video[-1][1]) <= 1 / 15, (audio[-1], video[-1])
    assert decode_errors(src) == ""


def test_sigkill_at_60_s_of_90_s_keeps_58_s_and_is_recovered(long_runs):
    rec = long_runs["kill"]
    row = rec.stopped_row
    assert row["state"] == "succeeded" and row["status"] == "processing" and row["attempts"] == 2, row
    assert re.search(r"worker stopped at \d+\.\d s and another one continued", row["detail"] or ""), row
    first = media_span(rec.folder / "parts" / "part-0001.mkv")
    assert first >= KILL_AT - 2, first
    duration, codecs = ffprobe_duration(rec.folder / "source.mkv")
    assert codecs == ["h264", "opus"], codecs
    # What came after the retry bound the ports again is joined after the first part.
    assert first + (KILL_S - rec.killed_after) - 8 <= duration <= KILL_S + 0.5, (first, rec.killed_after, duration)
    assert decode_errors(rec.folder / "source.mkv") == ""
