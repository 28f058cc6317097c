"""Thumbnails end to end: media made with the ffmpeg CLI is imported, the
pipeline's probe, thumbnail and storyboard jobs run (`vtp-worker --once`),
and GET /api/v1/recordings/{id}/thumbnail answers through every frontend.

- The poster of a class that starts with 4 s of black comes from after the
  black, and the recording's thumbnail_url is set once the poster exists.
- Exact output sizes for each fit on 16:9, 4:3 and portrait sources (each a
  new size, so rendered on the spot), in JPEG, PNG and WebP.
- Bounds: time past the end, width over 1920, bad fit/format -> 422;
  malformed numbers and unknown parameters -> 400; no poster yet -> 409.
- ETag and If-None-Match -> 304; rendered pictures are cached on disk.
- 50 concurrent requests for new sizes all succeed.
"""

import concurrent.futures
import subprocess
from pathlib import Path

import psycopg2
import pytest

from helpers import API, Client, assert_json, assert_problem, make_token, unique
from test_import import upload
from test_probe import only_job, run_job

FFMPEG = "ffmpeg"


def make_video(path, size, seconds=2, black_s=0):
    """H.264 MP4 of testsrc (black_s seconds of black first), size "WxH", 30 fps, no audio."""
    w, h = size.split("x")
    if black_s:
        graph = (f"color=black:s={size}:r=30:d={black_s}[a];testsrc=s={size}:r=30:d={seconds}[b];"
                 f"[a][b]concat=n=2:v=1[v]")
    else:
        graph = f"testsrc=s={size}:r=30:d={seconds}[v]"
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-filter_complex", graph, "-map", "[v]",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "15",
           "-movflags", "+faststart", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"ffmpeg failed: {proc.stderr}"
    return Path(path)


def image_size(data):
    """(codec, width, height) of an encoded picture, read by ffprobe."""
    proc = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height",
                           "-of", "csv=p=0", "-i", "pipe:0"], input=data, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    codec, w, h = proc.stdout.decode().strip().split(",")[:3]
    return codec, int(w), int(h)


