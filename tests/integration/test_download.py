"""Downloads end to end, through every frontend (nginx hands the file over
with X-Accel-Redirect, Apache gets it streamed by vtp-api):
GET /api/v1/recordings/{id}/download sends the source file as an attachment
named after the title (RFC 6266/8187), honours Range (first byte, last byte,
suffix, beyond the end -> 416, several and overlapping ranges ->
multipart/byteranges) and If-None-Match (304), and logs each download in
recording_access_log. An MP4 rendition that does not exist yet is 404."""

import os
import re
import urllib.parse
from pathlib import Path

import psycopg2
import pytest

from helpers import API, Client, assert_json, assert_problem, make_token, poll, unique
from test_import import upload
from test_thumbnail import make_video

TITLE = "Algebra I – week 3: intro/../x"


@pytest.fixture(scope="module")
def owner(stack):
    sub = unique("inst")
    return sub, make_token(stack, sub, "instructor")


@pytest.fixture(scope="module")
def recording(stack, owner, tmp_path_factory):
    path = make_video(tmp_path_factory.mktemp("download") / "class.mp4", "320x180", 1)
    data = path.read_bytes()
    c = Client(stack.frontends["nginx"], owner[1])
    rec = assert_json(upload(c, data, "video/mp4", title=TITLE), 201)
    return rec["id"], data


def access_rows(stack, rid, action="download"):
    conn = psycopg2.connect(stack.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT user_id, action, rendition, bytes, user_agent, remote_addr IS NOT NULL"
                        " FROM recording_access_log WHERE recording_id = %s AND action = %s ORDER BY id",
                        (rid, action))
            return cur.fetchall()
    finally:
        conn.close()


def get(base, token, rid, headers=None, **params):
    return Client(base, token).get(f"{API}/recordings/{rid}/download", params=params or None,
                                   headers=dict({"User-Agent": "vtp-test"}, **(headers or {})))


def parse_multipart(r, size, data):
    """{(first, last): bytes} of a multipart/byteranges answer, each checked against data."""
    m = re.match(r"multipart/byteranges; ?boundary=(\S+)", r.headers["Content-Type"])
    assert m, r.headers["Content-Type"]
    boundary = m.group(1).strip('"').encode()
    parts = {}
    for chunk in r.content.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, body = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        body = body[:-2] if body.endswith(b"\r\n") else body
        cr = re.search(rb"Content-Range: bytes (\d+)-(\d+)/(\d+)", head, re.I)
        assert cr, head
        first, last, total = map(int, cr.groups())
        assert total == size
        assert body == data[first:last + 1], (first, last)
        parts[(first, last)] = body
    return parts


