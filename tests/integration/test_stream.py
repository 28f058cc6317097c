"""Streaming endpoints (fcgi/stream.c) through every frontend: the master playlist answers a reader (Bearer)
with every URI carrying a signed ?token=, and from there the media playlists and segments open without the
header (behind nginx the segment URIs are links nginx checks and answers itself, test_segment_links.py; Apache
and mod_fcgid get ?token= URIs and the segments streamed by vtp-api, with Range and ETag). Playlists pass a strict HLS parser; ffmpeg reads the master URL as served. A token never opens
another recording; a tampered or expired one gets 403; names outside the HLS folder's pattern get 404."""

import hashlib
import hmac
import re
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

from helpers import API, Client, assert_json, assert_problem, make_token, unique
from test_import import FFMPEG, upload
from test_transcode import H264, hls_check, make, transcode


@pytest.fixture(scope="module")
def owner(stack):
    sub = unique("inst")
    return sub, make_token(stack, sub, "instructor")


@pytest.fixture(scope="module")
def recordings(stack, owner, tmp_path_factory):
    """Two transcoded recordings (fMP4 and MPEG-TS segments) of one owner."""
    import psycopg2
    conn = psycopg2.connect(stack.database_url)
    conn.autocommit = True
    d = tmp_path_factory.mktemp("stream-media")
    try:
        a, row = transcode(stack, conn, owner[1], make(d / "a.mp4", "640x360", args=H264), "video/mp4")
        assert row["state"] == "succeeded", row
        b, row = transcode(stack, conn, owner[1], make(d / "b.mp4", "640x360", args=H264), "video/mp4",
                           VTP_HLS_SEGMENT_TYPE="mpegts")
        assert row["state"] == "succeeded", row
    finally:
        conn.close()
    return a, b


def master(base, token, rid):
    r = Client(base, token).get(f"{API}/recordings/{rid}/stream/playlist.m3u8")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/vnd.apple.mpegurl", r.headers
    assert "no-store" in r.headers.get("Cache-Control", ""), r.headers
    return r


def uris(text):
    out = [l for l in text.splitlines() if l and not l.startswith("#")]
    out += re.findall(r'URI="([^"]+)"', text)
    return out


def sign(stack, rid, expires, scope="stream"):
    """A token as lib/url_token.c makes it, with the stack's JWT_SECRET-derived key."""
    key = hmac.new(stack.jwt_secret.encode(), b"vtp url token key v1 from jwt_secret", hashlib.sha256).digest()
    mac = hmac.new(key, f"v1\n{rid}\n{scope}\n{expires}".encode(), hashlib.sha256).digest()
    import base64
    return f"{expires}." + base64.urlsafe_b64encode(mac).decode().rstrip("=")