def gray_pixels(data):
    """The picture decoded to 8-bit gray, row by row."""
    proc = subprocess.run([FFMPEG, "-v", "error", "-i", "pipe:0", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"],
                          input=data, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def import_and_process(stack, db, token, path, kinds=("probe", "thumbnail", "storyboard")):
    """Imports path, runs the given pipeline jobs; returns the recording id."""
    c = Client(stack.frontends["nginx"], token)
    rec = assert_json(upload(c, path.read_bytes(), "video/mp4"), 201)
    rid = rec["id"]
    for kind in kinds:
        row = run_job(stack, db, only_job(db, rid, kind), lambda r: r["state"] != "queued")
        assert row["state"] == "succeeded", (kind, row)
    return rid


@pytest.fixture(scope="module")
def owner(stack):
    sub = unique("inst")
    return sub, make_token(stack, sub, "instructor")


@pytest.fixture(scope="module")
def module_db(stack):
    conn = psycopg2.connect(stack.database_url)
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture(scope="module")
def sources(stack, module_db, owner, tmp_path_factory):
    """{name: (recording id, width, height)}: a class starting with black (16:9), a 4:3 and a portrait one."""
    db = module_db
    folder = tmp_path_factory.mktemp("thumb-media")
    specs = {"wide": ("640x360", 2, 4), "four_three": ("480x360", 2, 0), "portrait": ("360x640", 2, 0)}
    out = {}
    for name, (size, seconds, black) in specs.items():
        path = make_video(folder / f"{name}.mp4", size, seconds, black)
        w, h = map(int, size.split("x"))
        out[name] = (import_and_process(stack, db, owner[1], path), w, h)
    return out


def get_thumb(base, token, rid, **params):
    return Client(base, token).get(f"{API}/recordings/{rid}/thumbnail", params=params)


def test_poster_comes_after_the_black_start(stack, db, owner, sources):
    rid = sources["wide"][0]
    with db.cursor() as cur:
        cur.execute("SELECT poster_s, status FROM recordings WHERE id = %s", (rid,))
        poster_s, status = cur.fetchone()
    assert status == "processing"  # ready once the transcode (heavy queue, sql/005_hls.sql) has run too
    assert poster_s >= 4.0, poster_s
    for base in stack.frontends.values():
        rec = assert_json(Client(base, owner[1]).get(f"{API}/recordings/{rid}"), 200)
        assert rec["thumbnail_url"] == f"/api/v1/recordings/{rid}/thumbnail", rec
        r = get_thumb(base, owner[1], rid)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == "image/jpeg"
        assert image_size(r.content) == ("mjpeg", 640, 360)
        pixels = gray_pixels(r.content)
        mean = sum(pixels) / len(pixels)
        assert mean > 40, f"the poster is dark (mean luma {mean:.1f})"
    # The job rendered the common sizes ahead of time.
    thumbs = Path(stack.storage_path) / rid / "thumbs"
    ms = round(poster_s * 1000)
    for size in ("0x0", "320x0", "640x0", "1280x0"):
        assert (thumbs / f"t{ms}-{size}-preserve.jpg").is_file(), size
    r = get_thumb(stack.frontends["nginx"], owner[1], rid, width=320)
    assert image_size(r.content) == ("mjpeg", 320, 180)
    # A frame inside the black is black: time is honoured.
    r = get_thumb(stack.frontends["nginx"], owner[1], rid, time=1.5, width=160)
    assert r.status_code == 200, r.text
    pixels = gray_pixels(r.content)
    assert sum(pixels) / len(pixels) < 20


FITS = [
    # source, width, height, fit, format, expected (width, height)
    ("wide", 320, None, "preserve", "jpg", (320, 180)),
    ("wide", None, 90, "preserve", "png", (160, 90)),
    ("wide", 320, 320, "preserve", "jpg", (320, 180)),
    ("wide", 320, 320, "crop", "png", (320, 320)),
    ("wide", 320, 320, "pad", "webp", (320, 320)),
    ("wide", 1920, None, "preserve", "jpg", (1920, 1080)),
    ("four_three", 320, 180, "preserve", "png", (240, 180)),
    ("four_three", 320, 180, "crop", "jpg", (320, 180)),
    ("four_three", 320, 180, "pad", "png", (320, 180)),
    ("four_three", None, None, "preserve", "jpg", (480, 360)),
    ("portrait", 320, 180, "preserve", "jpg", (101, 180)),
    ("portrait", 320, 180, "crop", "webp", (320, 180)),
    ("portrait", 320, 180, "pad", "png", (320, 180)),
    ("portrait", 200, None, "crop", "jpg", (200, 356)),
    ("portrait", None, None, "preserve", "png", (360, 640)),
]


@pytest.mark.parametrize("source,width,height,fit,fmt,expected", FITS)
def test_exact_sizes_for_each_fit(stack, owner, sources, source, width, height, fit, fmt, expected):
    rid = sources[source][0]
    params = {"fit": fit, "format": fmt, "time": 1}
    if width:
        params["width"] = width
    if height:
        params["height"] = height
    codec = {"jpg": "mjpeg", "png": "png", "webp": "webp"}[fmt]
    # Each frontend asks for a picture of its own (a cold render each time).
    for i, base in enumerate(stack.frontends.values()):
        params["time"] = 1 + i * 0.25
        r = get_thumb(base, owner[1], rid, **params)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}[fmt]
        assert image_size(r.content) == (codec, *expected), params
    if fit == "pad" and fmt == "png":
        # The bars are black, the middle is the picture.
        w, h = expected
        pixels = gray_pixels(r.content)
        corner = pixels[0] if source == "portrait" else pixels[0]
        assert corner < 10, corner
        assert pixels[(h // 2) * w + w // 2] > 0 or max(pixels) > 50


def test_bounds_and_malformed_parameters(stack, owner, sources):
    rid = sources["four_three"][0]
    for base in stack.frontends.values():
        for params, status, code in [
            ({"time": 2.5}, 422, "invalid_value"),        # past the end (2 s)
            ({"time": -1}, 422, "invalid_value"),
            ({"width": 1921}, 422, "invalid_value"),
            ({"height": 5000}, 422, "invalid_value"),
            ({"width": 0}, 422, "invalid_value"),
            ({"fit": "stretch"}, 422, "invalid_value"),
            ({"format": "gif"}, 422, "invalid_value"),
            ({"width": "abc"}, 400, "invalid_query"),
            ({"width": "12.5"}, 400, "invalid_query"),
            ({"time": "nan"}, 400, "invalid_query"),
            ({"size": 3}, 400, "invalid_query"),
        ]:
            problem = assert_problem(get_thumb(base, owner[1], rid, **params), status, code)
            assert "/" not in problem["detail"].replace("1/", ""), problem
    stranger = make_token(stack, unique("stud"), "student")
    assert_problem(get_thumb(stack.frontends["nginx"], stranger, rid), 404, "recording_not_found")


def test_no_poster_yet_is_409(stack, db, owner, tmp_path_factory):
    path = make_video(tmp_path_factory.mktemp("thumb-early") / "early.mp4", "320x180", 1)
    rid = import_and_process(stack, db, owner[1], path, kinds=("probe",))
    c = Client(stack.frontends["nginx"], owner[1])
    assert assert_json(c.get(f"{API}/recordings/{rid}"), 200)["thumbnail_url"] is None
    assert_problem(get_thumb(stack.frontends["nginx"], owner[1], rid), 409, "thumbnail_not_ready")
    # A given time works as soon as the probe has run.
    r = get_thumb(stack.frontends["nginx"], owner[1], rid, time=0.5, width=64)
    assert r.status_code == 200 and image_size(r.content) == ("mjpeg", 64, 36)


def test_etag_and_if_none_match(stack, owner, sources):
    rid = sources["wide"][0]
    for base in stack.frontends.values():
        for params in ({}, {"width": 96, "fit": "crop", "height": 96, "time": 4.5}):
            first = get_thumb(base, owner[1], rid, **params)
            assert first.status_code == 200, first.text
            etag = first.headers["ETag"]
            assert etag.startswith('"') and etag.endswith('"')
            again = Client(base, owner[1]).get(f"{API}/recordings/{rid}/thumbnail", params=params,
                                               headers={"If-None-Match": etag})
            assert again.status_code == 304, again.text
            assert again.content == b""
            other = Client(base, owner[1]).get(f"{API}/recordings/{rid}/thumbnail", params=params,
                                               headers={"If-None-Match": '"nope"'})
            assert other.status_code == 200 and other.content == first.content
    assert (Path(stack.storage_path) / rid / "thumbs" / "t4500-96x96-crop.jpg").is_file()


def test_fifty_concurrent_new_sizes(stack, owner, sources):
    rid = sources["wide"][0]
    base = stack.frontends["nginx"]

    def one(width):
        r = get_thumb(base, owner[1], rid, width=width, time=5)
        return width, r.status_code, r.content

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(200, 250)))
    for width, status, content in results:
        assert status == 200, (width, status, content[:200])
        assert image_size(content)[1] == width
    assert Client(base).get("/health").status_code == 200


def test_full_cache_still_answers_without_keeping(stack, owner, sources):
    """Past 2000 pictures per recording, new ones are rendered, sent and not kept."""
    rid = sources["portrait"][0]
    thumbs = Path(stack.storage_path) / rid / "thumbs"
    filler = [thumbs / f"filler-{i}.jpg" for i in range(2000)]
    for p in filler:
        p.touch()
    try:
        r = get_thumb(stack.frontends["nginx"], owner[1], rid, width=77, time=0.5)
        assert r.status_code == 200, r.text
        assert image_size(r.content)[1:] == (77, 137)
        assert not (thumbs / "t500-77x0-preserve.jpg").exists()
        assert not [p for p in thumbs.iterdir() if p.name.startswith("once-")]
    finally:
        for p in filler:
            p.unlink()
