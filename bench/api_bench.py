#!/usr/bin/python3
"""bench/api_bench.py: vtp-api's throughput and latency through nginx, measured with wrk at 32 connections, each
endpoint next to two baselines measured in the same run behind the same nginx:

  static   nginx sending a static file of the same size as the endpoint's answer (the web server's ceiling);
  minimal  bench/min_responder (built by `make bench`): a threaded libfcgi responder with as many threads as
           vtp-api, answering a fixed body of the same size without any work (the FastCGI floor).

Endpoints: GET /recordings/{id}, GET /recordings?limit=20 (20 recordings in the list), POST
/recordings/{id}/progress (a new playback session each request; a database write), and the authorised segment
path: the segment URI exactly as the media playlist gives it (behind nginx ...seg_00000.m4s?md5=…&expires=…, a
link nginx checks and answers itself), and for comparison the same segment with ?token= (vtp-api's token check,
then X-Accel-Redirect to the file: what Apache-less setups without the link secret, and Bearer players, use);
these two, the static file and the minimal responder alternate in rounds, each with the CPU time the stack's
processes spent per request. The stack
is the integration tests' (release build, PostgreSQL with fsync on); wrk runs on the same machine (2 threads).

--rss: vtp-api's resident memory after 1,000 requests and after 1,000,000 (a mix of the read endpoints,
a media playlist with its signed segment URIs; requests made with wrk), and their ratio.

--callgrind N: instead of wrk, vtp-api's instructions per request (valgrind --tool=callgrind; repeatable on
a loaded machine) for GET /recordings/{id} and the segment path: a vtp-api with one thread on its own socket
answers 1 and then 1 + N identical requests sent straight over FastCGI (as nginx would send them); the
difference of the two totals over N is the cost of one request, start-up and the first request excluded.

Each wrk figure of vtp-api and of the minimal responder also says the CPU time each part of the stack spent per
request (from /proc: vtp-api or the responder, nginx's workers, vtp-api's PostgreSQL backends; wrk not counted):
unlike req/s on a shared machine, it hardly depends on what else runs.

Usage: /usr/bin/python3 bench/api_bench.py [--seconds S] [--connections N] [--rss] [--rss-requests N]
[--callgrind N [--callgrind-keep DIR]] [--build DIR] [--only get,list,progress,segment] [--repeat N]
[--minimal-closes-at-once] (the baseline closes connections as vtp-api does: see fcgi/main.c). Targets (issue 9): GET /recordings/{id} >= 50 % of the minimal responder with p99 <= 10 ms;
segment path >= 80 % of static nginx; RSS after 1,000,000 requests within 10 % of RSS after 1,000.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import requests

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests" / "integration"))

from ingest_bench import connect, make_token, start_stack  # noqa: E402

WRK = shutil.which("wrk") or "/usr/bin/wrk"
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def wrk(url, seconds, connections, headers=(), script=None, env=None):
    """Runs wrk; returns {"rps", "p50", "p99" (ms), "requests", "errors"}."""
    cmd = [WRK, "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", str(BENCH / script)]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True,
                         env=dict(os.environ, **(env or {}))).stdout
    lat = {p: float(v) * UNITS[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)}
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": lat["50"], "p99": lat["99"],
            "requests": int(re.search(r"(\d+) requests in", out).group(1)), "errors": errors, "out": out}


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))


def cpu_seconds(pid):
    """User + system CPU time of a process (all its threads) so far, or 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def cpu_groups(stack, db, responder_pid):
    """The processes that answer a request, by part: vtp-api or the minimal responder, nginx's workers, and the
    PostgreSQL backends of vtp-api's connections."""
    master = int((stack.dir / "nginx" / "nginx.pid").read_text())
    workers = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    with db.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'vtp-api'")
        backends = [r[0] for r in cur.fetchall()]
    return {"responder": [responder_pid], "nginx": [int(w) for w in workers], "postgres": backends}


def cpu_per_request(stack, db, responder_pid, run_wrk):
    """Runs run_wrk() and returns (its result, {part: CPU microseconds per request}): what each part of the
    stack spent, which unlike req/s does not depend on what else the shared cores were doing."""
    groups = cpu_groups(stack, db, responder_pid)
    before = {k: sum(cpu_seconds(p) for p in v) for k, v in groups.items()}
    r = run_wrk()
    groups = dict(cpu_groups(stack, db, responder_pid), postgres=groups["postgres"])
    spent = {k: (sum(cpu_seconds(p) for p in groups[k]) - before[k]) * 1e6 / max(1, r["requests"]) for k in before}
    return r, spent


