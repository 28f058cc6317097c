#!/usr/bin/python3
"""bench/queue_bench.py: the job queue's speed on this machine, with ratios against baselines measured
in the same run (machines here are shared and noisy, so absolute figures drift; ratios less so).

  pickup latency   commit of an INSERT -> the job's claim (started_at), idle worker, p50/p99;
                   baseline: the delivery time of a bare NOTIFY between two connections.
  throughput       no-op jobs claimed and completed one at a time, 1 and 4 workers;
                   baseline: single-row UPDATEs per second from one connection.
  open snapshot    the same throughput, batch after batch, while another session holds one snapshot
                   open for 60 s (the case that makes naive queues crawl), as a ratio to without.

Usage: /usr/bin/python3 bench/queue_bench.py [--jobs N] [--samples N] [--snapshot-seconds S] [--build DIR]
It starts a throwaway PostgreSQL cluster (default settings: fsync on) and stops it at the end.
Targets (issue 3): pickup p50 <= 2 ms, p99 <= 10 ms; >= 2000 jobs/s; open snapshot within 20 %.
"""

import argparse
import os
import pwd
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

REPO = Path(__file__).resolve().parents[1]
PGBIN = Path("/usr/lib/postgresql/15/bin")


class Cluster:
    """A PostgreSQL cluster in a temporary folder, owned by `vtp` when run as root."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="vtp-bench-"))
        self.user = "vtp" if os.geteuid() == 0 else None
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.data, self.sock = self.dir / "data", self.dir
        self.url = f"postgresql:///vtp?host={self.sock}&port=5432&user=vtp"

    def _run(self, *cmd):
        if self.user:
            cmd = ("setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--init-groups", "--", *cmd)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self):
        self._run(str(PGBIN / "initdb"), "-D", str(self.data), "-U", "vtp", "-A", "trust", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"listen_addresses = ''\nunix_socket_directories = '{self.sock}'\nmax_connections = 50\n")
        self._run(str(PGBIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "start")
        self._run(str(PGBIN / "createdb"), "-h", str(self.sock), "-U", "vtp", "vtp")

    def stop(self):
        try:
            self._run(str(PGBIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def connect(url):
    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def notify_baseline(url, samples):
    """Milliseconds from a NOTIFY's commit to its delivery on a LISTENing connection."""
    listener, sender = connect(url), connect(url)
    listener.cursor().execute("LISTEN bench")
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        sender.cursor().execute("NOTIFY bench")
        while not listener.notifies:
            select.select([listener], [], [], 1.0)
            listener.poll()
        times.append((time.perf_counter() - start) * 1000)
        listener.notifies.clear()
    return times


def update_baseline(url, n):
    """Single-row UPDATEs per second from one connection (autocommit, as the worker)."""
    conn = connect(url)
    cur = conn.cursor()
    cur.execute("SET synchronous_commit = off")
    cur.execute("CREATE TEMP TABLE t (id int PRIMARY KEY, v int) WITH (fillfactor = 80)")
    cur.execute("INSERT INTO t VALUES (1, 0)")
    start = time.perf_counter()
    for _ in range(n):
        cur.execute("UPDATE t SET v = v + 1 WHERE id = 1")
    return n / (time.perf_counter() - start)


def start_worker(build, url, queue, *args):
    env = dict(os.environ, DATABASE_URL=url, JWT_SECRET="x" * 32, VTP_LOG_LEVEL="warn")
    return subprocess.Popen([str(build / "vtp-worker"), "--queues", f"{queue}:1", *args], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def pickup(url, build, samples):
    """Latencies (ms) from an INSERT's commit to the claim, one job at a time, idle worker."""
    worker = start_worker(build, url, "pickup")
    conn = connect(url)
    cur = conn.cursor()
    try:
        time.sleep(1.0)  # the worker connects and goes idle; what is measured starts from idle
        latencies = []
        for _ in range(samples):
            cur.execute("INSERT INTO jobs (kind, queue) VALUES ('noop', 'pickup') RETURNING id")
            job_id = cur.fetchone()[0]
            committed = time.time()
            while True:
                cur.execute("SELECT extract(epoch FROM started_at) FROM jobs WHERE id = %s AND state = 'succeeded'",
                            (job_id,))
                row = cur.fetchone()
                if row:
                    break
                time.sleep(0.0005)
            latencies.append((float(row[0]) - committed) * 1000)
            time.sleep(0.01)  # back to idle
        return latencies
    finally:
        worker.terminate()
        worker.wait()


def throughput(url, build, jobs, workers, queue):
    """Jobs per second: `jobs` no-op jobs, `workers` workers claiming one job at a time."""
    conn = connect(url)
    cur = conn.cursor()
    cur.execute("INSERT INTO jobs (kind, queue) SELECT 'noop', %s FROM generate_series(1, %s)", (queue, jobs))
    start = time.perf_counter()
    procs = [start_worker(build, url, queue, "--until-idle") for _ in range(workers)]
    for p in procs:
        p.wait()
    elapsed = time.perf_counter() - start
    cur.execute("SELECT count(*) FROM jobs WHERE queue = %s AND state = 'succeeded'", (queue,))
    done = cur.fetchone()[0]
    if done != jobs:
        sys.exit(f"only {done} of {jobs} jobs succeeded in queue {queue}")
    return jobs / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--build", default=str(REPO / "build"))
    parser.add_argument("--snapshot-seconds", type=float, default=60)
    args = parser.parse_args()
    build = Path(args.build)
    cluster = Cluster()
    cluster.start()
    try:
        env = dict(os.environ, DATABASE_URL=cluster.url)
        subprocess.run([str(build / "vtp-migrate")], env=env, check=True, stdout=subprocess.DEVNULL)
        url = cluster.url

        base = notify_baseline(url, args.samples)
        lat = pickup(url, build, args.samples)
        print(f"pickup latency    p50 {percentile(lat, 50):6.2f} ms   p99 {percentile(lat, 99):6.2f} ms"
              f"   (bare NOTIFY p50 {percentile(base, 50):.2f} ms: ratio {percentile(lat, 50) / percentile(base, 50):.1f}x)"
              f"   target p50 <= 2 ms, p99 <= 10 ms")

        updates = update_baseline(url, 20000)
        one = throughput(url, build, args.jobs, 1, "tp1")
        four = throughput(url, build, args.jobs, 4, "tp4")
        print(f"throughput        1 worker {one:7.0f} jobs/s   4 workers {four:7.0f} jobs/s"
              f"   (single-row UPDATEs {updates:.0f}/s: ratios {one / updates:.2f}, {four / updates:.2f})"
              f"   target >= 2000 jobs/s")

        # Batches of jobs run back to back while one snapshot stays open for at
        # least --snapshot-seconds; the last batch meets the most dead rows.
        holder = connect(url)
        holder.autocommit = False
        hcur = holder.cursor()
        hcur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        hcur.execute("SELECT count(*) FROM jobs")  # takes the snapshot and keeps it
        rates, opened, batch = [], time.perf_counter(), 0
        try:
            while time.perf_counter() - opened < args.snapshot_seconds or not rates:
                rates.append(throughput(url, build, args.jobs, 1, f"snap{batch}"))
                batch += 1
        finally:
            held_for = time.perf_counter() - opened
            holder.rollback()
        print(f"open snapshot     1 worker {rates[-1]:7.0f} jobs/s in the last of {len(rates)} batches"
              f" (slowest {min(rates):.0f}) with one snapshot open for {held_for:.0f} s"
              f"   ratio to without {rates[-1] / one:.2f} (slowest {min(rates) / one:.2f})   target >= 0.80")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
