"""Shares enforced everywhere, through every frontend (fcgi/access.c, fcgi/stream.c, fcgi/download.c,
fcgi/progress.c, the router):

- the stream and download URL tokens a share hands out carry its id (lib/url_token.h) and end with it: once the
  share is revoked or expired, its media playlists, segments and download URLs answer 403 share_revoked /
  share_expired at once; behind nginx a share's viewer gets ?token= segment URIs (checked by vtp-api), never
  nginx's secure links, which could not see a revocation; their uses count no views;
- a share to a named user honours can_download, max_views, expiry and revocation as a link does;
- anonymous link viewers cannot read or write each other's progress sessions (409 session_conflict);
- a HEAD counts no view and logs no download;
- a literal path (/recordings/start) answers 405 with Allow for another method, not the {id} routes' 400.

Recordings are laid out by hand (test_segment_links.lay_out: an upload nobody probes, with hls/ folders), with
a master playlist and the ladder written into the row."""

import datetime
import re
import time
from pathlib import Path

import pytest
import requests

from helpers import API, Client, auth, assert_json, assert_problem, make_token, unique
from test_segment_links import lay_out

MASTER = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\n360p/index.m3u8\n"


@pytest.fixture
def ctx(stack, base_url, db):
    class Ctx:
        pass

    c = Ctx()
    c.db, c.base, c.stack = db, base_url, stack
    c.u_sub = unique("u")
    c.owner = Client(base_url, make_token(stack, unique("own"), "instructor"))
    c.user = Client(base_url, make_token(stack, c.u_sub, "student"))
    c.anon = Client(base_url, None)
    c.rid = lay_out(stack, c.owner)
    (Path(stack.storage_path) / c.rid / "hls" / "master.m3u8").write_text(MASTER)
    with db.cursor() as cur:
        cur.execute("UPDATE recordings SET duration_s = 12, renditions = '[{\"name\": \"360p\", \"width\": 640,"
                    " \"height\": 360, \"bandwidth\": 800000, \"status\": \"ready\"}]' WHERE id = %s", (c.rid,))
    c.rec = f"{API}/recordings/{c.rid}"
    return c


def share(c, **body):
    return assert_json(c.owner.post(f"{c.rec}/shares", body), 201)


def views(c, share_id):
    with c.db.cursor() as cur:
        cur.execute("SELECT views FROM recording_sharing WHERE id = %s", (share_id,))
        return cur.fetchone()[0]


def play(client, rec, **params):
    """The master playlist, then the media playlist it names: returns (media URL, media text, segment URLs)."""
    r = client.get(f"{rec}/stream/playlist.m3u8", params=params)
    assert r.status_code == 200, r.text
    media_uri = [l for l in r.text.splitlines() if l and not l.startswith("#")][0]
    media_url = f"{rec}/stream/{media_uri}"
    r = client.get(media_url)
    assert r.status_code == 200, r.text
    segs = [l for l in r.text.splitlines() if l and not l.startswith("#")] + re.findall(r'URI="([^"]+)"', r.text)
    return media_url, r.text, [f"{rec}/stream/360p/{s}" for s in segs]


def token_expiry(url):
    return int(re.search(r"token=(\d+)\.", url).group(1))


def test_revoked_share_stops_its_tokens_at_once(ctx):
    s = share(ctx, can_download=True)
    media_url, media, segs = play(ctx.anon, ctx.rec, share=s["token"])
    # A share's viewer gets ?token= segment URIs, checked by vtp-api on every request, even behind nginx.
    assert "md5=" not in media and len(segs) == 3 and all("?token=" in u for u in segs), media
    for u in segs:
        assert ctx.anon.get(u).status_code == 200
    url = assert_json(ctx.anon.get(f"{ctx.rec}/download-url", params={"share": s["token"]}), 200)["url"]
    assert ctx.anon.get(url).status_code == 200
    seen = views(ctx, s["id"])
    assert seen == 2, seen  # the master and download-url; the token uses counted nothing

    assert ctx.owner.delete(f"{API}/shares/{s['id']}").status_code == 204
    assert_problem(ctx.anon.get(ctx.rec, params={"share": s["token"]}), 403, "share_revoked")
    assert_problem(ctx.anon.get(media_url), 403, "share_revoked")
    for u in segs:
        assert_problem(ctx.anon.get(u), 403, "share_revoked")
    assert_problem(ctx.anon.get(url), 403, "share_revoked")
    assert views(ctx, s["id"]) == seen


