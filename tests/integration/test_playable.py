"""Fast to playable (worker/playable.c, sql/008_playable.sql): after the probe, the playable job writes one
quick rendition into hls/quick/ (the source's H.264/AAC remuxed, else the lowest rung encoded) and publishes
the master playlist and the recording's renditions as soon as its first segment exists, while it writes the
rest (an EVENT playlist, ENDLIST at the end). The ladder (transcode) is queued only after it, and replaces the
quick rendition in the master. Timing is the benchmark's business (bench/playable_bench.py); here the order:
the master is served and playable while the ladder job is still queued, and every playlist a player can
see on the way passes a strict HLS parser."""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from helpers import API, Client, assert_json, make_token, unique
from test_import import upload
from test_probe import job_row, only_job, recording_status, run_worker
from test_transcode import FFPROBE, H264, LADDER, ROOT, SEG_S, hls_check, make, variants


@pytest.fixture(scope="module")
def owner(stack):
    sub = unique("inst")
    return sub, make_token(stack, sub, "instructor")


def probed(stack, db, token, path, content_type):
    """Imports path and runs its probe; returns the recording id."""
    c = Client(stack.frontends["nginx"], token)
    rid = assert_json(upload(c, Path(path).read_bytes(), content_type), 201)["id"]
    probe = only_job(db, rid, "probe")
    run_worker(stack, "--once", "--queues", "light")
    assert job_row(db, probe)["state"] == "succeeded", job_row(db, probe)
    return rid


def queued_kinds(db, rid):
    with db.cursor() as cur:
        cur.execute("SELECT kind, state FROM jobs WHERE recording_id = %s ORDER BY id", (rid,))
        return cur.fetchall()


def master_text(stack, token, rid):
    """The master playlist as the API serves it through nginx (None while the API answers 409)."""
    r = Client(stack.frontends["nginx"], token).get(f"{API}/recordings/{rid}/stream/playlist.m3u8")
    if r.status_code == 409:
        return None
    assert r.status_code == 200, r.text
    return r.text


