"""Media import (POST /api/v1/recordings with a raw media body) through every
frontend (nginx, Apache mod_proxy_fcgi, Apache mod_fcgid): real H.264/AAC MP4
and VP8/Opus WebM files made with the ffmpeg CLI are stored byte for byte
under STORAGE_PATH/<id>/source.<ext>, the recording is `processing` and a
`probe` job naming the file is queued; the refusals (403, 415, 400/422 for the
query, 411, 413) store nothing; a chunked upload gets through every frontend
(they spool it and pass its length on); a truncated body (CGI mode, stdin
closed early) leaves neither a folder nor a row. The 413 of a configured limit
is checked in CGI mode with VTP_MAX_UPLOAD_BYTES=1000, as no test wants to send
4 GiB; over the default limit, nginx and the program refuse a Content-Length
of 5 GiB."""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from helpers import API, UUID_RE, Client, assert_json, assert_problem, make_token, unique

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"

# name -> (content type, extension, ffmpeg output arguments)
MEDIA = {
    "mp4": ("video/mp4", "mp4", ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                                 "-c:a", "aac", "-b:a", "96k", "-movflags", "+faststart"]),
    "webm": ("video/webm", "webm", ["-c:v", "libvpx", "-b:v", "400k", "-deadline", "realtime",
                                    "-cpu-used", "8", "-c:a", "libopus", "-b:a", "64k"]),
}


def make_media(path, out_args, seconds=3):
    """seconds of testsrc2 (640x360, 30 fps) and a 440 Hz stereo sine at 48 kHz, encoded with out_args."""
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
           "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=30:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
           "-ac", "2", *out_args, "-shortest", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"ffmpeg failed: {proc.stderr}"
    return Path(path)


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """{name: Path} of the media files of MEDIA, made once per session."""
    folder = tmp_path_factory.mktemp("media")
    return {name: make_media(folder / f"source.{ext}", args) for name, (_, ext, args) in MEDIA.items()}


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def storage_entries(stack):
    return set(os.listdir(stack.storage_path))


def upload(client, data, content_type="video/mp4", title=None, **params):
    query = {"title": title if title is not None else unique("upload"), **params}
    if title is False:
        del query["title"]
    return client.request("POST", f"{API}/recordings?{urllib.parse.urlencode(query)}", data=data,
                          headers={"Content-Type": content_type} if content_type else {})


@pytest.fixture
def instructor(stack, base_url):
    sub = unique("inst")
    c = Client(base_url, make_token(stack, sub, "instructor"))
    c.sub = sub
    return c


def check_import(stack, db, rec, sub, title, data, ext):
    """The 201 answer, the stored file and the queued probe of one import."""
    assert UUID_RE.match(rec["id"]), rec
    assert rec["title"] == title and rec["owner_id"] == sub, rec
    assert rec["status"] == "processing", rec
    assert rec["source"] == {"type": "upload"}, rec
    assert rec["size_bytes"] == len(data), rec
    assert rec["started_at"] is None and rec["stopped_at"] is None, rec
    assert rec["duration_s"] is None and rec["renditions"] == [], rec
    assert [(j["kind"], j["state"]) for j in rec["jobs"]] == [("probe", "queued")], rec["jobs"]

    folder = Path(stack.storage_path) / rec["id"]
    assert sorted(os.listdir(folder)) == [f"source.{ext}"], "only the source, no temporary file"
    assert oct(folder.stat().st_mode & 0o777) == oct(0o750)
    stored = (folder / f"source.{ext}").read_bytes()
    assert len(stored) == len(data) and sha256(stored) == sha256(data)

    with db.cursor() as cur:
        cur.execute("SELECT status, source_type, source_file, size_bytes, started_at, stopped_at"
                    " FROM recordings WHERE id = %s", (rec["id"],))
        assert cur.fetchone() == ("processing", "upload", f"source.{ext}", len(data), None, None)
        cur.execute("SELECT kind, state, payload FROM jobs WHERE recording_id = %s", (rec["id"],))
        assert cur.fetchall() == [("probe", "queued", {"source_file": f"source.{ext}"})]


# ====================================================================== success
@pytest.mark.parametrize("name", sorted(MEDIA))
def test_import_stores_the_file_and_queues_a_probe(stack, db, base_url, instructor, media, name):
    content_type, ext, _ = MEDIA[name]
    data = media[name].read_bytes()
    title = unique("Algebra – week 3")
    r = upload(instructor, data, content_type, title=title, room_id="room-42")
    rec = assert_json(r, 201)
    assert r.headers["Location"] == f"{API}/recordings/{rec['id']}"
    assert rec["room_id"] == "room-42"
    check_import(stack, db, rec, instructor.sub, title, data, ext)
    # The recording reads back the same, and is listed.
    got = assert_json(instructor.get(r.headers["Location"]), 200)
    assert got["status"] == "processing" and got["source"] == {"type": "upload"}
    listed = assert_json(instructor.get(f"{API}/recordings", params={"room_id": "room-42"}), 200)["items"]
    assert rec["id"] in [i["id"] for i in listed]


