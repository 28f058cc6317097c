#!/usr/bin/python3
"""bench/analytics_bench.py: GET /api/v1/recordings/{id}/analytics through nginx for one recording with
10,000 playback sessions and 1,000,000 raw events, with ratios against baselines measured in the same run.

  analytics   the owner's GET .../analytics, one request at a time: p50/p95/p99.
  by=user     GET .../analytics?by=user (2,000 students merged with live attendance), the same.
  baseline    GET /api/v1/recordings/{id} on the same recording and connection (token check, access check,
              one query): the floor of an authenticated read through this web stack.

The data is made with SQL in the shape that vtp_progress_apply() leaves (sessions with merged ranges and
5-s buckets, per-viewer unions, sharded bucket counters, raw events), from a fixed random seed: 2,000
students with 5 sessions each over 30 days, each session 1 to 3 watched ranges of a 1-hour recording,
100 events per session. Usage: /usr/bin/python3 bench/analytics_bench.py [--requests N] [--build DIR].
Target (issue 7): analytics p95 <= 50 ms at this size.
"""

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_bench import HttpClient, connect, make_token, percentile, start_stack  # noqa: E402

SEED_SQL = """
SELECT setseed(0.42);
CREATE TEMP TABLE s AS
SELECT i, 'bench-session-' || i AS session_id, 'student-' || (i %% 2000) AS user_id,
       now() - random() * interval '30 days' AS started_at,
       1 + floor(random() * 3)::int AS n, random() AS r1, random() AS r2, random() AS r3, random() AS r4,
       random() AS r5, random() AS r6, CASE WHEN random() < 0.2 THEN 2 ELSE 1 END AS rate
  FROM generate_series(1, 10000) i;
CREATE TEMP TABLE sr AS
SELECT s.*, (SELECT range_agg(numrange(round(a::numeric, 3), round(LEAST(3600, a + len)::numeric, 3)))
               FROM (VALUES (r1 * 3600, r2 * 1800, 1), (r3 * 3600, r4 * 600, 2), (r5 * 3600, r6 * 300, 3)) v(a, len, k)
              WHERE k <= n) AS ranges
  FROM s;
INSERT INTO playback_sessions (recording_id, session_id, user_id, started_at, last_event_at, events, position_s,
                               ranges, buckets, watched_s, watch_time_s, ended)
SELECT %(rid)s, session_id, user_id, started_at, started_at + interval '1 hour', 100,
       upper(ranges)::double precision, ranges,
       (SELECT range_agg(int4range(floor(lower(x) / 5)::int, ceil(upper(x) / 5)::int)) FROM unnest(ranges) x),
       vtp_ranges_length(ranges), vtp_ranges_length(ranges) / rate, false
  FROM sr;
INSERT INTO playback_buckets (recording_id, bucket, shard, viewers)
SELECT %(rid)s, k, abs(hashtext(session_id)) %% 16, count(*)
  FROM playback_sessions p, unnest(p.buckets) b, generate_series(lower(b), upper(b) - 1) k
 WHERE p.recording_id = %(rid)s GROUP BY 2, 3;
INSERT INTO playback_viewers (recording_id, user_id, ranges, watched_s, watch_time_s, position_s, sessions,
                              first_at, last_at)
SELECT %(rid)s, user_id, range_agg(ranges), vtp_ranges_length(range_agg(ranges)), sum(watch_time_s),
       max(position_s), count(*), min(started_at), max(started_at)
  FROM playback_sessions WHERE recording_id = %(rid)s GROUP BY user_id;
INSERT INTO recording_participants (recording_id, user_id, display_name, total_s)
SELECT %(rid)s, 'student-' || i, 'Student ' || i, random() * 3600 FROM generate_series(0, 1999, 2) i;
INSERT INTO playback_events (recording_id, session_id, user_id, event, position_s, from_s, to_s, at)
SELECT %(rid)s, 'bench-session-' || (1 + i %% 10000), 'student-' || ((1 + i %% 10000) %% 2000), 'heartbeat',
       (i / 10000) * 10 + 10, (i / 10000) * 10, (i / 10000) * 10 + 10, now() - (i %% 2592000) * interval '1 second'
  FROM generate_series(0, 999999) i;
ANALYZE playback_sessions; ANALYZE playback_buckets; ANALYZE playback_viewers; ANALYZE playback_events;
"""


async def measure(base, path, headers, n):
    c = HttpClient(base)
    await c.open()
    lat = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            try:
                status, body = await c.request("GET", path, headers)
            except (asyncio.IncompleteReadError, ConnectionError):
                c.close()
                await c.open()
                t0 = time.perf_counter()
                status, body = await c.request("GET", path, headers)
            lat.append((time.perf_counter() - t0) * 1000)
            assert status == 200, (status, body[:300])
    finally:
        c.close()
    return lat, body


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--build", default="build")
    args = ap.parse_args()

    stack = start_stack(args.build)
    try:
        db = connect(stack.database_url)
        with db.cursor() as cur:
            cur.execute("INSERT INTO recordings (title, room_id, owner_id, source_type, status, duration_s)"
                        " VALUES ('bench', 'bench', 'bench-owner', 'upload', 'ready', 3600) RETURNING id::text")
            rid = cur.fetchone()[0]
            t0 = time.monotonic()
            cur.execute(SEED_SQL, {"rid": rid})
            cur.execute("SELECT (SELECT count(*) FROM playback_sessions WHERE recording_id = %(rid)s),"
                        " (SELECT count(*) FROM playback_events WHERE recording_id = %(rid)s),"
                        " (SELECT count(*) FROM playback_viewers WHERE recording_id = %(rid)s)", {"rid": rid})
            sessions, events, viewers = cur.fetchone()
            seeded = time.monotonic() - t0
        db.close()
        base = stack.frontends["nginx"]
        headers = {"Authorization": "Bearer " + make_token(stack, "bench-owner", "instructor")}
        rec = f"/api/v1/recordings/{rid}"

        asyncio.run(measure(base, rec + "/analytics", headers, 10))  # warm up caches and the connection
        base_lat, _ = asyncio.run(measure(base, rec, headers, args.requests))
        lat, body = asyncio.run(measure(base, rec + "/analytics", headers, args.requests))
        user_lat, _ = asyncio.run(measure(base, rec + "/analytics?by=user", headers, args.requests // 4))

        print(f"analytics of one recording: {sessions} sessions, {events} raw events, {viewers} viewers"
              f" (seeded in {seeded:.1f} s); {args.requests} requests through nginx, one at a time")
        for name, values in (("baseline GET recording", base_lat), ("GET analytics", lat),
                             ("GET analytics?by=user", user_lat)):
            print(f"  {name:24s} p50 {percentile(values, 50):7.2f} ms   p95 {percentile(values, 95):7.2f} ms"
                  f"   p99 {percentile(values, 99):7.2f} ms   ratio p95 {percentile(values, 95) / percentile(base_lat, 95):5.2f}x")
        print(f"  answer: {len(body)} bytes")
        print(f"  target analytics p95 <= 50 ms: {'met' if percentile(lat, 95) <= 50 else 'NOT met'}")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
