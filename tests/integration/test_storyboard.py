"""Storyboards end to end: an imported 6 s video goes through the probe and
storyboard jobs; GET /api/v1/recordings/{id}/storyboard.json, .vtt and .jpg
answer through every frontend. The VTT's cues cover the whole duration
without gaps, every #xywh tile lies inside the sprite (whose size the JPEG
itself confirms), 50 to 100 tiles; ETag and If-None-Match give 304; before
the job it is 409 storyboard_not_ready."""

import re

import psycopg2
import pytest

from helpers import API, Client, assert_json, assert_problem, make_token, unique
from test_import import upload
from test_probe import only_job, run_job
from test_thumbnail import image_size, import_and_process, make_video

CUE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d\d\d) --> (\d\d):(\d\d):(\d\d)\.(\d\d\d)$")


def ms(h, m, s, f):
    return ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(f)


@pytest.fixture(scope="module")
def owner(stack):
    sub = unique("inst")
    return sub, make_token(stack, sub, "instructor")


@pytest.fixture(scope="module")
def recording(stack, owner, tmp_path_factory):
    conn = psycopg2.connect(stack.database_url)
    conn.autocommit = True
    try:
        path = make_video(tmp_path_factory.mktemp("storyboard") / "class.mp4", "640x360", 6)
        rid = import_and_process(stack, conn, owner[1], path, kinds=("probe",))
        # Before the storyboard job: 409.
        c = Client(stack.frontends["nginx"], owner[1])
        for suffix in ("json", "vtt", "jpg"):
            assert_problem(c.get(f"{API}/recordings/{rid}/storyboard.{suffix}"), 409, "storyboard_not_ready")
        row = run_job(stack, conn, only_job(conn, rid, "storyboard"), lambda r: r["state"] != "queued")
        assert row["state"] == "succeeded", row
        return rid
    finally:
        conn.close()


def test_storyboard_json_vtt_and_sprite_agree(stack, owner, recording):
    rid = recording
    for base in stack.frontends.values():
        c = Client(base, owner[1])
        form = assert_json(c.get(f"{API}/recordings/{rid}/storyboard.json"), 200)
        assert 50 <= form["count"] <= 100, form["count"]
        assert abs(form["duration_s"] - 6.0) < 0.1, form
        assert (form["tile_width"], form["tile_height"]) == (160, 90)
        assert form["width"] == form["columns"] * form["tile_width"]
        assert form["height"] == form["rows"] * form["tile_height"]
        assert form["image_url"] == "storyboard.jpg" and form["vtt_url"] == "storyboard.vtt"
        assert len(form["tiles"]) == form["count"]

        sprite = c.get(f"{API}/recordings/{rid}/storyboard.jpg")
        assert sprite.status_code == 200 and sprite.headers["Content-Type"] == "image/jpeg"
        assert image_size(sprite.content) == ("mjpeg", form["width"], form["height"])

        r = c.get(f"{API}/recordings/{rid}/storyboard.vtt")
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith("text/vtt")
        blocks = r.content.decode("utf-8").strip("\n").split("\n\n")
        assert blocks[0] == "WEBVTT"
        cues = blocks[1:]
        assert len(cues) == form["count"]
        end_prev = 0
        for cue in cues:
            timing, target = cue.split("\n")
            m = CUE.match(timing)
            assert m, timing
            start, end = ms(*m.groups()[:4]), ms(*m.groups()[4:])
            assert start == end_prev, f"gap or overlap before {timing}"
            assert end > start
            end_prev = end
            url, xywh = target.split("#xywh=")
            assert url == "storyboard.jpg"
            x, y, w, h = map(int, xywh.split(","))
            assert (w, h) == (160, 90)
            assert 0 <= x and x + w <= form["width"] and 0 <= y and y + h <= form["height"], xywh
        assert end_prev == round(form["duration_s"] * 1000)


def test_storyboard_etag_and_access(stack, owner, recording):
    rid = recording
    for base in stack.frontends.values():
        c = Client(base, owner[1])
        for suffix in ("vtt", "jpg"):
            first = c.get(f"{API}/recordings/{rid}/storyboard.{suffix}")
            etag = first.headers["ETag"]
            again = c.get(f"{API}/recordings/{rid}/storyboard.{suffix}", headers={"If-None-Match": etag})
            assert again.status_code == 304 and again.content == b""
        assert_problem(c.get(f"{API}/recordings/{rid}/storyboard.json?x=1"), 400, "invalid_query")
    stranger = Client(stack.frontends["nginx"], make_token(stack, unique("stud"), "student"))
    assert_problem(stranger.get(f"{API}/recordings/{rid}/storyboard.vtt"), 404, "recording_not_found")


def test_share_link_reaches_track_and_sprite(stack, owner, recording):
    """Through a ?share= link (no Bearer token) the track's cues carry the
    link, so a player can load the sprite they point at."""
    rid = recording
    c = Client(stack.frontends["nginx"], owner[1])
    r = c.post(f"{API}/recordings/{rid}/shares", {})
    share = assert_json(r, 201)["token"]
    for base in stack.frontends.values():
        anon = Client(base)
        r = anon.get(f"{API}/recordings/{rid}/storyboard.vtt", params={"share": share})
        assert r.status_code == 200, r.text
        first_cue = r.content.decode().split("\n\n")[1].split("\n")[1]
        url, _, xywh = first_cue.partition("#xywh=")
        assert url.startswith("storyboard.jpg?share="), first_cue
        sprite = anon.get(f"{API}/recordings/{rid}/{url}")
        assert sprite.status_code == 200 and sprite.headers["Content-Type"] == "image/jpeg", sprite.text
        thumb = anon.get(f"{API}/recordings/{rid}/thumbnail", params={"share": share, "time": 1, "width": 64})
        assert thumb.status_code == 200, thumb.text