def test_share_tokens_end_with_the_share(ctx):
    until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=600)
    s = share(ctx, can_download=True, expires_at=until.strftime("%Y-%m-%dT%H:%M:%SZ"))
    limit = int(until.timestamp())
    media_url, _, segs = play(ctx.anon, ctx.rec, share=s["token"])
    # 12 s of recording + 1 h would outlive the share: the token ends with it.
    assert token_expiry(media_url) == limit and all(token_expiry(u) == limit for u in segs), media_url
    d = assert_json(ctx.anon.get(f"{ctx.rec}/download-url", params={"share": s["token"], "expires_in": 86400}), 200)
    assert token_expiry(d["url"]) == limit, d
    assert datetime.datetime.fromisoformat(d["expires_at"].replace("Z", "+00:00")).timestamp() == limit, d
    # The owner's own tokens are unchanged: no share in them, their usual life.
    own_media, own_text, _ = play(ctx.owner, ctx.rec)
    assert token_expiry(own_media) > limit + 3000 and "?token=" in own_media, own_media

    with ctx.db.cursor() as cur:
        cur.execute("UPDATE recording_sharing SET expires_at = now() - interval '1 second' WHERE id = %s", (s["id"],))
    assert_problem(ctx.anon.get(media_url), 403, "share_expired")
    assert_problem(ctx.anon.get(segs[0]), 403, "share_expired")
    assert_problem(ctx.anon.get(d["url"]), 403, "share_expired")
    assert ctx.owner.get(own_media, tok=None).status_code == 200


def test_a_view_plays_whole_and_counts_once(ctx):
    s = share(ctx, max_views=1)
    media_url, _, segs = play(ctx.anon, ctx.rec, share=s["token"])
    for u in segs + segs:
        assert ctx.anon.get(u).status_code == 200
    assert ctx.anon.get(media_url).status_code == 200
    assert views(ctx, s["id"]) == 1
    assert_problem(ctx.anon.get(f"{ctx.rec}/stream/playlist.m3u8", params={"share": s["token"]}), 403,
                   "share_exhausted")
    # A download URL needs can_download, and a tampered share token is no token.
    assert_problem(ctx.anon.get(media_url.replace("token=", "token=9")), 403, "url_token_invalid")


def test_user_share_honours_download_views_and_revocation(ctx):
    s = share(ctx, user_id=ctx.u_sub, can_download=False, max_views=3)
    thumb = f"{ctx.rec}/info"
    assert ctx.user.get(thumb).status_code != 403
    assert views(ctx, s["id"]) == 1
    assert_problem(ctx.user.get(f"{ctx.rec}/download"), 403, "forbidden")
    assert_problem(ctx.user.get(f"{ctx.rec}/download-url"), 403, "forbidden")
    assert views(ctx, s["id"]) == 1  # refused downloads are no views
    media_url, media, segs = play(ctx.user, ctx.rec)
    assert "md5=" not in media and all("?token=" in u for u in segs), media
    assert views(ctx, s["id"]) == 2  # the master; the media playlist came by its token
    assert ctx.anon.get(segs[0]).status_code == 200  # the token alone opens it, without counting
    assert ctx.user.get(thumb).status_code != 403
    assert views(ctx, s["id"]) == 3
    assert_problem(ctx.user.get(thumb), 403, "share_exhausted")
    assert_problem(ctx.user.get(f"{ctx.rec}/stream/playlist.m3u8"), 403, "share_exhausted")
    assert views(ctx, s["id"]) == 3
    # The tokens of a used-up share play on: their view was counted.
    assert ctx.anon.get(segs[1]).status_code == 200
    assert ctx.owner.delete(f"{API}/shares/{s['id']}").status_code == 204
    assert_problem(ctx.anon.get(segs[0]), 403, "share_revoked")
    assert_problem(ctx.anon.get(media_url), 403, "share_revoked")
    assert_problem(ctx.user.get(thumb), 403, "share_revoked")


def test_user_share_read_of_the_recording_counts_and_ends(ctx):
    """GET /recordings/{id} by a user who reads it only through a user share: a view, and the share's limits;
    the owner's own reads count nothing."""
    s = share(ctx, user_id=ctx.u_sub, max_views=2)
    assert assert_json(ctx.user.get(ctx.rec), 200)["id"] == ctx.rid
    assert assert_json(ctx.owner.get(ctx.rec), 200)["id"] == ctx.rid
    assert views(ctx, s["id"]) == 1
    assert_json(ctx.user.get(ctx.rec), 200)
    assert views(ctx, s["id"]) == 2
    assert_problem(ctx.user.get(ctx.rec), 403, "share_exhausted")
    assert views(ctx, s["id"]) == 2
    assert_problem(Client(ctx.base, make_token(ctx.stack, unique("other"), "student")).get(ctx.rec), 404,
                   "recording_not_found")


@pytest.mark.parametrize("kind", ["link", "user"])
def test_skipping_the_master_is_a_view_too(ctx, kind):
    """A media playlist or segment asked for through a share without the master's token is counted as a view
    (before, it played uncounted: max_views did not limit HLS)."""
    s = share(ctx, max_views=2, **({"user_id": ctx.u_sub} if kind == "user" else {}))
    client, params = (ctx.anon, {"share": s["token"]}) if kind == "link" else (ctx.user, {})
    media = f"{ctx.rec}/stream/360p/index.m3u8"
    r = client.get(media, params=params)
    assert r.status_code == 200 and "?token=" in r.text, r.text
    seg = next(l for l in r.text.splitlines() if l and not l.startswith("#")).split("?")[0]
    assert client.get(f"{ctx.rec}/stream/360p/{seg}", params=params).status_code == 200
    assert views(ctx, s["id"]) == 2
    assert_problem(client.get(media, params=params), 403, "share_exhausted")
    assert views(ctx, s["id"]) == 2


