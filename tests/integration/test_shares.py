"""Sharing, through every frontend: POST/GET /api/v1/recordings/{id}/shares, DELETE /api/v1/shares/{id}, and
?share=<token> on the read endpoints (fcgi/shares.c, fcgi/access.c, the router).

Under test: a link opens the recording without a Bearer token and only that recording; each request it
lets in counts against max_views and is logged in recording_access_log (progress reports are checked, not
counted); expiry and revocation take effect on the next request; a user share lets that user read the
recording (and list it) until revoked; tokens are stored hashed and shown once; only the owner or an admin
manages shares; a link never reaches management endpoints."""

import datetime
import hashlib
import uuid

import pytest

from helpers import API, Client, assert_json, assert_problem, is_ts, make_token, unique


@pytest.fixture
def ctx(stack, base_url, db):
    class Ctx:
        pass

    c = Ctx()
    c.db, c.base_url = db, base_url
    c.owner_sub, c.u_sub = unique("own"), unique("u")
    c.owner = Client(base_url, make_token(stack, c.owner_sub, "instructor"))
    c.user = Client(base_url, make_token(stack, c.u_sub, "student"))
    c.anon = Client(base_url, None)
    c.admin = Client(base_url, make_token(stack, unique("adm"), "admin"))
    c.rid = c.owner.start_ok()["id"]
    c.rec = f"{API}/recordings/{c.rid}"
    c.shares = f"{c.rec}/shares"
    return c


def share(ctx, **body):
    return assert_json(ctx.owner.post(ctx.shares, body), 201)


def check_share(s, created=False):
    keys = {"id", "recording_id", "user_id", "created_by", "created_at", "expires_at", "max_views", "views",
            "can_download", "revoked_at"} | ({"token", "url"} if created else set())
    assert set(s) == keys, s
    assert is_ts(s["created_at"]) and isinstance(s["views"], int) and isinstance(s["can_download"], bool), s


def test_link_opens_the_recording_without_a_token(ctx):
    s = share(ctx)
    check_share(s, created=True)
    assert s["url"] == f"{ctx.rec}?share={s['token']}" and s["user_id"] is None and s["views"] == 0
    assert len(s["token"]) == 43
    r = assert_json(ctx.anon.get(s["url"]), 200)
    assert r["id"] == ctx.rid
    # Stored hashed, every redemption logged.
    with ctx.db.cursor() as cur:
        cur.execute("SELECT token_hash, views FROM recording_sharing WHERE id = %s", (s["id"],))
        token_hash, views = cur.fetchone()
        assert bytes(token_hash) == hashlib.sha256(s["token"].encode()).digest() and views == 1
        cur.execute("SELECT action, share_id, user_id FROM recording_access_log WHERE recording_id = %s", (ctx.rid,))
        assert cur.fetchall() == [("share_redeem", s["id"], None)]
    # A signed-in user who could not read it otherwise gets in with the link too (and is logged by name).
    assert assert_json(ctx.user.get(s["url"]), 200)["id"] == ctx.rid
    with ctx.db.cursor() as cur:
        cur.execute("SELECT user_id FROM recording_access_log WHERE recording_id = %s ORDER BY id", (ctx.rid,))
        assert [u for (u,) in cur.fetchall()] == [None, ctx.u_sub]


def test_link_is_for_one_recording_and_reading_only(ctx):
    s = share(ctx)
    other = ctx.owner.start_ok()["id"]
    assert_problem(ctx.anon.get(f"{API}/recordings/{other}", params={"share": s["token"]}), 404, "recording_not_found")
    assert_problem(ctx.anon.get(ctx.rec, params={"share": "x" * 43}), 404, "recording_not_found")
    for method, path in (("GET", f"{ctx.rec}/participants"), ("GET", ctx.shares), ("GET", f"{ctx.rec}/analytics"),
                         ("DELETE", ctx.rec), ("POST", f"{ctx.rec}/stop")):
        assert_problem(ctx.anon.request(method, path, params={"share": s["token"]}), 401, "unauthorized")
    # Outside a recording's own endpoints a link is no credential at all.
    assert_problem(ctx.anon.get(f"{API}/recordings", params={"share": s["token"]}), 401, "unauthorized")
    assert_problem(ctx.anon.get(f"{API}/jobs", params={"share": s["token"]}), 401, "unauthorized")
    assert_problem(ctx.anon.get(ctx.rec, params={"share": ""}), 400, "invalid_query")
    r = ctx.anon.get(f"{ctx.rec}?share={s['token']}&share={s['token']}")
    assert_problem(r, 400, "invalid_query")


def test_max_views(ctx):
    s = share(ctx, max_views=2)
    assert ctx.anon.get(s["url"]).status_code == 200
    # A player's progress reports are checked against the link but do not use it up.
    body = {"session_id": str(uuid.uuid4()), "event": "play", "position_s": 0}
    assert ctx.anon.post(f"{ctx.rec}/progress?share={s['token']}", body).status_code == 204
    assert ctx.anon.get(s["url"]).status_code == 200
    assert_problem(ctx.anon.get(s["url"]), 403, "share_exhausted")
    assert_problem(ctx.anon.post(f"{ctx.rec}/progress?share={s['token']}", body), 403, "share_exhausted")
    listed = assert_json(ctx.owner.get(ctx.shares), 200)["items"]
    assert [(i["id"], i["views"], i["max_views"]) for i in listed] == [(s["id"], 2, 2)]