def test_whole_file_with_name_etag_and_log(stack, owner, recording):
    rid, data = recording
    before = len(access_rows(stack, rid))
    for name, base in stack.frontends.items():
        r = get(base, owner[1], rid)
        assert r.status_code == 200, r.text
        assert r.content == data
        # nginx sent the file itself (X-Accel-Redirect): its static module adds
        # Last-Modified, which vtp-api never sends.
        assert ("Last-Modified" in r.headers) == (name == "nginx"), (name, r.headers)
        assert r.headers["Content-Type"] == "video/mp4"
        cd = r.headers["Content-Disposition"]
        assert cd.startswith('attachment; filename="Algebra I _ week 3 intro .. x.mp4"'), cd
        assert "filename*=UTF-8''" + urllib.parse.quote("Algebra I – week 3 intro .. x.mp4", safe="") in cd, cd
        etag = r.headers["ETag"]
        again = get(base, owner[1], rid, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert get(base, owner[1], rid, rendition="original").content == data
    rows = access_rows(stack, rid)[before:]
    assert len(rows) == 2 * len(stack.frontends), rows  # 304s are not downloads
    for user, action, rendition, nbytes, agent, has_addr in rows:
        assert (user, action, rendition, nbytes, agent, has_addr) == (owner[0], "download", "original", len(data),
                                                                      "vtp-test", True)


def test_single_ranges(stack, owner, recording):
    rid, data = recording
    size = len(data)
    for base in stack.frontends.values():
        for spec, first, last in [("0-0", 0, 0), (f"{size - 1}-{size - 1}", size - 1, size - 1),
                                  ("-100", size - 100, size - 1), (f"{size - 10}-{size + 1000}", size - 10, size - 1),
                                  ("100-", 100, size - 1)]:
            r = get(base, owner[1], rid, headers={"Range": f"bytes={spec}"})
            assert r.status_code == 206, (spec, r.status_code)
            assert r.headers["Content-Range"] == f"bytes {first}-{last}/{size}", spec
            assert r.content == data[first:last + 1], spec


def test_unsatisfiable_range_is_416(stack, owner, recording):
    rid, data = recording
    size = len(data)
    for base in stack.frontends.values():
        for spec in (f"{size}-", f"{size + 5}-{size + 10}"):
            r = get(base, owner[1], rid, headers={"Range": f"bytes={spec}"})
            assert r.status_code == 416, (base, spec, r.status_code)
            assert r.headers.get("Content-Range") == f"bytes */{size}"
        # A malformed range set is refused too (as nginx does); another unit is ignored.
        assert get(base, owner[1], rid, headers={"Range": "bytes=9-3"}).status_code == 416
        r = get(base, owner[1], rid, headers={"Range": "pages=1-2"})
        assert r.status_code == 200 and r.content == data


def test_multiple_and_overlapping_ranges(stack, owner, recording):
    rid, data = recording
    size = len(data)
    for base in stack.frontends.values():
        r = get(base, owner[1], rid, headers={"Range": "bytes=0-9,20-29,-5"})
        assert r.status_code == 206
        parts = parse_multipart(r, size, data)
        assert sorted(parts) == [(0, 9), (20, 29), (size - 5, size - 1)]
        r = get(base, owner[1], rid, headers={"Range": "bytes=0-49,40-59,100-109"})
        assert r.status_code == 206
        parts = parse_multipart(r, size, data)
        covered = set()
        for first, last in parts:
            covered.update(range(first, last + 1))
        assert covered == set(range(0, 60)) | set(range(100, 110)), sorted(parts)


def test_missing_rendition_and_access(stack, owner, recording):
    rid, _ = recording
    c = Client(stack.frontends["nginx"], owner[1])
    assert_problem(c.get(f"{API}/recordings/{rid}/download?rendition=mp4"), 404, "rendition_not_found")
    assert_problem(c.get(f"{API}/recordings/{rid}/download?rendition=720p"), 404, "rendition_not_found")
    assert_problem(c.get(f"{API}/recordings/{rid}/download?rendition=..%2Fx"), 404, "rendition_not_found")
    assert_problem(c.get(f"{API}/recordings/{rid}/download?foo=1"), 400, "invalid_query")
    stranger = Client(stack.frontends["nginx"], make_token(stack, unique("stud"), "student"))
    assert_problem(stranger.get(f"{API}/recordings/{rid}/download"), 404, "recording_not_found")
    assert_problem(Client(stack.frontends["nginx"]).get(f"{API}/recordings/{rid}/download"), 401, "unauthorized")


def download_url(stack, token, rid, **params):
    c = Client(stack.frontends["nginx"], token)
    return c.get(f"{API}/recordings/{rid}/download-url", params=params or None)


def test_signed_url_works_without_bearer(stack, owner, recording):
    rid, data = recording
    body = assert_json(download_url(stack, owner[1], rid, expires_in=600), 200)
    assert body["url"].startswith(f"/api/v1/recordings/{rid}/download?rendition=original&token="), body
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["expires_at"]), body
    before = len(access_rows(stack, rid, "download_url"))
    for base in stack.frontends.values():
        anon = Client(base)
        r = anon.get(body["url"], headers={"User-Agent": "vtp-test"})
        assert r.status_code == 200, r.text
        assert r.content == data
        r = anon.get(body["url"], headers={"Range": "bytes=0-9"})
        assert r.status_code == 206 and r.content == data[:10]
    rows = access_rows(stack, rid, "download_url")[before:]
    assert len(rows) == 2 * len(stack.frontends), rows
    assert {(r[0], r[2]) for r in rows} == {(None, "original")}
    assert sorted(r[3] for r in rows)[:len(stack.frontends)] == [10] * len(stack.frontends)


