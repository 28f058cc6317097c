"""Integration test harness: one private VTP stack per pytest session.

Run from the repository root (as root in CI, or as a normal user):
    /usr/bin/python3 -m pytest tests/integration
Environment:
    VTP_BUILD_DIR   where the binaries come from (default: build; `make
                    integration` passes build/asan)
    VTP_TEST_KEEP=1 keep the temporary folder (logs, configs) after the run

The first test that asks for `stack` starts, in a fresh folder
/tmp/vtp-test-XXXX (removed at the end), on free loopback ports:
  - a PostgreSQL 15 cluster (Unix socket only; owned by the `vtp` user when
    running as root, by the caller otherwise), database `vtp`;
  - build/vtp-migrate against it;
  - vtp-api under spawn-fcgi on a Unix socket, configured by environment;
  - nginx from deploy/nginx-vtp.conf.in          -> frontend "nginx";
  - Apache + mod_proxy_fcgi from apache-vtp.conf  -> frontend "apache_proxy";
  - Apache + mod_fcgid as on shared hosting       -> frontend "apache_fcgid":
    deploy/apache-fcgid-host.conf serves a customer folder holding vtp.fcgi
    (a copy of vtp-api), vtp.conf (database_url, jwt_secret, storage_path:
    its only configuration, Apache runs with an empty environment) and
    .htaccess (a copy of deploy/htaccess.example).
Both Apache setups are separate instances rendered from
deploy/apache-test.conf.in. All services run as `vtp` when root. Everything
is stopped at session end, also after failures; leftover processes whose
command line names the temporary folder are killed.

Fixtures:
  stack      (session) attributes:
               database_url, jwt_secret, storage_path (str)
               segment_link_secret (str: nginx's secret for segment links)
               build_dir (Path: the binaries under test)
               frontends (dict name -> base URL "http://127.0.0.1:PORT")
               env (dict: environment for running the binaries)
               dir (Path: the temporary folder), logs (dict name -> Path)
             methods:
               run(binary, *args, input=None, timeout=60, check=False)
                   -> subprocess.CompletedProcess (text, captured output)
               pg_stop()  stop PostgreSQL (fast shutdown)
               pg_start() start it again; returns once it accepts connections
               log_tail(name, lines=40) -> str
  base_url   parametrized over "nginx", "apache_proxy", "apache_fcgid" (test
             ids show the frontend); the base URL without trailing slash
  token      token(sub, role, ttl=3600, name=None) -> JWT signed by vtp-token
  db         psycopg2 connection to the test database, autocommit,
             closed after each test

A failing test that used `stack` gets the tails of the service logs in its
report.
"""

import getpass
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import psycopg2
import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
PGBIN = Path("/usr/lib/postgresql/15/bin")
NGINX = "/usr/sbin/nginx"
APACHE = "/usr/sbin/apache2"
SPAWN_FCGI = "/usr/bin/spawn-fcgi"
IS_ROOT = os.geteuid() == 0
SVC_USER = "vtp" if IS_ROOT else getpass.getuser()
PROGRAMS = ("vtp-api", "vtp-migrate", "vtp-worker", "vtp-token")
START_TIMEOUT = 60.0
FRONTENDS = ("nginx", "apache_proxy", "apache_fcgid")


class StackError(RuntimeError):
    """A service of the test stack failed to start or stop."""


def _tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            data = f.read()[-64 * 1024:]
    except OSError:
        return f"({path}: no log)"
    text = data.decode("utf-8", "replace").splitlines()[-lines:]
    return "\n".join(text) if text else f"({path}: empty)"


def _poll(what, check, timeout=START_TIMEOUT, interval=0.05, logs=()):
    """Call check() until it returns a true value; raise with log tails after timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            result = check()
            if result:
                return result
        except StackError:
            raise
        except Exception as exc:  # noqa: BLE001 - any other failure means "not yet"
            last_exc = exc
        if time.monotonic() > deadline:
            msg = [f"timed out after {timeout:.0f}s waiting for {what}"]
            if last_exc is not None:
                msg.append(f"last error: {last_exc!r}")
            for log in logs:
                msg.append(f"----- last lines of {log} -----\n{_tail(log)}")
            raise StackError("\n".join(msg))
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)


def _free_ports(n):
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _render(template, dest, values):
    text = Path(template).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    Path(dest).write_text(text)


def _pid_alive(pid):
    """True for a live, non-zombie process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _read_pid(path):
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _wait_gone(pid, timeout=20.0):
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _processes_under(marker):
    """PIDs whose command line or executable names `marker`, plus their descendants."""
    me = os.getpid()
    parent = {}
    matched = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat") as f:
                parent[pid] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except (OSError, IndexError, ValueError):
            continue
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = ""
        if pid != me and (marker in cmdline or exe.startswith(marker)):
            matched.add(pid)
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in matched and pid not in matched and pid != me:
                matched.add(pid)
                grew = True
    return {pid for pid in matched if _pid_alive(pid)}