def test_expiry(ctx):
    soon = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    s = share(ctx, expires_at=soon)
    assert s["expires_at"] == soon
    assert ctx.anon.get(s["url"]).status_code == 200
    with ctx.db.cursor() as cur:
        cur.execute("UPDATE recording_sharing SET expires_at = now() - interval '1 second' WHERE id = %s", (s["id"],))
    assert_problem(ctx.anon.get(s["url"]), 403, "share_expired")


def test_revocation_is_immediate(ctx):
    link, for_user = share(ctx), share(ctx, user_id=ctx.u_sub)
    assert ctx.anon.get(link["url"]).status_code == 200
    assert ctx.user.get(ctx.rec).status_code == 200
    assert ctx.rid in [r["id"] for r in ctx.user.list_all()]
    for s in (link, for_user):
        r = ctx.owner.delete(f"{API}/shares/{s['id']}")
        assert r.status_code == 204, r.text
    assert_problem(ctx.anon.get(link["url"]), 403, "share_revoked")
    # The user knew of it through the share: told why, as on every other read (test_share_enforcement).
    assert_problem(ctx.user.get(ctx.rec), 403, "share_revoked")
    assert ctx.rid not in [r["id"] for r in ctx.user.list_all()]
    # Revoking again is harmless; the list keeps revoked shares.
    assert ctx.owner.delete(f"{API}/shares/{link['id']}").status_code == 204
    items = assert_json(ctx.owner.get(ctx.shares), 200)["items"]
    assert {i["id"] for i in items} == {link["id"], for_user["id"]}
    for i in items:
        check_share(i)
        assert is_ts(i["revoked_at"]), i


def test_user_share_token_needs_that_user(ctx, stack):
    s = share(ctx, user_id=ctx.u_sub, can_download=True)
    assert s["user_id"] == ctx.u_sub and s["can_download"] is True
    assert_problem(ctx.anon.get(s["url"]), 401, "unauthorized")
    other = Client(ctx.base_url, make_token(stack, unique("o"), "student"))
    assert_problem(other.get(s["url"]), 403, "forbidden")
    assert ctx.user.get(s["url"]).status_code == 200


def test_who_manages_shares(ctx, stack):
    s = share(ctx)
    ctx.owner.event_ok(ctx.rid, ctx.u_sub, "join")  # a participant may read, not manage
    assert_problem(ctx.user.post(ctx.shares, {}), 403, "forbidden")
    assert_problem(ctx.user.get(ctx.shares), 403, "forbidden")
    assert_problem(ctx.user.delete(f"{API}/shares/{s['id']}"), 403, "forbidden")
    stranger = Client(ctx.base_url, make_token(stack, unique("x"), "instructor"))
    assert_problem(stranger.get(ctx.shares), 404, "recording_not_found")
    assert_problem(stranger.delete(f"{API}/shares/{s['id']}"), 404, "share_not_found")
    assert_problem(ctx.owner.delete(f"{API}/shares/{uuid.uuid4()}"), 404, "share_not_found")
    assert_problem(ctx.owner.delete(f"{API}/shares/not-a-uuid"), 400, "invalid_uuid")
    assert ctx.admin.delete(f"{API}/shares/{s['id']}").status_code == 204


@pytest.mark.parametrize("body, status, code", [
    ({"expires_at": "2020-01-01T00:00:00Z"}, 422, "invalid_value"),
    ({"expires_at": "2030-02-30T00:00:00Z"}, 422, "invalid_value"),
    ({"expires_at": "tomorrow"}, 422, "invalid_value"),
    ({"expires_at": 5}, 400, "invalid_type"),
    ({"max_views": 0}, 422, "invalid_value"),
    ({"max_views": 1.5}, 400, "invalid_type"),
    ({"user_id": ""}, 422, "invalid_value"),
    ({"can_download": "yes"}, 400, "invalid_type"),
    ({"token": "mine"}, 400, "unknown_field"),
])
def test_invalid_share_requests(ctx, body, status, code):
    assert_problem(ctx.owner.post(ctx.shares, body), status, code)


def test_downloads_need_can_download(ctx):
    """ACCESS_DOWNLOAD (the download endpoint's check): a link opens downloads only with can_download."""
    plain, with_dl = share(ctx), share(ctx, can_download=True)
    r = ctx.anon.get(f"{ctx.rec}/download", params={"share": plain["token"]})
    assert_problem(r, 403, "forbidden")
    # Let in (the recording has no file yet, so the endpoint itself answers what is missing).
    r = ctx.anon.get(f"{ctx.rec}/download", params={"share": with_dl["token"]})
    assert r.status_code != 403 and r.json().get("code") != "recording_not_found", r.text
    listed = {i["id"]: i["views"] for i in assert_json(ctx.owner.get(ctx.shares), 200)["items"]}
    assert listed == {plain["id"]: 0, with_dl["id"]: 1}, listed