def test_admin_may_import_and_room_defaults(stack, db, base_url, media):
    admin = Client(base_url, make_token(stack, unique("admin"), "admin"))
    data = media["mp4"].read_bytes()
    rec = assert_json(upload(admin, data, "audio/mp4; codecs=mp4a.40.2"), 201)
    assert rec["room_id"] == "upload"
    assert sorted(os.listdir(Path(stack.storage_path) / rec["id"])) == ["source.m4a"]


@pytest.mark.parametrize("content_type,ext", [
    ("VIDEO/QuickTime", "mov"), ("video/x-matroska", "mkv"), ("video/mp2t", "ts"), ("audio/mpeg", "mp3"),
    ("audio/ogg", "ogg"), ("audio/x-wav", "wav"), ("video/x-flv", "bin"),
])
def test_extension_follows_the_content_type(stack, content_type, ext):
    # The mapping is the program's: one frontend is enough.
    c = Client(stack.frontends["nginx"], make_token(stack, unique("inst"), "instructor"))
    rec = assert_json(upload(c, b"\0" * 1000, content_type), 201)
    assert os.listdir(Path(stack.storage_path) / rec["id"]) == [f"source.{ext}"]


def test_large_upload_is_stored_byte_for_byte(stack, db, base_url, instructor):
    # 24 MiB: many reads of the program's 64 KiB buffer, past nginx's
    # in-memory body buffer and mod_fcgid's FcgidMaxRequestInMem.
    data = os.urandom(24 << 20)
    title = unique("big")
    rec = assert_json(upload(instructor, data, "video/mp4", title=title), 201)
    check_import(stack, db, rec, instructor.sub, title, data, "mp4")


def test_chunked_upload_without_content_length(stack, base_url, instructor):
    """A client that streams with Transfer-Encoding: chunked: every frontend
    spools the body and passes its length on (nginx and mod_fcgid always,
    mod_proxy_fcgi with proxy-sendcl), so the program can check it is whole."""
    data = os.urandom(3 << 20)

    def chunks():
        for i in range(0, len(data), 1 << 20):
            yield data[i:i + (1 << 20)]

    r = instructor.s.post(f"{base_url}{API}/recordings", params={"title": unique("chunked")}, data=chunks(),
                          headers={"Content-Type": "video/mp4", "Authorization": f"Bearer {instructor.tok}"},
                          timeout=30)
    rec = assert_json(r, 201)
    assert (Path(stack.storage_path) / rec["id"] / "source.mp4").read_bytes() == data


# ====================================================================== refusals
def test_refusals_store_nothing(stack, db, base_url, instructor, media):
    data = media["mp4"].read_bytes()
    student = Client(base_url, make_token(stack, unique("stud"), "student"))
    before = storage_entries(stack)
    title = unique("refused")

    assert_problem(upload(student, data, title=title), 403, "forbidden")
    assert_problem(upload(instructor, data, "text/plain", title=title), 415, "unsupported_media_type")
    assert_problem(upload(instructor, data, "application/octet-stream", title=title), 415,
                   "unsupported_media_type")
    assert_problem(upload(instructor, data, "video/", title=title), 415, "unsupported_media_type")
    assert_problem(upload(instructor, data, None, title=title), 415, "unsupported_media_type")
    assert_problem(upload(instructor, data, title=False), 422, "missing_field")
    assert_problem(upload(instructor, data, title=""), 422, "invalid_value")
    assert_problem(upload(instructor, data, title="x" * 201), 422, "invalid_value")
    assert_problem(upload(instructor, data, title="a\x01b"), 422, "invalid_value")
    assert_problem(upload(instructor, data, title=title, room_id=""), 422, "invalid_value")
    assert_problem(upload(instructor, data, title=title, colour="red"), 400, "invalid_query")
    for query in ("title=%ZZ", "title=%FF%FE", f"title={title}&title=again"):
        r = instructor.request("POST", f"{API}/recordings?{query}", data=data, headers={"Content-Type": "video/mp4"},
                               raw=True)
        assert_problem(r, 400, "invalid_query")
    assert_problem(upload(instructor, b"", title=title), 422, "invalid_value")
    assert_problem(upload(Client(base_url, None), data, title=title), 401, "unauthorized")

    assert storage_entries(stack) == before
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM recordings WHERE title = %s", (title,))
        assert cur.fetchone()[0] == 0