def as_vtp(stack, path):
    if os.geteuid() == 0:
        shutil.chown(path, "vtp", "vtp")


def prepare_recordings(stack, token, workdir):
    """Imports a 6 s 640x360 file and runs its jobs (probe, transcode, ...); adds 20 more recordings for the list.
    Returns (recording id, the segment's URL path with its query as the media playlist gives it, the segment
    file, the media playlist's URL path with its token)."""
    base = stack.frontends["nginx"]
    src = workdir / "source.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "testsrc2=size=640x360:rate=30:duration=6", "-f", "lavfi",
                    "-i", "sine=frequency=440:sample_rate=48000:duration=6", "-c:v", "libx264", "-preset", "veryfast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(src)], check=True)
    hdr = {"Authorization": f"Bearer {token}"}
    r = requests.post(f"{base}/api/v1/recordings?title=bench", data=src.read_bytes(),
                      headers=dict(hdr, **{"Content-Type": "video/mp4"}))
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    db = connect(stack.database_url)
    for _ in range(5):  # each step of the pipeline queues the next one
        subprocess.run([str(stack.build_dir / "vtp-worker"), "--until-idle", "--queues", "light,heavy"],
                       env=stack.env, check=True, capture_output=True, timeout=600)
        with db.cursor() as cur:
            cur.execute("SELECT kind, state, last_error FROM jobs WHERE recording_id = %s", (rid,))
            jobs = cur.fetchall()
        if ("transcode", "succeeded", None) in jobs:
            break
    db.close()
    assert ("transcode", "succeeded", None) in jobs, jobs
    for i in range(20):
        r = requests.post(f"{base}/api/v1/recordings/start", headers=hdr, json={
            "title": f"bench {i}", "room_id": f"bench-room-{i}",
            "source": {"type": "url", "url": f"rtmp://127.0.0.1/live/bench{i}"}})
        assert r.status_code == 201, r.text
    master = requests.get(f"{base}/api/v1/recordings/{rid}/stream/playlist.m3u8", headers=hdr)
    assert master.status_code == 200, master.text
    media_uri = next(l for l in master.text.splitlines() if l and not l.startswith("#"))
    media_url = urllib.parse.urljoin(master.url, media_uri)
    media = requests.get(media_url)
    assert media.status_code == 200, media.text
    seg_uri = next(l for l in media.text.splitlines() if l and not l.startswith("#"))
    seg_url = urllib.parse.urljoin(media.url, seg_uri)
    seg = requests.get(seg_url)
    assert seg.status_code == 200 and len(seg.content) > 10000, (seg.status_code, len(seg.content))
    parts = urllib.parse.urlsplit(seg_url)
    name = Path(parts.path).name
    files = sorted(Path(stack.storage_path, rid).rglob(name))
    assert files, name
    mparts = urllib.parse.urlsplit(media_url)
    return rid, parts.path + "?" + parts.query, files[0], mparts.path + "?" + mparts.query