def ffprobe_url(url):
    proc = subprocess.run([FFPROBE, "-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "json",
                           url], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["streams"]


def test_h264_source_is_remuxed_and_playable_before_the_ladder(stack, db, owner, tmp_path):
    # Baseline profile and a key frame every second: a copy keeps both, our encoder would make High.
    src = make(tmp_path / "a.mp4", "640x360", seconds=6,
               args=[*H264, "-profile:v", "baseline", "-g", "30", "-movflags", "+faststart"])
    rid = probed(stack, db, owner[1], src, "video/mp4")
    assert master_text(stack, owner[1], rid) is None  # 409 until a rendition is published
    playable = only_job(db, rid, "playable")
    run_worker(stack, "--once", "--queues", "light", VTP_HLS_SEGMENT_S=str(SEG_S))
    assert job_row(db, playable)["state"] == "succeeded", job_row(db, playable)
    # The ladder is queued behind it, not run.
    assert ("transcode", "queued") in queued_kinds(db, rid), queued_kinds(db, rid)

    hls = Path(stack.storage_path) / rid / "hls"
    assert sorted(p.name for p in hls.iterdir()) == ["master.m3u8", "quick"], list(hls.iterdir())
    [(attrs, uri)] = variants(hls)
    assert uri == "quick/index.m3u8"
    assert attrs["RESOLUTION"] == "640x360", attrs
    assert re.fullmatch(r"avc1\.42[0-9a-f]{4},mp4a\.40\.2", attrs["CODECS"]), attrs  # the source's own H.264
    assert int(attrs["BANDWIDTH"]) >= int(attrs["AVERAGE-BANDWIDTH"]) > 0, attrs
    media = (hls / "quick/index.m3u8").read_text()
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in media and media.rstrip().endswith("#EXT-X-ENDLIST"), media
    assert len(re.findall(r"^seg_\d{5}\.m4s$", media, re.M)) == 3, media  # 6 s cut at the 2 s key frames
    hls_check(hls / "master.m3u8", hls / "quick/index.m3u8")

    # The recording streams from it: stream_url, and ffprobe reads the master URL as served.
    rec = assert_json(Client(stack.frontends["nginx"], owner[1]).get(f"{API}/recordings/{rid}"), 200)
    assert [(r["name"], r["width"], r["height"], r["status"]) for r in rec["renditions"]] == [
        ("quick", 640, 360, "ready")], rec
    assert rec["stream_url"] == f"/api/v1/recordings/{rid}/stream/playlist.m3u8", rec
    share = assert_json(Client(stack.frontends["nginx"], owner[1]).post(f"{API}/recordings/{rid}/shares",
                                                                          {"max_views": 100}), 201)
    url = f"{stack.frontends['nginx']}{rec['stream_url']}?share={share['token']}"
    streams = ffprobe_url(url)
    assert sorted(s["codec_name"] for s in streams) == ["aac", "h264"], streams
    assert play(stack, owner[1], rid, 2.0)["levels"] == ["Auto", "360p"]

    # Then the ladder: its rungs replace the quick rendition in the master (which stays on disk for players
    # that chose it, linked, not copied).
    transcode = only_job(db, rid, "transcode")
    run_worker(stack, "--once", "--queues", "heavy", VTP_HLS_SEGMENT_S=str(SEG_S), VTP_TRANSCODE_PROFILES=LADDER)
    assert job_row(db, transcode)["state"] == "succeeded", job_row(db, transcode)
    assert [u for _, u in variants(hls)] == ["360p/index.m3u8"], variants(hls)
    assert sorted(p.name for p in hls.iterdir()) == ["360p", "master.m3u8", "quick"], list(hls.iterdir())
    assert (hls / "quick/index.m3u8").read_text() == media
    hls_check(hls / "master.m3u8", hls / "360p/index.m3u8")
    rec = assert_json(Client(stack.frontends["nginx"], owner[1]).get(f"{API}/recordings/{rid}"), 200)
    assert [(r["name"], r["status"]) for r in rec["renditions"]] == [("360p", "ready")], rec
    assert rec["status"] == "ready" or ("thumbnail", "queued") in queued_kinds(db, rid), rec
    played = play(stack, owner[1], rid, 2.0)
    assert not [u for u in played["requests"] if u.startswith("quick/")], played

    # A re-run of the ladder (POST .../transcode) no longer carries the quick rendition: no player is sent to it.
    with db.cursor() as cur:
        cur.execute("INSERT INTO jobs (kind, recording_id, priority, payload) SELECT 'transcode', id, 0,"
                    " jsonb_build_object('source_file', source_file) FROM recordings WHERE id = %s RETURNING id", (rid,))
        again = cur.fetchone()[0]
    run_worker(stack, "--once", "--queues", "heavy", VTP_HLS_SEGMENT_S=str(SEG_S))
    assert job_row(db, again)["state"] == "succeeded", job_row(db, again)
    assert sorted(p.name for p in hls.iterdir()) == ["360p", "master.m3u8"], list(hls.iterdir())


def play(stack, token, rid, seconds):
    """The player page (Debian's chromium, hls.js) plays the recording's stream to seconds (tests/browser/quick.mjs)."""
    assert (ROOT / "node_modules" / "playwright-core").is_dir(), "node_modules/playwright-core missing (npm ci)"
    proc = subprocess.run(["node", str(ROOT / "tests/browser/quick.mjs"), stack.frontends["nginx"], token,
                           str(ROOT / "build/browser-artifacts/quick"), rid, str(seconds)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[7:])


def child_pids(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


@pytest.fixture(scope="module")
def vp8_source(tmp_path_factory):
    """60 s of VP8/Opus at 320x180 (cheap to make): long enough for its playable job to be caught while it runs."""
    return make(tmp_path_factory.mktemp("playable-media") / "c.webm", "320x180", seconds=60,
                args=["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k", "-c:a", "libopus"])


def start_and_hold(stack, db, rid, **env):
    """Starts `vtp-worker --once --queues light` on the recording's playable job; once the recording has a
    rendition, stops the job's process (SIGSTOP) and returns (worker, [pids held], renditions)."""
    worker = subprocess.Popen([str(stack.build_dir / "vtp-worker"), "--once", "--queues", "light"],
                              env=dict(stack.env, VTP_HLS_SEGMENT_S=str(SEG_S), VTP_HEARTBEAT_MS="200", **env),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    renditions = None
    deadline = time.time() + 120
    while time.time() < deadline:
        with db.cursor() as cur:
            cur.execute("SELECT renditions FROM recordings WHERE id = %s", (rid,))
            renditions = cur.fetchone()[0]
        if renditions or worker.poll() is not None:
            break
        time.sleep(0.02)
    held = child_pids(worker.pid) if worker.poll() is None else []
    for pid in held:
        os.kill(pid, signal.SIGSTOP)
    return worker, held, renditions


@pytest.mark.parametrize("segment_type", ["fmp4", "mpegts"])
def test_remux_keeps_the_timing_of_a_matroska_source(stack, db, owner, tmp_path, segment_type):
    # Matroska counts in milliseconds, the HLS writer in its own units: copied packets must be rescaled, or the
    # quick rendition plays at the wrong speed (recordings from RTMP/SRT are Matroska).
    src = make(tmp_path / "a.mkv", "320x180", seconds=6, args=[*H264, "-g", "30"])
    rid = probed(stack, db, owner[1], src, "video/x-matroska")
    playable = only_job(db, rid, "playable")
    run_worker(stack, "--once", "--queues", "light", VTP_HLS_SEGMENT_S=str(SEG_S), VTP_HLS_SEGMENT_TYPE=segment_type)
    assert job_row(db, playable)["state"] == "succeeded", job_row(db, playable)
    media = Path(stack.storage_path) / rid / "hls/quick/index.m3u8"
    durations = [float(d) for d in re.findall(r"^#EXTINF:([0-9.]+),", media.read_text(), re.M)]
    assert len(durations) == 3 and abs(sum(durations) - 6.0) < 0.2, media.read_text()
    proc = subprocess.run([FFPROBE, "-v", "error", "-show_entries", "stream=codec_type:stream_tags:format=duration",
                           "-count_packets", "-show_entries", "stream=nb_read_packets", "-of", "json", str(media)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    probe = json.loads(proc.stdout)
    assert abs(float(probe["format"]["duration"]) - 6.0) < 0.2, probe
    video = [s for s in probe["streams"] if s["codec_type"] == "video"]
    assert video and int(video[0]["nb_read_packets"]) == 180, probe  # every frame, once


def test_vp8_source_is_published_while_its_rendition_grows(stack, db, owner, vp8_source, tmp_path):
    # VP8/Opus (what WebRTC records): the lowest rung is encoded, and published after its first segment.
    rid = probed(stack, db, owner[1], vp8_source, "video/webm")
    playable = only_job(db, rid, "playable")
    hls = Path(stack.storage_path) / rid / "hls"
    # Once the recording has a rendition, the job's process is held still to look at what a player sees at
    # that moment (it goes on afterwards).
    worker, paused, renditions = start_and_hold(stack, db, rid)
    try:
        assert renditions and paused, "no rendition published while the job ran"
        row = job_row(db, playable)
        assert row["state"] == "running", row
        assert [(r["name"], r["width"], r["height"], r["status"]) for r in renditions] == [
            ("quick", 320, 180, "processing")], renditions
        assert ("transcode", "queued") not in queued_kinds(db, rid)  # the ladder comes after

        text = master_text(stack, owner[1], rid)
        assert text and "quick/index.m3u8?token=" in text, text
        media = (hls / "quick/index.m3u8").read_text()
        assert "#EXT-X-PLAYLIST-TYPE:EVENT" in media and "#EXT-X-ENDLIST" not in media, media
        names = re.findall(r"^seg_\d{5}\.m4s$", media, re.M)
        assert 1 <= len(names) < 30, media
        assert all((hls / "quick" / n).stat().st_size > 0 for n in ["init.mp4", *names])
        (tmp_path / "master.m3u8").write_text(text)
        hls_check("--growing", tmp_path / "master.m3u8", hls / "quick/index.m3u8")
        # A player can start now: ffprobe reads the master URL as served.
        share = assert_json(Client(stack.frontends["nginx"], owner[1]).post(f"{API}/recordings/{rid}/shares",
                                                                              {"max_views": 100}), 201)
        url = f"{stack.frontends['nginx']}{API}/recordings/{rid}/stream/playlist.m3u8?share={share['token']}"
        streams = ffprobe_url(url)
        assert sorted(s["codec_name"] for s in streams) == ["aac", "h264"], streams
        # And hls.js plays it in the browser, through the API's own URLs.
        play(stack, owner[1], rid, 1.0)
    finally:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
    # Every later version of the playlists parses too, until the job ends with ENDLIST.
    seen = set()
    while worker.poll() is None:
        media = (hls / "quick/index.m3u8").read_text()
        if media not in seen:
            seen.add(media)
            (tmp_path / "media.m3u8").write_text(media)
            hls_check("--growing", hls / "master.m3u8", tmp_path / "media.m3u8")
        time.sleep(0.05)
    worker.wait(timeout=120)
    assert job_row(db, playable)["state"] == "succeeded", job_row(db, playable)
    media = (hls / "quick/index.m3u8").read_text()
    assert media.rstrip().endswith("#EXT-X-ENDLIST") and len(re.findall(r"^seg_", media, re.M)) == 30, media
    hls_check(hls / "master.m3u8", hls / "quick/index.m3u8")
    rec = assert_json(Client(stack.frontends["nginx"], owner[1]).get(f"{API}/recordings/{rid}"), 200)
    assert [(r["name"], r["status"]) for r in rec["renditions"]] == [("quick", "ready")], rec
    assert ("transcode", "queued") in queued_kinds(db, rid)


def test_cancel_after_publication_takes_the_rendition_back(stack, db, owner, vp8_source):
    rid = probed(stack, db, owner[1], vp8_source, "video/webm")
    playable = only_job(db, rid, "playable")
    worker, held, renditions = start_and_hold(stack, db, rid)
    try:
        assert renditions and held, "no rendition published while the job ran"
        admin = Client(stack.frontends["nginx"], make_token(stack, unique("adm"), "admin"))
        assert admin.post(f"/api/v1/jobs/{playable}/cancel").status_code == 202
    finally:
        for pid in held:
            os.kill(pid, signal.SIGCONT)
    worker.wait(timeout=60)
    assert job_row(db, playable)["state"] == "cancelled", job_row(db, playable)
    assert not (Path(stack.storage_path) / rid / "hls").exists()
    rec = assert_json(Client(stack.frontends["nginx"], owner[1]).get(f"{API}/recordings/{rid}"), 200)
    assert rec["status"] == "failed" and rec["stream_url"] is None and rec["renditions"] == [], rec


def test_truncated_source_fails_readably_and_publishes_nothing(stack, db, owner, tmp_path):
    src = make(tmp_path / "t.mp4", "640x360", seconds=5, args=H264)
    data = src.read_bytes()
    c = Client(stack.frontends["nginx"], owner[1])
    rid = assert_json(upload(c, data[: len(data) // 3], "video/mp4"), 201)["id"]  # the moov (at the end) is cut away
    with db.cursor() as cur:  # skip the probe (it would fail first): the playable job meets the file itself
        cur.execute("UPDATE jobs SET state = 'cancelled', finished_at = now() WHERE recording_id = %s"
                    " AND state = 'queued'", (rid,))
        cur.execute("INSERT INTO jobs (kind, recording_id, priority, max_attempts, payload)"
                    " SELECT 'playable', id, 0, 1, jsonb_build_object('source_file', source_file)"
                    " FROM recordings WHERE id = %s RETURNING id", (rid,))
        job = cur.fetchone()[0]
        cur.execute("UPDATE recordings SET status = 'processing' WHERE id = %s", (rid,))
    run_worker(stack, "--once", "--queues", "light")
    row = job_row(db, job)
    assert row["state"] == "failed", row
    assert "is not a media file that can be read" in row["last_error"], row
    assert "/" not in row["last_error"].split(":")[0], row  # no file path
    assert not (Path(stack.storage_path) / rid / "hls").exists()
    with db.cursor() as cur:
        cur.execute("SELECT status, status_detail FROM recordings WHERE id = %s", (rid,))
        status, detail = cur.fetchone()
    assert status == "failed" and detail.startswith("playable failed: "), (status, detail)
    rec = assert_json(c.get(f"{API}/recordings/{rid}"), 200)
    assert rec["stream_url"] is None and rec["renditions"] == [], rec
    assert ("transcode", "queued") not in queued_kinds(db, rid)


def test_an_attempt_that_ends_takes_the_rendition_back_until_the_retry(stack, db, owner, vp8_source):
    # The worker shuts down while the playable job runs (its files are removed, the job is queued again): until
    # the next attempt publishes anew, the recording answers no stream_url, and its master a clean 409.
    rid = probed(stack, db, owner[1], vp8_source, "video/webm")
    playable = only_job(db, rid, "playable")
    worker, held, renditions = start_and_hold(stack, db, rid, VTP_SHUTDOWN_GRACE_S="0")
    try:
        assert renditions and held, "no rendition published while the job ran"
        worker.send_signal(signal.SIGTERM)
    finally:
        for pid in held:
            os.kill(pid, signal.SIGCONT)
    worker.wait(timeout=60)
    row = job_row(db, playable)
    assert row["state"] == "queued", row
    assert not (Path(stack.storage_path) / rid / "hls" / "master.m3u8").exists()
    c = Client(stack.frontends["nginx"], owner[1])
    rec = assert_json(c.get(f"{API}/recordings/{rid}"), 200)
    assert rec["stream_url"] is None and rec["renditions"] == [], rec
    r = c.get(f"{API}/recordings/{rid}/stream/playlist.m3u8")
    assert r.status_code == 409 and r.headers["Content-Type"].startswith("application/problem+json"), r.text
    # The retry publishes it again.
    with db.cursor() as cur:
        cur.execute("UPDATE jobs SET run_at = now() WHERE id = %s", (playable,))
    run_worker(stack, "--once", "--queues", "light", VTP_HLS_SEGMENT_S=str(SEG_S))
    assert job_row(db, playable)["state"] == "succeeded", job_row(db, playable)
    assert master_text(stack, owner[1], rid) and "quick/index.m3u8?token=" in master_text(stack, owner[1], rid)


def test_a_missing_master_answers_a_problem_not_500(stack, db, owner, tmp_path):
    # Whatever removed the files (the window between a failed attempt's clean-up and its record in the
    # database), the API answers 409 problem+json, never 500.
    src = make(tmp_path / "m.mp4", "320x180", seconds=4, args=[*H264, "-g", "30"])
    rid = probed(stack, db, owner[1], src, "video/mp4")
    only_job(db, rid, "playable")
    run_worker(stack, "--once", "--queues", "light", VTP_HLS_SEGMENT_S=str(SEG_S))
    assert master_text(stack, owner[1], rid)
    (Path(stack.storage_path) / rid / "hls" / "master.m3u8").unlink()
    r = Client(stack.frontends["nginx"], owner[1]).get(f"{API}/recordings/{rid}/stream/playlist.m3u8")
    assert r.status_code == 409 and r.headers["Content-Type"].startswith("application/problem+json"), r.text
    assert r.json()["type"].endswith("stream_not_ready") or "stream_not_ready" in r.text, r.text


def targets(text):
    return [int(v) for v in re.findall(r"^#EXT-X-TARGETDURATION:(\d+)$", text, re.M)]


def test_target_duration_is_fixed_while_the_remuxed_playlist_grows(stack, db, owner, tmp_path):
    # H.264 with irregular key frames (every second, a 4 s gap at 200 s, an 8 s one near the end): the remux cuts
    # at key frames, so its segments are uneven; the EVENT playlist's TARGETDURATION must be the same in every
    # version (RFC 8216 4.3.3.1) and every segment must round to it or less. Long (cheap at 160x90, 10 fps)
    # so that the job can be held while the playlist is short.
    keys = [t for t in range(0, 390) if t not in (200, 201, 202)] + [397]
    src = tmp_path / "irregular.mp4"
    proc = subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         "testsrc2=size=160x90:rate=10:duration=400", "-f", "lavfi", "-i", "sine=sample_rate=22050:duration=400",
         *H264, "-b:a", "32k", "-g", "100000", "-sc_threshold", "0", "-force_key_frames",
         ",".join(str(k) for k in keys), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rid = probed(stack, db, owner[1], src, "video/mp4")
    playable = only_job(db, rid, "playable")
    hls = Path(stack.storage_path) / rid / "hls"
    worker, held, renditions = start_and_hold(stack, db, rid)
    versions = []
    try:
        assert renditions and held, "no rendition published while the job ran"
        versions.append((hls / "quick/index.m3u8").read_text())
    finally:
        for pid in held:
            os.kill(pid, signal.SIGCONT)
    while worker.poll() is None:
        text = (hls / "quick/index.m3u8").read_text()
        if text != versions[-1]:
            versions.append(text)
    worker.wait(timeout=120)
    assert job_row(db, playable)["state"] == "succeeded", job_row(db, playable)
    versions.append((hls / "quick/index.m3u8").read_text())
    assert "#EXT-X-ENDLIST" not in versions[0] and versions[-1].rstrip().endswith("#EXT-X-ENDLIST")
    assert len(re.findall(r"^#EXTINF:", versions[0], re.M)) < 190, versions[0]  # held before the gaps
    found = {tuple(targets(v)) for v in versions}
    assert len(found) == 1 and len(next(iter(found))) == 1, found
    target = targets(versions[-1])[0]
    durations = [float(d) for d in re.findall(r"^#EXTINF:([0-9.]+),", versions[-1], re.M)]
    assert max(round(d) for d in durations) <= target, (target, durations)
    # The segment from 388 s to the key frame at 397 s (none at the 390 s boundary): the source was remuxed, not
    # encoded, and the target announced from the start is that longest one, no more.
    assert max(durations) > 8.5, durations
    assert target == max(round(d) for d in durations) == 9, (target, durations)
    hls_check(hls / "master.m3u8", hls / "quick/index.m3u8")


def test_a_ladder_asked_for_while_the_playable_job_runs_waits_for_it(stack, db, owner, vp8_source):
    # POST .../transcode while the quick rendition grows: the ladder is held until the playable job is over
    # (both write hls/), then runs with the profiles asked for; the pipeline queues no second one.
    rid = probed(stack, db, owner[1], vp8_source, "video/webm")
    playable = only_job(db, rid, "playable")
    hls = Path(stack.storage_path) / rid / "hls"
    c = Client(stack.frontends["nginx"], owner[1])
    worker, held, renditions = start_and_hold(stack, db, rid)
    try:
        assert renditions and held, "no rendition published while the job ran"
        asked = assert_json(c.post(f"{API}/recordings/{rid}/transcode", {"profiles": ["360p"]}), 202)
        with db.cursor() as cur:
            cur.execute("SELECT state, run_at > now() + interval '1 hour' FROM jobs WHERE kind = 'transcode'"
                        " AND recording_id = %s", (rid,))
            assert cur.fetchall() == [("queued", True)]
    finally:
        for pid in held:
            os.kill(pid, signal.SIGCONT)
    worker.wait(timeout=120)
    assert job_row(db, playable)["state"] == "succeeded", job_row(db, playable)
    with db.cursor() as cur:
        cur.execute("SELECT id, state, run_at <= now(), payload -> 'profiles' FROM jobs WHERE kind = 'transcode'"
                    " AND recording_id = %s", (rid,))
        [(ladder, state, due, profiles)] = cur.fetchall()
    assert (state, due, profiles) == ("queued", True, ["360p"]), (state, due, profiles)
    assert asked["job"]["id"] == ladder, asked
    with db.cursor() as cur:  # the next one the heavy queue runs (other tests leave ladders queued)
        cur.execute("UPDATE jobs SET priority = 0 WHERE id = %s", (ladder,))
    run_worker(stack, "--once", "--queues", "heavy", VTP_HLS_SEGMENT_S=str(SEG_S), VTP_TRANSCODE_PROFILES=LADDER)
    assert job_row(db, ladder)["state"] == "succeeded", job_row(db, ladder)
    assert [u for _, u in variants(hls)] == ["360p/index.m3u8"], variants(hls)
    hls_check(hls / "master.m3u8", hls / "360p/index.m3u8")

    # An admin's retry of the playable job after the ladder (say it had failed, and the ladder was asked for by
    # hand) changes nothing and queues no second ladder.
    with db.cursor() as cur:
        cur.execute("UPDATE jobs SET state = 'failed', last_error = 'failed in a test' WHERE id = %s", (playable,))
    admin = Client(stack.frontends["nginx"], make_token(stack, unique("adm"), "admin"))
    assert admin.post(f"/api/v1/jobs/{playable}/retry").status_code in (200, 202)
    run_worker(stack, "--once", "--queues", "light")
    assert job_row(db, playable)["state"] == "succeeded", job_row(db, playable)
    assert [k for k in queued_kinds(db, rid) if k[0] == "transcode"] == [("transcode", "succeeded")], \
        queued_kinds(db, rid)
    assert [u for _, u in variants(hls)] == ["360p/index.m3u8"], variants(hls)


def test_a_ladder_asked_for_before_the_probe_ends_replaces_the_playable_step(stack, db, owner, tmp_path):
    # POST .../transcode right after the upload: the probe then queues no playable job (both would write hls/
    # at once), and the ladder asked for is the only one.
    src = make(tmp_path / "early.mp4", "320x180", seconds=4, args=[*H264, "-g", "30"])
    c = Client(stack.frontends["nginx"], owner[1])
    rid = assert_json(upload(c, src.read_bytes(), "video/mp4"), 201)["id"]
    asked = assert_json(c.post(f"{API}/recordings/{rid}/transcode", {"profiles": ["360p"]}), 202)
    probe = only_job(db, rid, "probe")
    run_worker(stack, "--once", "--queues", "light")
    assert job_row(db, probe)["state"] == "succeeded", job_row(db, probe)
    kinds = queued_kinds(db, rid)
    assert ("playable", "queued") not in kinds and [k for k in kinds if k[0] == "transcode"] == [
        ("transcode", "queued")], kinds
    with db.cursor() as cur:
        cur.execute("SELECT run_at <= now() FROM jobs WHERE id = %s", (asked["job"]["id"],))
        assert cur.fetchone()[0] is True  # not held: no playable job to wait for


def test_carried_quick_rendition_is_removed_by_the_tidy_job_a_day_later(stack, db, owner, tmp_path):
    # The carried quick/ is as large as the source; it may stay only while stream URLs handed out before the
    # ladder live (at most a day, fcgi/stream.c), then the tidy job removes it (sql/011, worker/tidy.c).
    src = make(tmp_path / "t.mp4", "640x360", seconds=4, args=[*H264, "-g", "30"])
    rid = probed(stack, db, owner[1], src, "video/mp4")
    playable = only_job(db, rid, "playable")
    run_worker(stack, "--once", "--queues", "light", VTP_HLS_SEGMENT_S=str(SEG_S))
    assert job_row(db, playable)["state"] == "succeeded", job_row(db, playable)
    hls = Path(stack.storage_path) / rid / "hls"
    # A player that loaded the master now keeps this media playlist URL (with its token) after the ladder.
    master = master_text(stack, owner[1], rid)
    quick_url = next(line for line in master.splitlines() if line.startswith("quick/index.m3u8?token="))
    quick_url = f"{stack.frontends['nginx']}/api/v1/recordings/{rid}/stream/{quick_url}"

    # A tidy job while the master still plays from quick/ leaves it alone.
    with db.cursor() as cur:
        cur.execute("INSERT INTO jobs (kind, recording_id, priority) VALUES ('tidy', %s, 0) RETURNING id", (rid,))
        early = cur.fetchone()[0]
    run_worker(stack, "--once", "--queues", "light")
    assert job_row(db, early)["state"] == "succeeded", job_row(db, early)
    assert (hls / "quick/index.m3u8").is_file()

    transcode = only_job(db, rid, "transcode")
    run_worker(stack, "--once", "--queues", "heavy", VTP_HLS_SEGMENT_S=str(SEG_S), VTP_TRANSCODE_PROFILES=LADDER)
    assert job_row(db, transcode)["state"] == "succeeded", job_row(db, transcode)
    assert sorted(p.name for p in hls.iterdir()) == ["360p", "master.m3u8", "quick"], list(hls.iterdir())
    with db.cursor() as cur:
        cur.execute("SELECT id, state, extract(epoch FROM run_at - now()) FROM jobs"
                    " WHERE recording_id = %s AND kind = 'tidy' AND id <> %s", (rid, early))
        [(tidy, state, wait_s)] = cur.fetchall()
    assert state == "queued" and 86400 - 120 < wait_s <= 86400, (state, wait_s)
    # Waiting a day for it does not keep the recording from being ready.
    with db.cursor() as cur:
        cur.execute("UPDATE jobs SET state = 'cancelled', finished_at = now() WHERE recording_id = %s"
                    " AND state = 'queued' AND kind <> 'tidy'", (rid,))
        cur.execute("SELECT vtp_pipeline_settle(%s)", (rid,))
    assert recording_status(db, rid)[0] == "ready", recording_status(db, rid)
    r = requests.get(quick_url, timeout=30)
    assert r.status_code == 200 and "#EXTINF" in r.text, r.text  # the player on quick/ plays on

    # A day later (an admin moves run_at, as the SQL recipes in docs/ADMIN.md do):
    with db.cursor() as cur:
        cur.execute("UPDATE jobs SET run_at = now(), priority = 0 WHERE id = %s", (tidy,))
    run_worker(stack, "--once", "--queues", "light")
    assert job_row(db, tidy)["state"] == "succeeded", job_row(db, tidy)
    assert sorted(p.name for p in hls.iterdir()) == ["360p", "master.m3u8"], list(hls.iterdir())
    assert requests.get(quick_url, timeout=30).status_code == 404
    share = assert_json(Client(stack.frontends["nginx"], owner[1]).post(f"{API}/recordings/{rid}/shares", {}), 201)
    streams = ffprobe_url(f"{stack.frontends['nginx']}/api/v1/recordings/{rid}/stream/playlist.m3u8"
                          f"?share={share['token']}")
    assert sorted(s["codec_name"] for s in streams) == ["aac", "h264"], streams

    # Again (an admin's second tidy, or a retry after a crash past the removal): nothing to do, and it succeeds.
    with db.cursor() as cur:
        cur.execute("INSERT INTO jobs (kind, recording_id, priority) VALUES ('tidy', %s, 0) RETURNING id", (rid,))
        again = cur.fetchone()[0]
    run_worker(stack, "--once", "--queues", "light")
    assert job_row(db, again)["state"] == "succeeded", job_row(db, again)
    assert sorted(p.name for p in hls.iterdir()) == ["360p", "master.m3u8"], list(hls.iterdir())