def raw_exchange(base_url, head, body=b"", timeout=15):
    """Sends a request head and body on a plain socket; returns (status, headers text, body bytes)
    of the answer, read until the server closes or the answer is complete."""
    u = urllib.parse.urlsplit(base_url)
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as s:
        try:
            s.sendall(head.encode() + body)
        except (socket.timeout, BrokenPipeError, ConnectionResetError):
            pass  # the server answered without reading all of it
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
            if data.endswith(b"\r\n0\r\n\r\n"):
                break  # the end of a chunked answer
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0:
                headers = data[:head_end].decode("latin-1")
                length = [int(line.split(":", 1)[1]) for line in headers.split("\r\n")
                          if line.lower().startswith("content-length:")]
                if length and len(data) >= head_end + 4 + length[0]:
                    break
    headers, _, rest = data.partition(b"\r\n\r\n")
    status = int(headers.split(b" ", 2)[1]) if headers else 0
    if b"transfer-encoding: chunked" in headers.lower():
        body, rest = b"", rest
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            body, rest = body + rest[:size], rest[size + 2:]
            if size == 0:
                break
        rest = body
    return status, headers.decode("latin-1"), rest


@pytest.mark.parametrize("frontend", ["nginx", "apache_proxy"])
def test_content_length_over_the_default_limit_is_413(stack, frontend):
    """A Content-Length over 4 GiB is refused from the header: by nginx
    (client_max_body_size, answered in the API's problem format) before any
    body, or by the program, which mod_proxy_fcgi passes the header to; the
    program then drops up to 64 MiB of the body before it answers, so the
    client sends a little more than that. mod_fcgid would wait for the whole
    body before starting the program, so it is not tried here."""
    base = stack.frontends[frontend]
    title = unique("huge")
    token = make_token(stack, unique("inst"), "instructor")
    before = storage_entries(stack)
    head = (f"POST {API}/recordings?title={title} HTTP/1.1\r\nHost: localhost\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: video/mp4\r\n"
            f"Content-Length: {5 << 30}\r\nConnection: close\r\n\r\n")
    body = b"\0" * (1000 if frontend == "nginx" else (64 << 20) + (1 << 20))
    status, headers, answer = raw_exchange(base, head, body)
    assert status == 413, (status, headers, answer[:300])
    assert "application/problem+json" in headers.lower()
    assert json.loads(answer)["code"] == "body_too_large"
    assert storage_entries(stack) == before


# ====================================================================== CGI mode
def run_cgi(stack, body, content_length, title, env=None, role="instructor"):
    """vtp-api as a one-shot CGI program: the request body on stdin (closed after
    body, whatever CONTENT_LENGTH says; None: no CONTENT_LENGTH). Returns
    (status, problem or recording, stderr)."""
    token = make_token(stack, unique("cgi"), role)
    cgi_env = dict(stack.env, GATEWAY_INTERFACE="CGI/1.1", REQUEST_METHOD="POST",
                   REQUEST_URI=f"{API}/recordings", QUERY_STRING=urllib.parse.urlencode({"title": title}),
                   CONTENT_TYPE="video/mp4", HTTP_AUTHORIZATION=f"Bearer {token}", **(env or {}))
    if content_length is not None:
        cgi_env["CONTENT_LENGTH"] = str(content_length)
    proc = subprocess.run([str(stack.build_dir / "vtp-api")], env=cgi_env, input=body, capture_output=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    head, _, answer = proc.stdout.partition(b"\r\n\r\n")
    status = int(head.split(b"\r\n")[0].split()[1])
    return status, json.loads(answer), proc.stderr.decode()


def test_cgi_upload_over_the_configured_limit_is_413(stack, db):
    title = unique("limit")
    before = storage_entries(stack)
    status, answer, _ = run_cgi(stack, b"\0" * 1001, 1001, title, env={"VTP_MAX_UPLOAD_BYTES": "1000"})
    assert (status, answer["code"]) == (413, "body_too_large"), answer
    # At the limit it is accepted.
    status, answer, _ = run_cgi(stack, b"\0" * 1000, 1000, title, env={"VTP_MAX_UPLOAD_BYTES": "1000"})
    assert status == 201, answer
    assert storage_entries(stack) - before == {answer["id"]}


def test_cgi_truncated_upload_leaves_nothing_behind(stack, db, media):
    data = media["mp4"].read_bytes()
    title = unique("truncated")
    before = storage_entries(stack)
    status, answer, stderr = run_cgi(stack, data[: len(data) // 2], len(data), title)
    assert (status, answer["code"]) == (400, "upload_truncated"), answer
    assert f"{len(data) // 2} of the {len(data)} bytes" in answer["detail"]
    assert storage_entries(stack) == before, "the temporary file and its folder are removed"
    with db.cursor() as cur:
        cur.execute("SELECT count(*) FROM recordings WHERE title = %s", (title,))
        assert cur.fetchone()[0] == 0
    assert "ended after" in stderr


def test_cgi_upload_without_a_length_is_411(stack):
    before = storage_entries(stack)
    status, answer, _ = run_cgi(stack, b"\0" * 1000, None, unique("nolength"))
    assert (status, answer["code"]) == (411, "length_required"), answer
    assert storage_entries(stack) == before