@pytest.mark.parametrize("which", [0, 1])
def test_every_uri_works_without_the_header(stack, owner, recordings, tmp_path, which):
    rid = recordings[which]
    folder = Path(stack.storage_path) / rid / "hls"
    for name, base in stack.frontends.items():
        url = f"{base}{API}/recordings/{rid}/stream/playlist.m3u8"
        text = master(base, owner[1], rid).text
        (tmp_path / "master.m3u8").write_text(text)
        hls_check(tmp_path / "master.m3u8")
        [media_uri] = uris(text)
        assert re.fullmatch(r"360p/index\.m3u8\?token=\d+\.[A-Za-z0-9_-]{43}", media_uri), media_uri
        media_url = urllib.parse.urljoin(url, media_uri)
        r = requests.get(media_url, timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/vnd.apple.mpegurl", (name, r.text)
        (tmp_path / "index.m3u8").write_text(r.text)
        hls_check(tmp_path / "index.m3u8")
        seg_uris = uris(r.text)
        form = r"\?md5=[A-Za-z0-9_-]{22}&expires=\d+" if name == "nginx" else r"\?token=\d+\.[A-Za-z0-9_-]{43}"
        assert seg_uris and all(re.fullmatch(r"(init\.mp4|seg_\d{5}\.(m4s|ts))" + form, u) for u in seg_uris), r.text
        for u in seg_uris:
            seg = requests.get(urllib.parse.urljoin(media_url, u), timeout=10)
            file = folder / "360p" / u.split("?")[0]
            assert seg.status_code == 200, (name, u, seg.status_code, seg.text[:200])
            assert seg.content == file.read_bytes(), (name, u)
            assert seg.headers["Content-Type"] == ("video/mp2t" if u.split("?")[0].endswith(".ts") else "video/mp4")
            assert seg.headers["Cache-Control"] == "private, max-age=3600", (name, seg.headers)
            st = file.stat()
            assert seg.headers["ETag"] == f'"{int(st.st_mtime):x}-{st.st_size:x}"', (name, seg.headers)
        # Range and ETag on a segment.
        u = urllib.parse.urljoin(media_url, seg_uris[-1])
        part = requests.get(u, headers={"Range": "bytes=0-99"}, timeout=10)
        assert part.status_code == 206 and len(part.content) == 100, (name, part.status_code)
        etag = requests.get(u, timeout=10).headers["ETag"]
        assert requests.get(u, headers={"If-None-Match": etag}, timeout=10).status_code == 304, name
        # ffmpeg reads the master URL as served (the header only for the master: ffmpeg sends it on).
        proc = subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-headers",
                               f"Authorization: Bearer {owner[1]}\r\n", "-i", url, "-map", "0", "-c", "copy",
                               "-f", "null", "-"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, (name, proc.stderr)
        # And through the token URLs alone: the media playlist.
        proc = subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-i", media_url, "-map", "0",
                               "-c", "copy", "-f", "null", "-"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, (name, proc.stderr)


def test_tokens_are_tied_to_recording_and_time(stack, owner, recordings):
    a, b = recordings
    base = stack.frontends["nginx"]
    token_a = re.search(r"token=([^\s\"]+)", master(base, owner[1], a).text).group(1)
    c = Client(base)
    for path in ("360p/index.m3u8", "360p/seg_00000.ts", "360p/seg_00000.m4s", "360p/init.mp4"):
        assert_problem(c.get(f"{API}/recordings/{b}/stream/{path}?token={token_a}", tok=None), 403,
                       "url_token_invalid")
    assert_problem(c.get(f"{API}/recordings/{a}/stream/360p/index.m3u8", tok=None), 401, "unauthorized")
    # With a Bearer token instead (no ?token=): a reader gets the playlist with signed URIs.
    r = Client(base, owner[1]).get(f"{API}/recordings/{a}/stream/360p/index.m3u8")
    assert r.status_code == 200 and "?md5=" in r.text, r.text  # nginx: links it checks itself
    stranger = Client(base, make_token(stack, unique("stud"), "student"))
    assert_problem(stranger.get(f"{API}/recordings/{a}/stream/360p/index.m3u8"), 404, "recording_not_found")
    tampered = token_a[:-1] + ("A" if token_a[-1] != "A" else "B")
    assert_problem(c.get(f"{API}/recordings/{a}/stream/360p/index.m3u8?token={tampered}", tok=None), 403,
                   "url_token_invalid")
    expired = sign(stack, a, int(time.time()) - 5)
    assert_problem(c.get(f"{API}/recordings/{a}/stream/360p/index.m3u8?token={expired}", tok=None), 403,
                   "url_token_expired")
    valid = sign(stack, a, int(time.time()) + 60)
    assert c.get(f"{API}/recordings/{a}/stream/360p/index.m3u8?token={valid}", tok=None).status_code == 200
    assert_problem(c.get(f"{API}/recordings/{a}/stream/360p/index.m3u8?token={sign(stack, a, 2000000000, 'download:mp4')}",
                         tok=None), 403, "url_token_invalid")
    for bad in ("360p/seg_1.m4s", "360p/seg_00000.mp4", "360p/index.m3u8.bak", "360p/master.m3u8",
                "..%2F..%2Fsource.mp4", "360p/..%2Fmaster.m3u8", ".hidden/seg_00000.m4s", "360p/seg_99999.m4s"):
        r = c.get(f"{API}/recordings/{a}/stream/{bad}?token={token_a}", tok=None)
        assert r.status_code in (400, 404), (bad, r.status_code, r.text[:200])


def test_master_needs_read_access_and_a_ladder(stack, owner, recordings):
    base = stack.frontends["nginx"]
    stranger = Client(base, make_token(stack, unique("stud"), "student"))
    assert_problem(stranger.get(f"{API}/recordings/{recordings[0]}/stream/playlist.m3u8"), 404, "recording_not_found")
    assert_problem(Client(base).get(f"{API}/recordings/{recordings[0]}/stream/playlist.m3u8", tok=None), 401)
    rid = assert_json(upload(Client(base, owner[1]), b"\0" * 1000, "video/mp4"), 201)["id"]
    assert_problem(Client(base, owner[1]).get(f"{API}/recordings/{rid}/stream/playlist.m3u8"), 409, "stream_not_ready")