def test_signed_url_refusals(stack, owner, recording, tmp_path_factory):
    rid, data = recording
    url = assert_json(download_url(stack, owner[1], rid), 200)["url"]
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["token"][0]
    other_path = make_video(tmp_path_factory.mktemp("download-other") / "other.mp4", "320x180", 1)
    other = assert_json(upload(Client(stack.frontends["nginx"], owner[1]), other_path.read_bytes(), "video/mp4"),
                        201)["id"]
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    expiry_tampered = str(int(token.split(".")[0]) + 1000) + "." + token.split(".", 1)[1]
    for base in stack.frontends.values():
        anon = Client(base)
        for path, code in [
            (f"{API}/recordings/{other}/download?rendition=original&token={token}", "url_token_invalid"),
            (f"{API}/recordings/{rid}/download?rendition=mp4&token={token}", "url_token_invalid"),
            (f"{API}/recordings/{rid}/download?rendition=original&token={tampered}", "url_token_invalid"),
            (f"{API}/recordings/{rid}/download?rendition=original&token={expiry_tampered}", "url_token_invalid"),
            (f"{API}/recordings/{rid}/download?token={token[:10]}", "url_token_invalid"),
        ]:
            assert_problem(anon.get(path), 403, code)
    # Past its expiry, a second on: works until then, and is refused from then on, through every frontend.
    short = assert_json(download_url(stack, owner[1], rid, expires_in=1), 200)["url"]

    def refused():
        r = Client(stack.frontends["nginx"]).get(short)
        assert r.status_code in (200, 403), r.text
        return (r,) if r.status_code == 403 else None  # a tuple: a requests.Response of a 403 is false

    (r,) = poll(refused, timeout=10, what="the expired URL's 403")
    assert_problem(r, 403, "url_token_expired")
    for base in stack.frontends.values():
        assert_problem(Client(base).get(short), 403, "url_token_expired")
    # Bounds of expires_in, and who may ask.
    assert_problem(download_url(stack, owner[1], rid, expires_in=0), 422, "invalid_value")
    assert_problem(download_url(stack, owner[1], rid, expires_in=86401), 422, "invalid_value")
    assert_problem(download_url(stack, owner[1], rid, expires_in="soon"), 400, "invalid_query")
    stranger = make_token(stack, unique("stud"), "student")
    assert_problem(download_url(stack, stranger, rid), 404, "recording_not_found")


def test_mp4_renditions(stack, owner, recording):
    """The mp4 job's files (mp4/<rung>.mp4, written here by hand): rendition=mp4 is the largest finished one."""
    rid, _ = recording
    folder = Path(stack.storage_path) / rid / "mp4"
    folder.mkdir(exist_ok=True)
    big, small = os.urandom(5000), os.urandom(3000)
    (folder / "720p.mp4").write_bytes(big)
    (folder / "360p.mp4").write_bytes(small)
    (folder / "1080p.tmp-7.mp4").write_bytes(os.urandom(9000))  # unfinished: never offered
    try:
        for base in stack.frontends.values():
            r = get(base, owner[1], rid, rendition="mp4")
            assert r.status_code == 200 and r.content == big, r.status_code
            assert r.headers["Content-Type"] == "video/mp4"
            assert 'x.mp4"' in r.headers["Content-Disposition"]
            r = get(base, owner[1], rid, rendition="360p", headers={"Range": "bytes=-10"})
            assert r.status_code == 206 and r.content == small[-10:]
        url = assert_json(download_url(stack, owner[1], rid, rendition="360p"), 200)["url"]
        assert Client(stack.frontends["apache_proxy"]).get(url).content == small
    finally:
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
