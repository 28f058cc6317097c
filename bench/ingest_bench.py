#!/usr/bin/python3
"""bench/ingest_bench.py: playback progress ingest through nginx, with a ratio against a baseline measured in
the same run (machines here are shared and noisy, so absolute figures drift; ratios less so).

  ingest     64 concurrent clients (one keep-alive connection each) POST heartbeats to
             /api/v1/recordings/{id}/progress for 64 students of one recording, each client cycling over 400
             sessions of its own (25,600 viewers with ~10-s heartbeats), so no session is rate limited:
             events/s, p50/p99 latency, errors (anything but 204, 429 included).
  baseline   the same clients and connections on GET /health (nginx + FastCGI + one SELECT 1): the
             floor of a request through this web stack.

Usage: /usr/bin/python3 bench/ingest_bench.py [--clients N] [--seconds S] [--build DIR]
It starts the integration tests' stack (PostgreSQL, vtp-api under spawn-fcgi, nginx, Apache) in a temporary
folder, turns PostgreSQL's fsync and synchronous_commit back on (the tests run without them), and stops it
at the end. Targets (issue 7): >= 2000 events/s with p99 <= 50 ms and no errors.
"""

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import psycopg2  # noqa: E402

from helpers import make_token  # noqa: E402


def start_stack(build):
    """The integration tests' stack, with a durable PostgreSQL."""
    os.environ["VTP_BUILD_DIR"] = build
    from conftest import Stack
    stack = Stack()
    stack.start()
    conn = psycopg2.connect(stack.database_url)
    conn.autocommit = True
    conn.cursor().execute("ALTER SYSTEM SET fsync = on")
    conn.cursor().execute("ALTER SYSTEM SET synchronous_commit = on")
    conn.close()
    stack.pg_stop()
    stack.pg_start()
    return stack


def connect(url):
    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


class HttpClient:
    """One keep-alive HTTP/1.1 connection, raw: the load generator must not be the bottleneck."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.reader = self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method, path, headers=None, body=b""):
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        data = await self.reader.readexactly(length) if length else b""
        return status, data

    def close(self):
        if self.writer:
            self.writer.close()


async def run_load(base, clients, seconds, make_request):
    """clients coroutines, each on its own connection, call make_request(client, n) -> (method, path, headers,
    body, expected status) for seconds. Returns (requests/s, latencies in ms, errors, first error)."""
    latencies, errors, first_error = [], 0, [None]
    deadline = time.monotonic() + seconds

    async def one(i):
        nonlocal errors
        c = HttpClient(base)
        await c.open()
        n = 0
        try:
            while time.monotonic() < deadline:
                method, path, headers, body, expect = make_request(i, n)
                t0 = time.perf_counter()
                try:
                    status, data = await c.request(method, path, headers, body)
                except (asyncio.IncompleteReadError, ConnectionError):
                    # nginx closes a keep-alive connection after keepalive_requests (1000 by
                    # default): reconnect and send again, as a browser would.
                    c.close()
                    await c.open()
                    t0 = time.perf_counter()
                    status, data = await c.request(method, path, headers, body)
                latencies.append((time.perf_counter() - t0) * 1000)
                if status != expect:
                    errors += 1
                    first_error[0] = first_error[0] or f"{status} {data[:200]!r}"
                n += 1
        finally:
            c.close()

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(clients)))
    elapsed = time.monotonic() - t0
    return len(latencies) / elapsed, latencies, errors, first_error[0]


def setup_recording(stack, students, duration_s):
    """A ready recording of duration_s with `students` participants; returns (id, [tokens])."""
    db = connect(stack.database_url)
    with db.cursor() as cur:
        cur.execute("INSERT INTO recordings (title, room_id, owner_id, source_type, status, duration_s)"
                    " VALUES ('bench', 'bench', 'bench-owner', 'upload', 'ready', %s) RETURNING id::text",
                    (duration_s,))
        rid = cur.fetchone()[0]
        subs = [f"bench-student-{i}" for i in range(students)]
        cur.executemany("INSERT INTO recording_participants (recording_id, user_id) VALUES (%s, %s)",
                        [(rid, s) for s in subs])
    db.close()
    return rid, [make_token(stack, s, "student") for s in subs]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--sessions", type=int, default=400, help="sessions per client")
    ap.add_argument("--build", default="build")
    args = ap.parse_args()

    stack = start_stack(args.build)
    try:
        base = stack.frontends["nginx"]
        rid, tokens = setup_recording(stack, args.clients, 3600)
        path = f"/api/v1/recordings/{rid}/progress"

        def health(i, n):
            return "GET", "/health", {}, b"", 200

        def heartbeat(i, n):
            session, lap = n % args.sessions, n // args.sessions
            start = (lap * 10) % 3590
            body = json.dumps({"session_id": f"bench-{i:03d}-{session:05d}", "event": "heartbeat",
                               "position_s": start + 10, "from_s": start, "to_s": start + 10}).encode()
            return "POST", path, {"Authorization": "Bearer " + tokens[i], "Content-Type": "application/json"}, body, 204

        asyncio.run(run_load(base, args.clients, 2, health))  # warm up connections and processes
        base_rate, base_lat, base_err, _ = asyncio.run(run_load(base, args.clients, args.seconds, health))
        rate, lat, errors, first = asyncio.run(run_load(base, args.clients, args.seconds, heartbeat))
        db = connect(stack.database_url)
        with db.cursor() as cur:
            cur.execute("SELECT count(*), count(DISTINCT session_id) FROM playback_events WHERE recording_id = %s",
                        (rid,))
            stored, sessions = cur.fetchone()
        db.close()

        print(f"ingest through nginx, {args.clients} clients, {args.seconds:.0f} s, PostgreSQL with fsync on")
        print(f"  baseline GET /health:      {base_rate:8.0f} req/s   p50 {percentile(base_lat, 50):6.2f} ms"
              f"   p99 {percentile(base_lat, 99):6.2f} ms   errors {base_err}")
        print(f"  POST progress (heartbeat): {rate:8.0f} ev/s    p50 {percentile(lat, 50):6.2f} ms"
              f"   p99 {percentile(lat, 99):6.2f} ms   errors {errors}" + (f" (first: {first})" if first else ""))
        print(f"  ratio ingest / baseline:   {rate / base_rate:8.2f}x throughput,"
              f" {percentile(lat, 99) / percentile(base_lat, 99):.2f}x p99")
        print(f"  stored: {stored} events in {sessions} sessions")
        ok = rate >= 2000 and percentile(lat, 99) <= 50 and errors == 0 and stored == len(lat)
        print(f"  target >= 2000 ev/s, p99 <= 50 ms, 0 errors: {'met' if ok else 'NOT met'}")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