def test_user_share_recipient_may_not_manage(ctx):
    """The recipient of a user share knows the recording: its manage endpoints are 403, not 404."""
    share(ctx, user_id=ctx.u_sub)
    for method, path in (("GET", f"{ctx.rec}/participants"), ("GET", f"{ctx.rec}/shares"),
                         ("GET", f"{ctx.rec}/analytics"), ("POST", f"{ctx.rec}/stop"), ("DELETE", ctx.rec)):
        assert_problem(ctx.user.request(method, path), 403, "forbidden")
    stranger = Client(ctx.base, make_token(ctx.stack, unique("other"), "student"))
    assert_problem(stranger.post(f"{ctx.rec}/stop"), 404, "recording_not_found")


def test_a_download_continued_by_ranges_is_one_view(ctx):
    """A share's direct download counts once: its ranges that do not start at byte 0 (a player seeking, a
    download resumed) are no new views (before, each Range request used one up)."""
    s = share(ctx, can_download=True, max_views=2)
    url, params = f"{ctx.rec}/download", {"share": s["token"]}
    assert ctx.anon.get(url, params=params, headers={"Range": "bytes=0-99"}).status_code == 206
    for first in (100, 200, 300):
        r = ctx.anon.get(url, params=params, headers={"Range": f"bytes={first}-{first + 99}"})
        assert r.status_code == 206 and len(r.content) == 100, r.status_code
    assert views(ctx, s["id"]) == 1
    assert ctx.anon.get(url, params=params).status_code == 200
    assert views(ctx, s["id"]) == 2


def test_user_share_download_allowed(ctx):
    s = share(ctx, user_id=ctx.u_sub, can_download=True)
    url = assert_json(ctx.user.get(f"{ctx.rec}/download-url"), 200)["url"]
    assert ctx.anon.get(url).status_code == 200
    assert views(ctx, s["id"]) == 1
    with ctx.db.cursor() as cur:
        cur.execute("UPDATE recording_sharing SET expires_at = now() - interval '1 second' WHERE id = %s", (s["id"],))
    assert_problem(ctx.anon.get(url), 403, "share_expired")
    assert_problem(ctx.user.get(f"{ctx.rec}/download"), 403, "share_expired")


def test_link_viewers_keep_their_own_sessions(ctx):
    a, b = share(ctx), share(ctx)
    prog = f"{ctx.rec}/progress"
    sess = "sess" + unique("x").replace("-", "")[-12:]
    r = ctx.anon.post(prog + f"?share={a['token']}", {"session_id": sess, "event": "play", "position_s": 7})
    assert r.status_code == 204, r.text
    assert_problem(ctx.anon.get(prog, params={"share": b["token"], "session_id": sess}), 409, "session_conflict")
    r = ctx.anon.post(prog + f"?share={b['token']}", {"session_id": sess, "event": "play", "position_s": 1})
    assert_problem(r, 409, "session_conflict")
    assert_problem(ctx.user.get(prog, params={"share": a["token"], "session_id": sess}), 409, "session_conflict")
    got = assert_json(ctx.anon.get(prog, params={"share": a["token"], "session_id": sess}), 200)
    assert got["position_s"] == 7, got
    other = assert_json(ctx.anon.get(prog, params={"share": b["token"], "session_id": sess + "b"}), 200)
    assert other["position_s"] == 0, other


def head(client, path, params=None):
    """A HEAD (no body to check as Client.request does)."""
    return requests.head(client.base + path, params=params, headers=auth(client.tok), timeout=30,
                         allow_redirects=False)


def test_head_has_no_side_effects(ctx):
    s = share(ctx, max_views=1)
    for _ in range(3):
        assert head(ctx.anon, ctx.rec, params={"share": s["token"]}).status_code == 200
    assert views(ctx, s["id"]) == 0
    assert ctx.anon.get(ctx.rec, params={"share": s["token"]}).status_code == 200
    assert_problem(ctx.anon.get(ctx.rec, params={"share": s["token"]}), 403, "share_exhausted")

    def downloads():
        with ctx.db.cursor() as cur:
            cur.execute("SELECT count(*) FROM recording_access_log WHERE recording_id = %s AND action = 'download'",
                        (ctx.rid,))
            return cur.fetchone()[0]

    assert head(ctx.owner, f"{ctx.rec}/download").status_code == 200
    assert downloads() == 0
    assert ctx.owner.get(f"{ctx.rec}/download").status_code == 200
    assert downloads() == 1


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
def test_literal_path_with_another_method_is_405(ctx, method):
    r = ctx.owner.request(method, f"{API}/recordings/start")
    assert_problem(r, 405, "method_not_allowed")
    assert r.headers["Allow"] == "POST", r.headers
    # An id route still takes an id: a word there is a 400.
    assert_problem(ctx.owner.get(f"{API}/recordings/started"), 400, "invalid_uuid")