def add_baselines(stack, build, bodies, close_at_once=False):
    """Serves each body (name -> bytes) as a static file at /bench-static/<name> and through the minimal
    responder at /bench-min?b=N (N from 1, in the order given; b=0 answers 204) from the stack's nginx."""
    folder = stack.dir / "bench"
    folder.mkdir(exist_ok=True)
    os.chmod(folder, 0o755)
    as_vtp(stack, folder)
    paths = []
    for name, data in bodies.items():
        p = folder / name
        p.write_bytes(data)
        os.chmod(p, 0o644)
        paths.append(str(p))
    responder = Path(build) / "bench" / "min_responder"
    if not responder.is_absolute():
        responder = BENCH.parent / responder
    shutil.copy2(responder, folder / "min_responder")
    sock = stack.dir / "run" / "min.sock"
    ids = ["-u", "vtp", "-g", "vtp", "-U", "vtp", "-G", "vtp"] if os.geteuid() == 0 else []
    threads = stack.env.get("VTP_API_THREADS", "4")
    env = dict(os.environ, MIN_RESPONDER_CLOSE_AT_ONCE="1") if close_at_once else None
    proc = subprocess.Popen(["spawn-fcgi", "-n", "-s", str(sock), "-M", "0660", *ids, "--",
                             str(folder / "min_responder"), threads, *paths],
                            stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    stack._stoppers.append(("min_responder", lambda: (proc.terminate(), proc.wait(10))))
    conf = stack.dir / "nginx" / "nginx.conf"
    text = conf.read_text()
    extra = (f"        location /bench-static/ {{ alias {folder}/; default_type application/json; }}\n"
             f"        location = /bench-min {{ include /etc/nginx/fastcgi_params; fastcgi_pass unix:{sock}; }}\n")
    cut = text.rstrip().rfind("}")
    cut = text.rstrip()[:cut].rstrip().rfind("}")  # the server block's end
    conf.write_text(text[:cut] + extra + "    " + text[cut:])
    prefix = stack.dir / "nginx"
    subprocess.run(["nginx", "-p", str(prefix), "-c", str(conf), "-s", "reload"], check=True)
    base = stack.frontends["nginx"]
    deadline = time.monotonic() + 20
    while True:  # the reload and the responder are both asynchronous
        try:
            if requests.get(f"{base}/bench-min?b=1").status_code == 200 and \
                    requests.get(f"{base}/bench-static/{next(iter(bodies))}").status_code == 200:
                return proc.pid
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "the baselines did not come up"
        time.sleep(0.1)


def line(name, r, size, ratios=""):
    print(f"  {name:34s} {r['rps']:9.0f} req/s  p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms  "
          f"{size:8d} B{ratios}{'  ERRORS ' + str(r['errors']) if r['errors'] else ''}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rss", action="store_true")
    ap.add_argument("--rss-requests", type=int, default=1_000_000)
    ap.add_argument("--callgrind", type=int, default=0)
    ap.add_argument("--callgrind-keep", metavar="DIR", help="copy callgrind's output files there")
    ap.add_argument("--build", default="build")
    ap.add_argument("--only", metavar="NAMES", default="",
                    help="comma-separated endpoints to run with wrk: get, list, progress, segment (default: all)")
    ap.add_argument("--perf", metavar="DIR", help="record `perf record -a -g` of the whole machine during each "
                    "vtp-api wrk run into DIR/<endpoint>.<n>.perf.data (for perf report --sort comm,dso,sym)")
    ap.add_argument("--repeat", type=int, default=1, help="measure each endpoint and its baselines this many times")
    ap.add_argument("--minimal-closes-at-once", action="store_true",
                    help="the minimal responder closes each connection as vtp-api does (FCGX_Detach when its "
                         "stdin was read to the end) instead of libfcgi's lingering close")
    args = ap.parse_args()
    stack = start_stack(args.build)
    try:
        run(stack, args)
    finally:
        stack.stop()


def fcgi_record(kind, content):
    return struct.pack(">BBHHBx", 1, kind, 1, len(content), 0) + content


def fcgi_pair(name, value):
    n, v = name.encode(), value.encode()
    size = lambda b: bytes([len(b)]) if len(b) < 128 else struct.pack(">I", len(b) | 0x80000000)  # noqa: E731
    return size(n) + size(v) + n + v


def fcgi_get(sock_path, path, query, authorization):
    """One GET over FastCGI with the parameters nginx's fastcgi_params gives; returns the answer's head."""
    params = {"REQUEST_METHOD": "GET", "QUERY_STRING": query, "CONTENT_TYPE": "", "CONTENT_LENGTH": "",
              "SCRIPT_NAME": path, "REQUEST_URI": path + ("?" + query if query else ""), "DOCUMENT_URI": path,
              "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1", "REMOTE_ADDR": "127.0.0.1",
              "REMOTE_PORT": "40000", "SERVER_ADDR": "127.0.0.1", "SERVER_PORT": "80", "SERVER_NAME": "localhost",
              "HTTP_HOST": "127.0.0.1", "HTTP_USER_AGENT": "callgrind", "VTP_X_ACCEL_REDIRECT": "/_vtp_storage/"}
    if authorization:
        params["HTTP_AUTHORIZATION"] = authorization
    body = b"".join(fcgi_pair(k, v) for k, v in params.items())
    msg = (fcgi_record(1, struct.pack(">HB5x", 1, 0)) + fcgi_record(4, body) + fcgi_record(4, b"")
           + fcgi_record(5, b""))
    out = b""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(sock_path))
        s.sendall(msg)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    while len(data) >= 8:  # keep the FCGI_STDOUT records' content
        _, kind, _, clen, plen = struct.unpack(">BBHHB", data[:7])
        if kind == 6:
            out += data[8:8 + clen]
        data = data[8 + clen + plen:]
    return out.split(b"\r\n\r\n", 1)[0].decode(errors="replace")


