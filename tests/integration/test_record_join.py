"""The join of a recording's parts when a retry's part starts over: its video continues on the frame grid of
the attempt before it. The parts are made with ffmpeg and laid in the recording's folder before a recorder
starts; the recorder gets no packets, ends after its inactivity limit and joins them."""

import subprocess

from test_record import FFMPEG_LOG, Recording, decode_errors, stream_packets, workers  # noqa: F401
from test_worker import poll

FPS = 15


def encode(path, seconds):
    """`seconds` of 15 fps H.264 (a keyframe every 2 s) and 20 ms Opus frames, as the long tests' sender sends."""
    subprocess.run(["ffmpeg", *FFMPEG_LOG, "-y", "-f", "lavfi", "-i", f"testsrc2=size=160x120:rate={FPS}", "-f",
                    "lavfi", "-i", "sine=sample_rate=48000", "-t", str(seconds), "-c:v", "libx264", "-preset",
                    "ultrafast", "-profile:v", "baseline", "-pix_fmt", "yuv420p", "-g", "30", "-c:a", "libopus",
                    "-b:a", "32k", "-ac", "2", "-frame_duration", "20", "-f", "matroska", str(path)],
                   check=True, capture_output=True, timeout=60)


def first_pts(path, kind):
    """The first packet's time in the file's first `kind` stream ("v" or "a"), in seconds."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", f"{kind}:0", "-read_intervals", "%+#1",
                          "-show_entries", "packet=pts_time", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return round(float(out.split()[0].strip(",")), 3)


def make_part(source, path, audio_at, video_at, seconds):
    """A part as the recorder writes it (its timestamps begin near 2 s, LEAD_US): the first `seconds` of the
    source, its audio from audio_at s and its video from video_at s."""
    shift = {"v": round(video_at * 1000), "a": round(audio_at * 1000)}
    # The Matroska muxer writes an Opus packet its codec delay (6.5 ms, 7 in milliseconds) early.
    shift["a"] -= round(first_pts(source, "a") * 1000)
    subprocess.run(["ffmpeg", *FFMPEG_LOG, "-y", "-t", str(seconds), "-i", str(source), "-map", "0:v", "-map", "0:a",
                    "-c", "copy", "-copyts", "-bsf:v", f"setts=ts=TS-STARTPTS+{shift['v']}", "-bsf:a",
                    f"setts=ts=TS-STARTPTS+{shift['a']}", "-f", "matroska", str(path)],
                   check=True, capture_output=True, timeout=60)
    assert (first_pts(path, "v"), first_pts(path, "a")) == (video_at, audio_at)


def test_a_retry_s_video_continues_on_the_frame_grid_of_the_attempt_before(stack, db, workers, tmp_path):
    # What test_record_long's killed recorder left in one run: the first attempt's video 14 ms after its audio
    # (0.21 of a frame); the retry, whose video was placed by arrival, began with audio and its first keyframe
    # 1.620 s later (24.3 frames). Joined where the first attempt's media ended, the retry's video sat half a
    # frame off the grid, and ffmpeg's decode gave two frames one timestamp every third frame ("non
    # monotonically increasing dts"). Here the keyframe is 1.613 s after the audio: these parts' Opus has a
    # codec delay (the recorder's, from RTP, has none) that moves ffmpeg's zero 7 ms earlier.
    rec = Recording(stack, db, workers, "h264")
    source = tmp_path / "source.mkv"
    encode(source, 4)
    parts = rec.folder / "parts"
    parts.mkdir(parents=True)
    make_part(source, parts / "part-0001.mkv", 2.0, 2.014, 4)
    make_part(source, parts / "part-0002.mkv", 2.0, 3.613, 4)
    rec.start_worker(VTP_RECORD_INACTIVITY_S="2")
    poll("the recorder to join the parts", lambda: rec.row()["state"] == "succeeded", timeout=30)
    row = rec.row()
    assert row["status"] == "processing" and "another one continued" in row["detail"], row
    video = [start for start, _ in stream_packets(rec.folder / "source.mkv", "v")]
    assert len(video) == 2 * 4 * FPS, len(video)
    # Every frame on the first one's grid (Matroska keeps milliseconds: 0.015 of a frame).
    off_grid = [round(t, 3) for t in video if abs((t - video[0]) * FPS - round((t - video[0]) * FPS)) > 0.05]
    assert off_grid == [], off_grid
    # ... moved later by less than a frame: the first attempt's last frame (66 ms), then the retry's 1.613 s.
    assert 0.066 + 1.613 <= video[FPS * 4] - video[FPS * 4 - 1] < 0.066 + 1.613 + 1 / FPS, video[FPS * 4 - 1:][:2]
    assert decode_errors(rec.folder / "source.mkv") == ""
