"""Segment links that nginx checks itself (deploy/nginx-vtp.conf.in's segment location; lib/url_token.h
url_link_query): behind nginx, the media playlists give every segment and init.mp4 URI
`?md5=<base64url MD5 of expires, path, " ", secret>&expires=<the playlist token's expiry>`, and nginx answers
them from the file, with the same headers and the same problem bodies as vtp-api's ?token= path. A link opens
exactly one file: not another recording's, rendition's or segment's, not after its expiry, nothing outside the
pattern of segment names. Apache gets the same playlists with ?token= URIs. A deleted recording's segments stay
reachable by link until its purge removes them (then 404). Recordings here are laid out by hand (no transcode)."""

import base64
import hashlib
import os
import re
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

from helpers import API, Client, assert_json, assert_problem, make_token, raw_request, unique
from test_import import upload
from test_probe import only_job, run_job
from test_stream import sign

MEDIA = ("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:6\n#EXT-X-PLAYLIST-TYPE:VOD\n"
         "#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:6.0,\nseg_00000.m4s\n#EXTINF:6.0,\nseg_00001.m4s\n#EXT-X-ENDLIST\n")
LINK_RE = re.compile(r"(init\.mp4|seg_\d{5}\.m4s)\?md5=([A-Za-z0-9_-]{22})&expires=(\d+)")


def link(stack, path, expires, secret=None):
    """A link as nginx's secure_link_md5 "$secure_link_expires$uri <secret>" accepts it."""
    text = f"{expires}{path} {secret if secret is not None else stack.segment_link_secret}"
    md5 = base64.urlsafe_b64encode(hashlib.md5(text.encode()).digest()).decode().rstrip("=")
    return f"{path}?md5={md5}&expires={expires}"


def lay_out(stack, owner):
    """A recording (an upload nobody probes) with hls/360p and hls/720p folders written here, and a file outside
    them. Returns its id."""
    rid = assert_json(upload(owner, b"\0" * 1000, "video/mp4"), 201)["id"]
    top = Path(stack.storage_path) / rid
    for rend in ("360p", "720p"):
        d = top / "hls" / rend
        d.mkdir(parents=True, exist_ok=True)
        (d / "index.m3u8").write_text(MEDIA)
        (d / "init.mp4").write_bytes(f"init of {rid} {rend}".encode())
        for i in range(2):
            (d / f"seg_{i:05d}.m4s").write_bytes(f"segment {i} of {rid} {rend} ".encode() * 100)
    (top / "secret.m4s").write_bytes(b"SECRET " + rid.encode())
    for p in (top / "hls" / "360p", top / "hls" / "720p", top / "hls"):
        os.chmod(p, 0o755)
    return rid


@pytest.fixture(scope="module")
def owner(stack):
    return Client(stack.frontends["nginx"], make_token(stack, unique("inst"), "instructor"))


@pytest.fixture(scope="module")
def two(stack, owner):
    return lay_out(stack, owner), lay_out(stack, owner)


def seg_path(rid, rend="360p", name="seg_00000.m4s"):
    return f"{API}/recordings/{rid}/stream/{rend}/{name}"


def unsigned(text):
    """A playlist without the query of its URIs."""
    return re.sub(r"\?[^\s\"]+", "", text)


def links_of(text):
    return [l for l in text.splitlines() if l and not l.startswith("#")] + re.findall(r'URI="([^"]+)"', text)


def test_playlist_links_open_their_files_with_the_api_headers(stack, owner, two):
    rid = two[0]
    base = stack.frontends["nginx"]
    folder = Path(stack.storage_path) / rid / "hls" / "360p"
    # A media playlist asked with the Bearer header: links for a fresh hour, like its ?token= would be.
    before = int(time.time())
    r = owner.get(f"{API}/recordings/{rid}/stream/360p/index.m3u8")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/vnd.apple.mpegurl", r.text
    assert stack.segment_link_secret not in r.text
    uris = links_of(r.text)
    assert len(uris) == 3 and all(LINK_RE.fullmatch(u) for u in uris), r.text
    expires = {int(LINK_RE.fullmatch(u).group(3)) for u in uris}
    assert len(expires) == 1 and before + 3600 <= expires.pop() <= int(time.time()) + 3600, uris
    # A media playlist asked with a ?token=: the links expire with it. Each is the documented MD5.
    tok_expiry = int(time.time()) + 600
    r = Client(base).get(f"{API}/recordings/{rid}/stream/360p/index.m3u8?token={sign(stack, rid, tok_expiry)}")
    assert r.status_code == 200, r.text
    uris = links_of(r.text)
    assert all(LINK_RE.fullmatch(u).group(3) == str(tok_expiry) for u in uris), uris
    for u in uris:
        name = u.split("?")[0]
        assert f"{API}/recordings/{rid}/stream/360p/{u}" == link(stack, seg_path(rid, name=name), tok_expiry), u
        url = urllib.parse.urljoin(r.url, u)
        got = requests.get(url, timeout=10)
        file = folder / name
        assert got.status_code == 200 and got.content == file.read_bytes(), (u, got.status_code, got.text[:200])
        assert got.headers["Content-Type"] == "video/mp4", got.headers
        assert got.headers["Cache-Control"] == "private, max-age=3600", got.headers
        assert got.headers["X-Content-Type-Options"] == "nosniff", got.headers
        st = file.stat()
        assert got.headers["ETag"] == f'"{int(st.st_mtime):x}-{st.st_size:x}"', got.headers
        # Range, and If-None-Match, as vtp-api answers them.
        part = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=10)
        assert part.status_code == 206 and part.content == file.read_bytes()[10:20], part.status_code
        assert part.headers["Content-Range"] == f"bytes 10-19/{st.st_size}", part.headers
        beyond = requests.get(url, headers={"Range": f"bytes={st.st_size}-"}, timeout=10)
        assert_problem(beyond, 416, "range_not_satisfiable")
        assert beyond.headers["Content-Range"] == f"bytes */{st.st_size}", beyond.headers
        same = requests.get(url, headers={"If-None-Match": got.headers["ETag"]}, timeout=10)
        assert same.status_code == 304 and same.content == b"", same.status_code
        assert requests.head(url, timeout=10).headers["Content-Length"] == str(st.st_size)
    # The ?token= and Bearer forms still go to vtp-api, which answers as before.
    tok = sign(stack, rid, tok_expiry)
    for via in (requests.get(f"{base}{seg_path(rid)}?token={tok}", timeout=10), owner.get(seg_path(rid))):
        assert via.status_code == 200 and via.content == (folder / "seg_00000.m4s").read_bytes(), via.status_code
        assert via.headers["ETag"] == requests.get(f"{base}{link(stack, seg_path(rid), tok_expiry)}").headers["ETag"]