def callgrind_total(stack, n, path, query, authorization, keep):
    """Instructions vtp-api (one thread, under callgrind) executes from start to exit answering n requests."""
    folder = stack.dir / "callgrind"
    folder.mkdir(exist_ok=True)
    os.chmod(folder, 0o777)
    sock = folder / "api.sock"
    out = folder / f"callgrind.{n}.{os.getpid()}.{time.monotonic_ns()}"
    ids = ["-u", "vtp", "-g", "vtp", "-U", "vtp", "-G", "vtp"] if os.geteuid() == 0 else []
    env = dict(os.environ, MIN_RESPONDER_CLOSE_AT_ONCE="1") if close_at_once else None
    proc = subprocess.Popen(["spawn-fcgi", "-n", "-s", str(sock), "-M", "0660", *ids, "--", "/usr/bin/valgrind",
                             "--tool=callgrind", f"--callgrind-out-file={out}", str(stack.bin_dir / "vtp-api")],
                            env=dict(stack.env, VTP_API_THREADS="1"), cwd=stack.dir, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:  # valgrind starts slowly; the first answer says vtp-api is serving
            try:
                head = fcgi_get(sock, path, query, authorization)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "vtp-api under valgrind did not start"
                time.sleep(0.2)
        assert head.startswith("Status: 200") or "X-Accel-Redirect" in head, head
        for _ in range(n - 1):
            again = fcgi_get(sock, path, query, authorization)
            assert again.split("\r\n")[0] == head.split("\r\n")[0], again
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    if keep:  # for callgrind_annotate
        shutil.copy2(out, Path(keep) / out.name)
    totals = re.search(r"^(?:summary|totals):\s+(\d+)", out.read_text(), re.M)
    return int(totals.group(1))


def callgrind(stack, args, rid, seg_path, token):
    """seg_path: a segment's URL path with a ?token= (vtp-api's side of the segment path)."""
    n = args.callgrind
    print(f"api bench --callgrind: vtp-api instructions per request (release build, 1 thread), from runs of 1 and "
          f"{1 + n} requests; load average: {os.getloadavg()[0]:.2f}")
    seg = urllib.parse.urlsplit(seg_path)
    for name, path, query, authorization in (
            ("GET /recordings/{id}", f"/api/v1/recordings/{rid}", "", f"Bearer {token}"),
            ("GET segment (?token=)", seg.path, seg.query, None)):
        one = callgrind_total(stack, 1, path, query, authorization, args.callgrind_keep)
        many = callgrind_total(stack, 1 + n, path, query, authorization, args.callgrind_keep)
        print(f"  {name:34s} {(many - one) / n:10.0f} instructions/request  (totals {one} and {many})")


def run(stack, args):
    base = stack.frontends["nginx"]
    token = make_token(stack, "bench-owner", "instructor")
    auth = f"Authorization: Bearer {token}"
    hdr = {"Authorization": f"Bearer {token}"}
    rid, seg_path, seg_file, media_path = prepare_recordings(stack, token, stack.dir)
    # The same segment with the media playlist's ?token= instead of nginx's link: vtp-api checks it.
    seg_token_path = seg_path.split("?")[0] + "?" + urllib.parse.urlsplit(media_path).query
    db = connect(stack.database_url)
    db.cursor().execute("UPDATE recordings SET status = 'ready' WHERE id = %s", (rid,))
    if args.callgrind:
        callgrind(stack, args, rid, seg_token_path, token)
        return
    get_body = requests.get(f"{base}/api/v1/recordings/{rid}", headers=hdr).content
    list_body = requests.get(f"{base}/api/v1/recordings?limit=20", headers=hdr).content
    assert len(requests.get(f"{base}/api/v1/recordings?limit=20", headers=hdr).json()["items"]) == 20
    bodies = {"get.json": get_body, "list.json": list_body, "segment.bin": seg_file.read_bytes(), "empty": b""}
    min_pid = add_baselines(stack, args.build, bodies, args.minimal_closes_at_once)
    cases = [  # short name, name, API URL, wrk options, body name, b= of the minimal responder
        ("get", "GET /recordings/{id}", f"{base}/api/v1/recordings/{rid}", {"headers": [auth]}, "get.json", 1),
        ("list", "GET /recordings?limit=20", f"{base}/api/v1/recordings?limit=20", {"headers": [auth]}, "list.json", 2),
        ("progress", "POST /recordings/{id}/progress", f"{base}/api/v1/recordings/{rid}/progress",
         {"headers": [auth], "script": "progress.lua"}, "empty", 0),
    ]
    print(f"api bench: nginx -> vtp-api ({stack.env.get('VTP_API_THREADS', '4')} threads), wrk -t2 "
          f"-c{args.connections}, {args.seconds} s per figure; load average before: {os.getloadavg()[0]:.2f}")
    only = [o for o in args.only.split(",") if o]
    names = [c[0] for c in cases] + ["segment"]
    assert all(o in names for o in only), f"--only takes {', '.join(names)}"
    figures = {}
    runs = [c[1:] for c in cases if not only or c[0] in only for _ in range(args.repeat)]
    for n, (name, url, opts, body, b) in enumerate(runs):
        if args.repeat > 1:
            print(f"(load average {os.getloadavg()[0]:.2f})")
        perf = None
        if args.perf:
            short = next(c[0] for c in cases if c[1] == name)
            perf = subprocess.Popen(["perf", "record", "-a", "-g", "-q", "-o",
                                     str(Path(args.perf).resolve() / f"{short}.{n}.perf.data"),
                                     "--", "sleep", str(max(1, args.seconds - 2))],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        api, api_cpu = cpu_per_request(stack, db, stack.api_proc.pid,
                                       lambda: wrk(url, args.seconds, args.connections, **opts))
        if perf:
            perf.wait(60)
        static = wrk(f"{base}/bench-static/{body}", args.seconds, args.connections)
        minimal_opts = {"script": "progress.lua"} if b == 0 else {}
        minimal, min_cpu = cpu_per_request(stack, db, min_pid, lambda: wrk(
            f"{base}/bench-min?b={b}", args.seconds, args.connections, **minimal_opts))
        size = len(bodies[body])
        print(name)
        line("vtp-api", api, size, f"  = {api['rps'] / minimal['rps']:.2f} x minimal, "
                                   f"{api['rps'] / static['rps']:.2f} x static")
        line("baseline: minimal libfcgi responder", minimal, size)
        line("baseline: static file from nginx", static, size)
        print(f"  CPU us per request: vtp-api {api_cpu['responder']:.1f} + nginx {api_cpu['nginx']:.1f} + "
              f"PostgreSQL {api_cpu['postgres']:.1f} = {sum(api_cpu.values()):.1f}; minimal responder "
              f"{min_cpu['responder']:.1f} + nginx {min_cpu['nginx']:.1f} = {sum(min_cpu.values()):.1f}; "
              f"ratio {sum(min_cpu.values()) / max(0.1, sum(api_cpu.values())):.2f} (wrk not counted)")
        figures[name] = (api, minimal, static)
    seg_ratio = None
    if not only or "segment" in only:  # nginx's link, ?token= and the baselines alternated (segment_path)
        seg_ratio = segment_path(stack, args, base, seg_path, seg_token_path, len(bodies["segment.bin"]))
    print("targets (the last run of each):")
    if "GET /recordings/{id}" in figures:
        get_api, get_min, _ = figures["GET /recordings/{id}"]
        print(f"  GET /recordings/{{id}} >= 0.50 x minimal: {get_api['rps'] / get_min['rps']:.2f}  "
              f"p99 <= 10 ms: {get_api['p99']:.2f} ms")
    if seg_ratio is not None:
        print(f"  segment path >= 0.80 x static: {seg_ratio:.2f}")
    db.close()
    if args.rss:
        rss(stack, args, base, rid, media_path, auth, hdr)


def stack_cpu_s(stack):
    """CPU seconds (user + system) the stack's processes have used so far, by program: {"nginx": s,
    "vtp-api": s, "postgres": s, "min_responder": s, ...}."""
    from conftest import _processes_under
    cpu = {}
    for pid in _processes_under(str(stack.dir) + "/"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                comm, rest = f.read().split(" (", 1)[1].rsplit(")", 1)
            fields = rest.split()
            cpu[comm] = cpu.get(comm, 0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass  # gone meanwhile
    return cpu


def segment_path(stack, args, base, link_path, token_path, size):
    """The authorised segment path: the URI exactly as the media playlist gives it (behind nginx a link that
    nginx checks), and the same segment with ?token= (vtp-api checks it), next to the static file and the
    minimal responder. The four alternate over ROUNDS rounds of half the figure time each, so that the
    other sessions' load drifts over all alike; req/s are over all rounds, the ratio is the median of the
    rounds' ratios. Also the CPU time nginx, vtp-api and PostgreSQL spent per request (medians; the other
    sessions' load moves it much less than req/s, though PostgreSQL's includes its background work).
    Returns the link's ratio to static."""
    rounds, seconds = 3, max(2, args.seconds // 2)
    urls = {"link": base + link_path, "token": base + token_path, "static": f"{base}/bench-static/segment.bin",
            "minimal": f"{base}/bench-min?b=3"}
    runs = {k: [] for k in urls}
    for _ in range(rounds):
        for k, url in urls.items():
            before = stack_cpu_s(stack)
            r = wrk(url, seconds, args.connections)
            after = stack_cpu_s(stack)
            for prog in ("nginx", "vtp-api", "postgres"):
                r[prog] = (after.get(prog, 0) - before.get(prog, 0)) / max(1, r["requests"]) * 1e6
            runs[k].append(r)

    def median(k, key):
        return sorted(r[key] for r in runs[k])[rounds // 2]

    def total(k):
        return {"rps": sum(r["requests"] for r in runs[k]) / (seconds * rounds), "p50": median(k, "p50"),
                "p99": median(k, "p99"), "errors": sum(r["errors"] for r in runs[k]),
                "cpu": " + ".join(f"{prog} {median(k, prog):.0f}" for prog in ("nginx", "vtp-api", "postgres"))}

    def ratio(k, base_k):
        return sorted(a["rps"] / b["rps"] for a, b in zip(runs[k], runs[base_k]))[rounds // 2]

    figures = {k: total(k) for k in urls}
    print(f"GET segment ({rounds} alternated rounds of {seconds} s; load average now {os.getloadavg()[0]:.2f})")
    for k, label in (("link", "as the playlist gives it (nginx link)"), ("token", "with ?token= (vtp-api)"),
                     ("minimal", "baseline: minimal libfcgi responder"),
                     ("static", "baseline: static file from nginx")):
        extra = f"  = {ratio(k, 'minimal'):.2f} x minimal, {ratio(k, 'static'):.2f} x static" \
            if k in ("link", "token") else ""
        line(label, figures[k], size, f"{extra}  CPU us/request: {figures[k]['cpu']}")
    return ratio("link", "static")


def rss(stack, args, base, rid, media_path, auth, hdr):
    pid = stack.api_proc.pid
    # Read endpoints that vtp-api answers itself (a segment's bytes would only load wrk and nginx); the
    # media playlist signs a token per segment.
    paths = (f"/api/v1/recordings/{rid} /api/v1/recordings?limit=20 /api/v1/recordings/{rid}/progress "
             f"/api/v1/recordings/{rid}/participants {media_path}")
    s = requests.Session()
    urls = [base + p for p in paths.split()]
    for i in range(1000):
        r = s.get(urls[i % len(urls)], headers=hdr)
        assert r.status_code == 200, r.text
    first = rss_kib(pid)
    done, started = 1000, time.monotonic()
    while done < args.rss_requests:
        r = wrk(base + "/", 30, args.connections, headers=[auth], script="paths.lua", env={"WRK_PATHS": paths})
        assert r["errors"] == 0, r["out"]
        done += r["requests"]
    last = rss_kib(pid)
    print(f"RSS of vtp-api (pid {pid}): {first} KiB after 1,000 requests, {last} KiB after {done:,} "
          f"({time.monotonic() - started:.0f} s of wrk): ratio {last / first:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