def _kill_processes_under(marker, grace=10.0):
    """SIGTERM, then SIGKILL, every process that names `marker`; returns their pids."""
    left = _processes_under(marker)
    for pid in left:
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_pid_alive(p) for p in left):
        time.sleep(0.05)
    for pid in left:
        if _pid_alive(pid):
            _kill(pid, signal.SIGKILL)
    return left


def _reap_stale_stacks():
    """Stop and remove stacks left by a test session that was killed (SIGKILL
    skips every finalizer): /tmp/vtp-test-*/owner.pid names a dead process."""
    for owner in Path("/tmp").glob("vtp-test-*/owner.pid"):
        pid = _read_pid(owner)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if _pid_alive(pid) and b"python" in f.read():
                    continue  # a live session (maybe a concurrent one)
        except (OSError, TypeError):
            pass
        if owner.stat().st_uid != os.geteuid():
            continue
        _kill_processes_under(str(owner.parent) + "/")
        shutil.rmtree(owner.parent, ignore_errors=True)


class Stack:
    """The running test stack; see the module docstring."""

    def __init__(self):
        self.build_dir = Path(os.environ.get("VTP_BUILD_DIR", "build"))
        if not self.build_dir.is_absolute():
            self.build_dir = REPO / self.build_dir
        self.dir = None
        self.frontends = {}
        self.logs = {}
        self.env = {}
        self._stoppers = []  # (name, callable), run in reverse order

    # ------------------------------------------------------------ helpers
    def _as_svc(self, argv):
        if IS_ROOT:
            return ["setpriv", f"--reuid={SVC_USER}", f"--regid={SVC_USER}", "--init-groups", "--", *argv]
        return list(argv)

    def _own(self, *paths):
        if IS_ROOT:
            for p in paths:
                shutil.chown(p, SVC_USER, SVC_USER)

    def _mkdir(self, *parts, owned=True):
        path = self.dir.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        if owned:
            self._own(path)
        return path

    def _check_call(self, argv, what, log=None, env=None, cwd=None):
        proc = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=START_TIMEOUT + 30)
        if proc.returncode != 0:
            msg = f"{what} failed (exit {proc.returncode}): {' '.join(map(str, argv))}\n{proc.stdout}"
            if log:
                msg += f"\n----- last lines of {log} -----\n{_tail(log)}"
            raise StackError(msg)
        return proc

    def log_tail(self, name, lines=40):
        return _tail(self.logs[name], lines)

    def run(self, binary, *args, input=None, timeout=60, check=False):
        """Run build_dir/binary with stack.env; returns CompletedProcess (text)."""
        return subprocess.run([str(self.build_dir / binary), *map(str, args)], env=self.env,
                              input=input, capture_output=True, text=True, timeout=timeout,
                              check=check, cwd=REPO)

    # ------------------------------------------------------------ startup
    def start(self):
        missing = [p for p in PROGRAMS if not os.access(self.build_dir / p, os.X_OK)]
        if missing:
            raise StackError(f"missing in {self.build_dir}: {', '.join(missing)} (run `make` first)")
        if IS_ROOT:
            try:
                pwd.getpwnam(SVC_USER)
            except KeyError:
                subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                                "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                                SVC_USER], check=True)
        _reap_stale_stacks()
        # /tmp keeps socket paths short and is reachable by the vtp user
        # wherever the clone lives.
        self.dir = Path(tempfile.mkdtemp(prefix="vtp-test-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        (self.dir / "owner.pid").write_text(f"{os.getpid()}\n")
        self._mkdir("log")
        self.logs = {
            "postgres": self.dir / "log" / "postgres.log",
            "api": self.dir / "log" / "api.log",
            "migrate": self.dir / "log" / "migrate.log",
            "nginx": self.dir / "nginx" / "logs" / "error.log",
            "apache_proxy": self.dir / "apache-proxy" / "logs" / "error.log",
            "apache_fcgid": self.dir / "apache-fcgid" / "logs" / "error.log",
        }
        # Copies of the programs the services run: readable by vtp, and
        # immune to a rebuild during the session.
        bindir = self._mkdir("bin", owned=False)
        for p in PROGRAMS:
            shutil.copy2(self.build_dir / p, bindir / p)
        self.bin_dir = bindir
        self.www = REPO / "www"
        if IS_ROOT and subprocess.run(self._as_svc(["test", "-r", str(self.www / "index.html")]),
                                      stderr=subprocess.DEVNULL).returncode != 0:
            self.www = self.dir / "www"
            shutil.copytree(REPO / "www", self.www)

        self.storage_path = str(self._mkdir("storage"))
        self.jwt_secret = os.urandom(32).hex()
        self.segment_link_secret = os.urandom(32).hex()
        self._start_postgres()
        self.env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "LANG": "C.UTF-8",
            "HOME": str(self.dir),
            "DATABASE_URL": self.database_url,
            "JWT_SECRET": self.jwt_secret,
            "STORAGE_PATH": self.storage_path,
            "VTP_LOG_LEVEL": os.environ.get("VTP_LOG_LEVEL", "info"),
        }
        for key in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "VTP_API_THREADS"):
            if key in os.environ:
                self.env[key] = os.environ[key]
        with open(self.logs["migrate"], "w") as log:
            proc = subprocess.run([str(self.build_dir / "vtp-migrate")], env=self.env, cwd=REPO,
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=START_TIMEOUT)
        if proc.returncode != 0:
            raise StackError(f"vtp-migrate exited {proc.returncode}\n{_tail(self.logs['migrate'])}")
        self._start_api()
        ports = _free_ports(3)
        self._start_nginx(ports[0])
        self._start_apache("apache_proxy", ports[1], REPO / "apache-vtp.conf")
        self._start_fcgid_hosting(ports[2])
        for name in FRONTENDS:
            self._wait_health(name)

    def _start_postgres(self):
        pgdir = self._mkdir("pg")
        self.pgdata = pgdir / "data"
        self.pgsock = self._mkdir("pg", "sock")
        os.chmod(self.pgsock, 0o700)
        self.pgport = 5432  # socket only, in a private folder: no clash
        self._check_call(self._as_svc([str(PGBIN / "initdb"), "-D", str(self.pgdata), "-U", "vtp",
                                       "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
                         "initdb")
        with open(self.pgdata / "postgresql.conf", "a") as f:
            f.write(f"""
# VTP integration tests
listen_addresses = ''
port = {self.pgport}
unix_socket_directories = '{self.pgsock}'
unix_socket_permissions = 0700
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
""")
        self.logs["postgres"].touch()
        self._own(self.logs["postgres"])
        self.database_url = (f"postgresql:///vtp?host={urllib.parse.quote(str(self.pgsock))}"
                             f"&port={self.pgport}&user=vtp")
        self._stoppers.append(("postgres", self.pg_stop))
        self.pg_start()
        self._check_call(self._as_svc([str(PGBIN / "psql"), "-X", "-q", "-h", str(self.pgsock),
                                       "-p", str(self.pgport), "-U", "vtp", "-d", "postgres",
                                       "-c", "CREATE DATABASE vtp"]), "createdb")

    def pg_start(self):
        """Start PostgreSQL; return once it accepts connections."""
        self._check_call(self._as_svc([str(PGBIN / "pg_ctl"), "-D", str(self.pgdata),
                                       "-l", str(self.logs["postgres"]), "-w",
                                       "-t", str(int(START_TIMEOUT)), "start"]),
                         "pg_ctl start", log=self.logs["postgres"], cwd=self.dir)
        dsn = f"host={self.pgsock} port={self.pgport} user=vtp dbname=postgres connect_timeout=2"

        def accepts():
            psycopg2.connect(dsn).close()
            return True

        _poll("PostgreSQL to accept connections", accepts, logs=[self.logs["postgres"]])

    def pg_stop(self):
        """Stop PostgreSQL (fast shutdown: open sessions are ended)."""
        if not (self.pgdata / "postmaster.pid").exists():
            return
        self._check_call(self._as_svc([str(PGBIN / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast",
                                       "-w", "-t", "60", "stop"]),
                         "pg_ctl stop", log=self.logs["postgres"], cwd=self.dir)

    def _start_api(self):
        rundir = self._mkdir("run")
        self.api_socket = rundir / "api.sock"
        ids = ["-u", SVC_USER, "-g", SVC_USER, "-U", SVC_USER, "-G", SVC_USER] if IS_ROOT else []
        log = open(self.logs["api"], "ab")
        try:
            # -n: spawn-fcgi binds the socket, then execs vtp-api (same pid).
            proc = subprocess.Popen([SPAWN_FCGI, "-n", "-s", str(self.api_socket), "-M", "0660", *ids,
                                     "--", str(self.bin_dir / "vtp-api")],
                                    env=self.env, cwd=self.dir, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        self.api_proc = proc
        self._stoppers.append(("vtp-api", self._stop_api))

        def listening():
            if proc.poll() is not None:
                raise StackError(f"vtp-api exited with {proc.returncode}\n{_tail(self.logs['api'])}")
            if not self.api_socket.exists():
                return False
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(self.api_socket))
            return True

        _poll("vtp-api socket", listening, logs=[self.logs["api"]])

    def _stop_api(self):
        proc = self.api_proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def _start_nginx(self, port):
        prefix = self._mkdir("nginx", owned=False)
        (prefix / "logs").mkdir(exist_ok=True)
        (prefix / "tmp").mkdir(exist_ok=True)
        conf = prefix / "nginx.conf"
        _render(REPO / "deploy" / "nginx-vtp.conf.in", conf, {
            "PREFIX": prefix, "PORT": port, "ROOT_ONLY": "" if IS_ROOT else "#",
            "USER": SVC_USER, "GROUP": SVC_USER, "WWW": self.www,
            "SOCKET": self.api_socket, "STORAGE": self.storage_path,
            "LINK_SECRET": self.segment_link_secret,
        })
        cmd = [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(self.logs["nginx"])]
        self.frontends["nginx"] = f"http://127.0.0.1:{port}"

        def stop():
            pid = _read_pid(prefix / "nginx.pid")
            if pid and _pid_alive(pid):
                subprocess.run([*cmd, "-s", "stop"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if not _wait_gone(pid):
                    _kill(pid, signal.SIGKILL)

        self._stoppers.append(("nginx", stop))
        self._check_call(cmd, "nginx", log=self.logs["nginx"])

    def _apache_env(self):
        # An empty environment, as a system service has: the mod_fcgid program
        # must get its settings from vtp.conf only.
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}

    def _start_apache(self, name, port, site, docroot=""):
        prefix = self._mkdir(name.replace("_", "-"))
        (prefix / "logs").mkdir(exist_ok=True)
        self._mkdir(prefix.name, "fcgid")
        conf = prefix / "httpd.conf"
        _render(REPO / "deploy" / "apache-test.conf.in", conf, {
            "PREFIX": prefix, "PORT": port, "ROOT_ONLY": "" if IS_ROOT else "#",
            "USER": SVC_USER, "GROUP": SVC_USER, "SITE": site, "WWW": self.www,
            "SOCKET": self.api_socket, "STORAGE": self.storage_path,
            "DOCROOT": docroot or self.www,
        })
        cmd = [APACHE, "-f", str(conf), "-k"]
        env = self._apache_env()
        self.frontends[name] = f"http://127.0.0.1:{port}"

        def stop():
            pid = _read_pid(prefix / "httpd.pid")
            if pid and _pid_alive(pid):
                subprocess.run([*cmd, "stop"], env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if not _wait_gone(pid, timeout=30):
                    _kill(pid, signal.SIGKILL)

        self._stoppers.append((name, stop))
        self._check_call([*cmd, "start"], f"apache ({name})", log=self.logs[name], env=env)
        _poll(f"{name} pid file", lambda: _read_pid(prefix / "httpd.pid"), logs=[self.logs[name]])

    def _start_fcgid_hosting(self, port):
        # The customer's web folder on a shared host.
        docroot = self._mkdir("hosting", "public_html")
        for item in self.www.iterdir():
            if item.is_dir():
                shutil.copytree(item, docroot / item.name)
            else:
                shutil.copy2(item, docroot / item.name)
        shutil.copy2(self.bin_dir / "vtp-api", docroot / "vtp.fcgi")
        os.chmod(docroot / "vtp.fcgi", 0o755)
        shutil.copy2(REPO / "deploy" / "htaccess.example", docroot / ".htaccess")
        conf = docroot / "vtp.conf"
        conf.write_text(
            "# VTP settings for the mod_fcgid (shared hosting) frontend of the tests\n"
            f"database_url = {self.database_url}\n"
            f"jwt_secret = {self.jwt_secret}\n"
            f"storage_path = {self.storage_path}\n")
        os.chmod(conf, 0o600)
        if IS_ROOT:
            for dirpath, dirnames, filenames in os.walk(docroot):
                for n in dirnames + filenames:
                    shutil.chown(os.path.join(dirpath, n), SVC_USER, SVC_USER)
        self.fcgid_docroot = docroot
        self._start_apache("apache_fcgid", port, REPO / "deploy" / "apache-fcgid-host.conf", docroot)

    def _wait_health(self, name):
        url = self.frontends[name] + "/health"
        last = {}

        def healthy():
            if self.api_proc.poll() is not None and name != "apache_fcgid":
                raise StackError(f"vtp-api exited with {self.api_proc.returncode}\n"
                                 f"{_tail(self.logs['api'])}")
            r = requests.get(url, timeout=5)
            last["status"] = r.status_code
            last["body"] = r.text[:300]
            return r.status_code == 200

        try:
            _poll(f"{url} ({name}) to answer 200", healthy,
                  logs=[self.logs[name], self.logs["api"], self.logs["postgres"]])
        except StackError as exc:
            raise StackError(f"{exc}\nlast answer: {last}") from None

    # ------------------------------------------------------------ shutdown
    def stop(self):
        errors = []
        for name, stopper in reversed(self._stoppers):
            try:
                stopper()
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                errors.append(f"{name}: {exc}")
        self._stoppers.clear()
        if self.dir is not None:
            left = _kill_processes_under(str(self.dir) + "/")
            if left:
                errors.append(f"left behind, killed: {sorted(left)}")
            if os.environ.get("VTP_TEST_KEEP") == "1":
                print(f"\nVTP_TEST_KEEP=1: test stack files kept in {self.dir}")
            else:
                shutil.rmtree(self.dir, ignore_errors=True)
        return errors


_current_stack = None


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def stack():
    global _current_stack
    # `timeout`, CI runners and terminals end a run with SIGTERM/SIGHUP, which
    # would kill Python without running finalizers: turn them into
    # KeyboardInterrupt so the stack below is stopped.
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            previous[sig] = signal.signal(sig, _interrupt)
    s = Stack()
    try:
        s.start()
        _current_stack = s
        yield s
    finally:
        _current_stack = None
        try:
            errors = s.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if errors:
            import warnings
            warnings.warn("test stack shutdown: " + "; ".join(errors))


@pytest.fixture(params=FRONTENDS)
def base_url(request, stack):
    return stack.frontends[request.param]


@pytest.fixture
def token(stack):
    def make(sub, role, ttl=3600, name=None):
        args = ["--sub", sub, "--role", role, "--ttl", str(ttl)]
        if name is not None:
            args += ["--name", name]
        proc = stack.run("vtp-token", *args)
        if proc.returncode != 0:
            raise StackError(f"vtp-token {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc.stdout.strip()

    return make


@pytest.fixture
def db(stack):
    conn = psycopg2.connect(stack.database_url)
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    s = _current_stack
    if report.failed and s is not None and "stack" in getattr(item, "fixturenames", ()):
        for name in ("api", "nginx", "apache_proxy", "apache_fcgid", "postgres"):
            report.sections.append((f"{name} log (last lines)", s.log_tail(name, 20)))


@pytest.fixture
def api_restarts(stack):
    """Restarts vtp-api (spawn-fcgi, same socket) within 0.1 s whenever it dies, for the test's duration:
    what a production service manager does (systemd Restart=always; nothing in this harness or in
    deploy/devstack restarts a dead vtp-api otherwise, and nginx then answers 502 until someone does).
    Yields an object with .times (the monotonic time of each restart) and .lock (held during a restart:
    take it to kill vtp-api only once it is up); leaves a live vtp-api behind."""
    import threading

    class Restarts:
        times = []
        lock = threading.Lock()

    restarts = Restarts()
    done = threading.Event()
    failures = []

    def watch():
        while not done.wait(0.02):
            with restarts.lock:
                if stack.api_proc.poll() is None:
                    continue
                try:
                    stack._start_api()
                    restarts.times.append(time.monotonic())
                except StackError as exc:  # reported by the fixture's teardown
                    failures.append(str(exc))
                    return

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        yield restarts
    finally:
        done.set()
        t.join(timeout=90)
        if stack.api_proc.poll() is not None:
            stack._start_api()
    assert not failures, failures