@pytest.mark.parametrize("frontend", ["apache_proxy", "apache_fcgid"])
def test_apache_gets_the_same_playlists_with_tokens(stack, owner, two, frontend):
    rid = two[0]
    c = Client(stack.frontends[frontend], owner.tok)
    r = c.get(f"{API}/recordings/{rid}/stream/360p/index.m3u8")
    assert r.status_code == 200, r.text
    uris = links_of(r.text)
    assert len(uris) == 3 and all(re.fullmatch(r"[a-z_0-9]+\.(mp4|m4s)\?token=\d+\.[A-Za-z0-9_-]{43}", u)
                                  for u in uris), r.text
    nginx_text = owner.get(f"{API}/recordings/{rid}/stream/360p/index.m3u8").text
    assert unsigned(r.text) == unsigned(nginx_text) == MEDIA, (r.text, nginx_text)
    for u in uris:
        got = requests.get(urllib.parse.urljoin(r.url, u), timeout=10)
        file = Path(stack.storage_path) / rid / "hls" / "360p" / u.split("?")[0]
        assert got.status_code == 200 and got.content == file.read_bytes(), (u, got.status_code)
        # nginx's link means nothing to Apache: to vtp-api it is a request without a token.
        name = u.split("?")[0]
        nginx_link = link(stack, seg_path(rid, name=name), int(time.time()) + 60)
        assert_problem(Client(stack.frontends[frontend]).get(nginx_link, tok=None), 401, "unauthorized")


def api_problem(stack, path, query):
    """vtp-api's own answer (through nginx without md5, so by FastCGI) for comparison."""
    return requests.get(f"{stack.frontends['nginx']}{path}?{query}", timeout=10)


def assert_same_problem(r, api, status, code):
    assert_problem(r, status, code)
    assert_problem(api, status, code)
    assert r.json() == api.json(), (r.text, api.text)
    assert r.headers["Cache-Control"] == api.headers["Cache-Control"] == "no-store", (r.headers, api.headers)
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_a_link_opens_one_file_until_it_expires(stack, two):
    a, b = two
    base = stack.frontends["nginx"]
    later = int(time.time()) + 600
    good = link(stack, seg_path(a), later)
    assert requests.get(base + good, timeout=10).status_code == 200
    path, query = good.split("?")
    md5 = re.search(r"md5=([^&]+)", query).group(1)
    invalid_api = api_problem(stack, seg_path(a), f"token={sign(stack, b, later)}")
    # The first character: the last one's low four bits carry nothing (22 characters for 16 bytes), and nginx
    # compares the decoded bytes.
    tampered = ("A" if md5[0] != "A" else "B") + md5[1:]
    refused = [
        f"{path}?md5={tampered}&expires={later}",                          # md5 altered
        f"{path}?md5={md5}&expires={later + 1}",                           # expiry moved
        f"{seg_path(b)}?{query}",                                          # another recording
        f"{seg_path(a, rend='720p')}?{query}",                             # another rendition
        f"{seg_path(a, name='seg_00001.m4s')}?{query}",                    # another segment
        f"{seg_path(a, name='init.mp4')}?{query}",
        link(stack, seg_path(a), later, secret="another secret of sixty-four characters, not the stack's one.."),
        f"{path}?md5={md5}",                                               # no expiry
        f"{path}?md5={md5}&expires=",
        f"{path}?md5={md5}&expires=x{later}",
        f"{path}?md5={md5}AA&expires={later}",                             # too long
        f"{path}?md5=%00&expires={later}",
        f"{path}?md5={tampered}&md5={md5}&expires={later}",                # nginx reads the first md5
    ]
    for target in refused:
        r = raw_request(base, "GET", target)
        assert_same_problem(r, invalid_api, 403, "url_token_invalid")
    # Well signed but past its expiry: the API's "expired", and only for a link that is otherwise right.
    past = int(time.time()) - 5
    expired_api = api_problem(stack, seg_path(a), f"token={sign(stack, a, past)}")
    assert_same_problem(requests.get(base + link(stack, seg_path(a), past), timeout=10), expired_api, 403,
                        "url_token_expired")
    old = link(stack, seg_path(a), past).split("?")[1]
    assert_same_problem(requests.get(f"{base}{seg_path(b)}?{old}", timeout=10), invalid_api, 403,
                        "url_token_invalid")
    # A link for a missing segment of the right pattern: the API's 404.
    missing = seg_path(a, name="seg_00042.m4s")
    assert_same_problem(requests.get(base + link(stack, missing, later), timeout=10),
                        api_problem(stack, missing, f"token={sign(stack, a, later)}"), 404, "segment_not_found")


def test_links_never_leave_the_rendition_folder(stack, two):
    """Even a link signed with the real secret over the very path asked opens nothing outside the pattern."""
    a, b = two
    base = stack.frontends["nginx"]
    later = int(time.time()) + 600
    stream = f"{API}/recordings/{a}/stream"
    attempts = [
        "..%2Fsecret.m4s", "360p/..%2F..%2Fsecret.m4s", "360p/%2e%2e%2f%2e%2e%2fsecret.m4s", "%2e%2e/secret.m4s",
        f"360p/..%2F..%2F..%2F{b}%2Fhls%2F360p%2Fseg_00000.m4s", "360p/seg_00000.m4s%00.txt", "360p%2Fseg_00000.m4s",
        "360p/seg_00000.m4s%2F..%2F..%2F..%2Fsecret.m4s", "360p/%2E%2E%5C%2E%2E%5Csecret.m4s", "360p%00/seg_00000.m4s",
        "360p/seg_00000.m4s;/../../secret.m4s", "360p/" + "a" * 5000 + ".m4s", "360p/seg_00000.m4s%20",
        "%C0%AE%C0%AE/secret.m4s", "360p/seg_0000.m4s", "360p/seg_000000.m4s", "360p/seg_00000.mp4",
        "360p/index.m3u8", "360p/init.m4s", "-x/seg_00000.m4s", "a23456789012345x/seg_00000.m4s", "hls/secret.m4s",
        "../secret.m4s", "360p/../../secret.m4s",
    ]
    # The one file any of these may open is the one its decoded path names (nginx decodes %2F as the player's
    # library would have sent "/"): a's 360p/seg_00000.m4s.
    allowed = (Path(stack.storage_path) / a / "hls" / "360p" / "seg_00000.m4s").read_bytes()
    for bad in attempts:
        raw = f"{stream}/{bad}"
        for signed in {raw, urllib.parse.unquote(raw), os.path.normpath(urllib.parse.unquote(raw)),
                       f"{API}/recordings/{a}/secret.m4s"}:
            md5 = link(stack, signed, later).split("?")[1]
            r = raw_request(base, "GET", f"{raw}?{md5}")
            assert 400 <= r.status_code < 500 or (r.status_code == 200 and r.content == allowed), \
                (bad, signed, r.status_code, r.content[:200])
            assert b"SECRET" not in r.content and b.encode() not in r.content, (bad, r.content[:200])
    # Upper-case ids and names outside the pattern are vtp-api's to refuse (it knows no md5): never a file.
    for target in (seg_path(a.upper()), seg_path(a, name="SEG_00000.M4S")):
        r = raw_request(base, "GET", link(stack, target, later))
        assert 400 <= r.status_code < 500 and b"segment " not in r.content, (target, r.status_code)


def test_deleted_recording_links_work_until_the_purge(stack, db, owner):
    rid = lay_out(stack, owner)
    base = stack.frontends["nginx"]
    later = int(time.time()) + 600
    good = base + link(stack, seg_path(rid), later)
    assert requests.get(good, timeout=10).status_code == 200
    assert owner.delete(f"{API}/recordings/{rid}").status_code == 204
    # vtp-api refuses the deleted recording at once (?token=, Bearer); nginx's link, which asks no database,
    # opens the file until the purge removes it (docs/ADMIN.md).
    assert_problem(requests.get(f"{base}{seg_path(rid)}?token={sign(stack, rid, later)}", timeout=10), 404,
                   "recording_not_found")
    assert requests.get(good, timeout=10).status_code == 200
    row = run_job(stack, db, only_job(db, rid, "purge"), lambda r: r["state"] != "queued")
    assert row["state"] == "succeeded", row
    assert not (Path(stack.storage_path) / rid).exists()
    r = requests.get(good, timeout=10)
    assert_problem(r, 404, "segment_not_found")
    assert b"segment " not in r.content
