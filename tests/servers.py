"""Test helpers that start real servers on loopback and stop them by process id.

- `moto_s3_server()`: moto's S3-compatible server as a subprocess (a real HTTP endpoint, so
  s3fs/boto3 go through the network stack exactly as against a real object store).
- `faulty_proxy(upstream)`: an HTTP proxy in front of it that fails a drawn share of requests
  the way a busy object store does (503 SlowDown, 500 InternalError, a dropped connection).
- `dagster_dev(...)`: a real `dagster dev` (webserver + daemon) with a GraphQL helper.
- `mlflow_server(...)`: the MLflow tracking server and UI (`mlflow server`) on a given store.
- `postgres_server()`: a PostgreSQL server (Debian's `postgresql`) with a fresh cluster and database.
- `ray_cluster()`: a local Ray cluster (`ray start --head --block`) with a given number of CPU slots.

Every server runs in its own session/process group (`start_new_session=True`) so that it and
all the children it spawns are stopped together, by group id, and never by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


import psutil

BIN_DIR = Path(sys.executable).parent
LOOPBACK = "127.0.0.1"

# Dummy credentials: only ever put in a child's environment or in explicit options.
MOTO_KEY = "testing"
MOTO_SECRET = "testing"
MOTO_REGION = "us-east-1"


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _console_script(name: str) -> str:
    path = BIN_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"{name!r} not found next to {sys.executable}")
    return str(path)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - exists but not ours
        return True
    return True


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _stop_process_group(
    proc: subprocess.Popen, first_signal: int, timeout: float, known: list[psutil.Process] | None = None
) -> None:
    """Send `first_signal` to the group, wait up to `timeout`, then SIGKILL the group.

    Also waits for the group to empty and SIGKILLs any remembered descendant that left the
    group (e.g. one that called setsid) so that no orphan survives.
    """
    pgid = proc.pid  # start_new_session=True: the child leads its own group
    known = list(known or []) + _descendants(proc.pid)
    if proc.poll() is None or _group_alive(pgid):
        _signal_group(pgid, first_signal)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group(pgid, signal.SIGKILL)
        proc.wait(timeout=30)

    # The leader is gone; give the rest of the group the remainder of the grace period.
    deadline = time.monotonic() + max(5.0, timeout / 4)
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)

    # Descendants that escaped the group (own session) are killed by pid, if still ours.
    for p in known:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                p.kill()
    gone, alive = psutil.wait_procs(known, timeout=10)
    leftovers = [p.pid for p in alive]
    if _group_alive(pgid) or leftovers:
        raise RuntimeError(
            f"processes left after stopping group {pgid}: group alive={_group_alive(pgid)}, "
            f"pids={leftovers}"
        )


def _wait_http(
    url: str,
    proc: subprocess.Popen,
    timeout: float,
    log: Path | None = None,
    require_ok: bool = False,
) -> None:
    """Poll `url` until it answers HTTP (any status, or only 2xx with `require_ok`)."""
    deadline = time.monotonic() + timeout
    last_err: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with code {proc.returncode} before answering {url}\n{_tail(log)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                resp.read()
                return
        except urllib.error.HTTPError as e:
            if not require_ok:
                return  # it answered HTTP, which is all we wait for
            last_err = e
        except (urllib.error.URLError, OSError) as e:
            last_err = e
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:g}s ({last_err!r})\n{_tail(log)}")


def _tail(log: Path | None, n_bytes: int = 8000) -> str:
    if log is None or not log.exists():
        return ""
    data = log.read_bytes()[-n_bytes:]
    return "--- log tail ---\n" + data.decode(errors="replace")


# -- moto S3 -----------------------------------------------------------------------------------
@dataclass
class MotoS3Server:
    endpoint_url: str
    pid: int
    region: str = MOTO_REGION
    key: str = MOTO_KEY
    secret: str = MOTO_SECRET

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            region_name=self.region,
        )

    def create_bucket(self, bucket: str) -> str:
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def storage_options(self, bucket: str | None = None) -> dict:
        """fsspec/s3fs options for this server (`bucket` is accepted for symmetry; unused)."""
        return {
            "key": self.key,
            "secret": self.secret,
            "endpoint_url": self.endpoint_url,
            "client_kwargs": {"region_name": self.region},
        }


@contextlib.contextmanager
def moto_s3_server(startup_timeout: float = 30.0, stop_timeout: float = 10.0) -> Iterator[MotoS3Server]:
    """Start `moto.server` on a free loopback port; kill its process group on exit."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID=MOTO_KEY,
        AWS_SECRET_ACCESS_KEY=MOTO_SECRET,
        AWS_DEFAULT_REGION=MOTO_REGION,
    )
    cmd = [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)]
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://{LOOPBACK}:{port}"
    try:
        _wait_http(url + "/", proc, startup_timeout)
        yield MotoS3Server(endpoint_url=url, pid=proc.pid)
    finally:
        _stop_process_group(proc, signal.SIGTERM, stop_timeout)


# -- fault-injecting proxy -----------------------------------------------------------------------
_S3_ERROR = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>injected by the test '
             'proxy</Message><RequestId>fault</RequestId></Error>')
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "te", "upgrade"}


@dataclass
class FaultyProxy:
    endpoint_url: str
    requests: int = 0
    faults: dict = field(default_factory=dict)     # kind -> count

    def storage_options(self, server: MotoS3Server) -> dict:
        return dict(server.storage_options(), endpoint_url=self.endpoint_url)


@contextlib.contextmanager
def faulty_proxy(upstream: str, fault_rate: float, seed: int = 0) -> Iterator[FaultyProxy]:
    """Forward HTTP/1.1 requests to `upstream`, failing a share `fault_rate` of them (drawn from
    a seeded generator): 503 SlowDown, 500 InternalError, or the connection closed without an
    answer. Runs in a thread of this process; stopped on exit."""
    import http.client
    import random
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import urlsplit

    target = urlsplit(upstream)
    rng, lock = random.Random(seed), threading.Lock()
    proxy = FaultyProxy(endpoint_url="")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    chunk = self.rfile.read(size + 2)[:size]
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return out
                    out += chunk
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _handle(self):
            body = self._body()
            with lock:
                proxy.requests += 1
                fault = rng.choice(["slow_down", "internal_error", "dropped"]) if rng.random() < fault_rate else None
                if fault:
                    proxy.faults[fault] = proxy.faults.get(fault, 0) + 1
            if fault == "dropped":
                self.close_connection = True
                return
            if fault:
                status, code = (503, "SlowDown") if fault == "slow_down" else (500, "InternalError")
                data = _S3_ERROR.format(code=code).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                return
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)) if self.command != "HEAD"
                                 else resp.getheader("Content-Length", "0"))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
            finally:
                conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    server.daemon_threads = True
    proxy.endpoint_url = f"http://{LOOPBACK}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()


# -- dagster dev -------------------------------------------------------------------------------
@dataclass
class DagsterDev:
    url: str
    pid: int
    log_path: Path
    _timeout: float = field(default=60.0, repr=False)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(
            f"{self.url}/graphql",
            data=body,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                payload = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"GraphQL HTTP {e.code}: {e.read().decode(errors='replace')}") from e
        if payload.get("errors"):
            raise RuntimeError(f"GraphQL errors: {json.dumps(payload['errors'], indent=2)}")
        return payload["data"]

    def log_tail(self, n_bytes: int = 8000) -> str:
        return _tail(self.log_path, n_bytes)


@contextlib.contextmanager
def dagster_dev(
    workspace_yaml: Path,
    dagster_home: Path,
    cwd: Path,
    startup_timeout: float = 180.0,
    stop_timeout: float = 60.0,
    extra_env: dict | None = None,
) -> Iterator[DagsterDev]:
    """Run `dagster dev -w workspace_yaml` on a free loopback port.

    Stopped with SIGINT to the whole process group (what Ctrl-C does; `dagster dev` ignores
    SIGTERM when started from a non-interactive shell), then SIGKILL after `stop_timeout`.
    """
    dagster_home = Path(dagster_home)
    dagster_home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(dagster_home)
    env.update(extra_env or {})
    log_path = dagster_home / "dagster-dev.log"
    cmd = [
        _console_script("dagster"),
        "dev",
        "-w",
        str(workspace_yaml),
        "-h",
        LOOPBACK,
        "-p",
        str(port),
    ]
    url = f"http://{LOOPBACK}:{port}"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=str(cwd),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_http(url + "/server_info", proc, startup_timeout, log_path, require_ok=True)
        yield DagsterDev(url=url, pid=proc.pid, log_path=log_path)
    finally:
        _stop_process_group(proc, signal.SIGINT, stop_timeout)


# -- mlflow server ------------------------------------------------------------------------------
@dataclass
class MlflowServer:
    url: str
    pid: int
    log_path: Path

    def log_tail(self, n_bytes: int = 8000) -> str:
        return _tail(self.log_path, n_bytes)


@contextlib.contextmanager
def mlflow_server(
    backend_store_uri: str,
    artifact_root: str,
    log_path: Path,
    startup_timeout: float = 120.0,
    stop_timeout: float = 30.0,
) -> Iterator[MlflowServer]:
    """`mlflow server` (tracking API + UI, what `mlflow ui` starts) on a free loopback port over
    an existing store, e.g. `sqlite:///MM_HOME/mlflow.db`; one uvicorn worker, without the
    server's background job runner (a handful of huey consumers this project never uses) and
    without telemetry. Stopped with SIGTERM to its process group, then SIGKILL."""
    port = free_port()
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [
        _console_script("mlflow"),
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--default-artifact-root",
        artifact_root,
        "-h",
        LOOPBACK,
        "-p",
        str(port),
        "-w",
        "1",
    ]
    url = f"http://{LOOPBACK}:{port}"
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_http(url + "/health", proc, startup_timeout, log_path, require_ok=True)
        yield MlflowServer(url=url, pid=proc.pid, log_path=log_path)
    finally:
        _stop_process_group(proc, signal.SIGTERM, stop_timeout)


# -- PostgreSQL ---------------------------------------------------------------------------------
PG_USER = "dagster"
PG_PASSWORD = "dagster-test"    # dummy: only in the server's password file and the clients' config
PG_SYSTEM_USER = "postgres"     # who runs initdb and postgres when the tests run as root


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    db: str
    pid: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.db}"

    def dagster_env(self) -> dict[str, str]:
        """The variables that deploy/dagster-postgres.yaml reads its storage settings from."""
        return {"DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port), "DAGSTER_PG_USERNAME": self.user,
                "DAGSTER_PG_PASSWORD": self.password, "DAGSTER_PG_DB": self.db}

    def log_tail(self, n_bytes: int = 8000) -> str:
        return _tail(self.log_path, n_bytes)


def postgres_bin_dir() -> Path | None:
    """The directory holding `initdb` and `postgres`: $PG_BIN_DIR, else the newest Debian
    /usr/lib/postgresql/<major>/bin (Debian keeps them off PATH), else the PATH's."""
    import shutil

    candidates = [Path(os.environ["PG_BIN_DIR"])] if os.environ.get("PG_BIN_DIR") else []
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        majors = [p for p in debian.iterdir() if p.name.isdigit()]
        candidates += [p / "bin" for p in sorted(majors, key=lambda p: int(p.name), reverse=True)]
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).resolve().parent)
    for d in candidates:
        if (d / "initdb").is_file() and (d / "postgres").is_file():
            return d
    return None


def _missing_postgres(reason: str):
    """Skip the test, or fail it where PostgreSQL is required (CI sets MM_REQUIRE_POSTGRES=1)."""
    import pytest

    if os.environ.get("MM_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason} (MM_REQUIRE_POSTGRES=1)")
    pytest.skip(reason)


def _traversable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])


@contextlib.contextmanager
def postgres_server(db: str = "dagster", log_path: Path | None = None, startup_timeout: float = 60.0,
                    stop_timeout: float = 30.0) -> Iterator[PostgresServer]:
    """A real PostgreSQL server on a free loopback port (TCP only, password auth) with a fresh
    cluster in a temporary directory and an empty database `db`. initdb and postgres refuse to
    run as root, so as root both run as the `postgres` system user, which owns the directory.
    Durability is off (fsync, full-page writes): the cluster is thrown away. Stopped by process
    id: SIGINT to the postmaster (fast shutdown: open sessions are ended), SIGKILL to its group
    after `stop_timeout`; then the directory is removed. Skips when the binaries are missing
    (fails with MM_REQUIRE_POSTGRES=1)."""
    import shutil
    import tempfile

    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        _missing_postgres("PostgreSQL server binaries (initdb, postgres) not found; "
                          "on Debian: apt-get install postgresql")
    as_user: dict = {}
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            _missing_postgres(f"running as root and there is no {PG_SYSTEM_USER!r} user to run PostgreSQL as")
        as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    tmp = Path(tempfile.gettempdir())
    base = Path(tempfile.mkdtemp(prefix="mm-postgres-", dir=tmp if not as_user or _traversable_by_others(tmp)
                                 else "/tmp"))
    proc = None
    try:
        if as_user:
            os.chown(base, as_user["user"], as_user["group"])
        pwfile = base / "pwfile"
        pwfile.write_text(PG_PASSWORD + "\n")
        if as_user:
            os.chown(pwfile, as_user["user"], as_user["group"])
        data = base / "data"
        env = dict(os.environ, LC_ALL="C", LANG="C")
        env.pop("PGDATA", None)
        init = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}", "--auth-local=trust",
             "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"],
            cwd=base, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, **as_user)
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}):\n{init.stdout}\n{init.stderr}")
        port = free_port()
        log_path = Path(log_path) if log_path else base / "postgres.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-h", LOOPBACK, "-k", str(base),
                 "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off",
                 "-c", "max_connections=200"],
                cwd=base, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, **as_user)
        server = PostgresServer(host=LOOPBACK, port=port, user=PG_USER, password=PG_PASSWORD, db=db,
                                pid=proc.pid, log_path=log_path)
        _wait_postgres(server, proc, startup_timeout)
        _create_database(server)
        yield server
    finally:
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=stop_timeout)
            _stop_process_group(proc, signal.SIGKILL, 10.0)   # only what outlived the fast shutdown
        shutil.rmtree(base, ignore_errors=True)


def _connect(server: PostgresServer, db: str):
    import psycopg2

    return psycopg2.connect(host=server.host, port=server.port, user=server.user, password=server.password,
                            dbname=db, connect_timeout=2)


def _wait_postgres(server: PostgresServer, proc: subprocess.Popen, timeout: float) -> None:
    import psycopg2

    deadline = time.monotonic() + timeout
    last_err: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"postgres exited with code {proc.returncode} before accepting connections\n"
                               f"{server.log_tail()}")
        try:
            _connect(server, "postgres").close()
            return
        except psycopg2.OperationalError as e:
            last_err = e
        time.sleep(0.1)
    raise TimeoutError(f"postgres on port {server.port} did not accept connections within {timeout:g}s "
                       f"({last_err!r})\n{server.log_tail()}")


def _create_database(server: PostgresServer) -> None:
    from psycopg2 import sql

    conn = _connect(server, "postgres")
    try:
        conn.autocommit = True          # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(server.db)))
    finally:
        conn.close()


# -- Ray ------------------------------------------------------------------------------------------
@dataclass
class RayCluster:
    address: str            # what ray.init / MM_RAY_ADDRESS take: 127.0.0.1:<gcs port>
    pid: int                # `ray start --head --block`, the leader of the cluster's process group
    temp_dir: str

    def workers(self) -> list[psutil.Process]:
        """The cluster's worker processes (Ray names them `ray::<task or IDLE>`)."""
        out = []
        for p in _descendants(self.pid):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                if p.name().startswith("ray::") or any(a.startswith("ray::") for a in p.cmdline()[:1]):
                    out.append(p)
        return out


@contextlib.contextmanager
def ray_cluster(num_cpus: int = 2, startup_timeout: float = 90.0, stop_timeout: float = 30.0) -> Iterator[RayCluster]:
    """A local Ray cluster (`ray start --head --block`) on loopback with `num_cpus` CPU slots (so
    at most that many shard tasks at once), no dashboard; stopped by its process group."""
    import tempfile

    port = free_port()
    # Ray puts unix sockets under its temp dir: keep the path short (a socket path has ~107 bytes)
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", HF_HUB_OFFLINE="1")
    cmd = [_console_script("ray"), "start", "--head", "--block", f"--node-ip-address={LOOPBACK}", f"--port={port}",
           f"--num-cpus={num_cpus}", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
           f"--temp-dir={temp_dir}"]
    log = open(os.path.join(temp_dir, "ray-start.log"), "wb")
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {proc.returncode}:\n{_tail(Path(log.name))}")
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=1):
                if any("raylet" in " ".join(p.cmdline()) for p in _descendants(proc.pid)):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray did not come up in {startup_timeout:.0f} s:\n{_tail(Path(log.name))}")
            time.sleep(0.5)
        yield RayCluster(address=f"{LOOPBACK}:{port}", pid=proc.pid, temp_dir=temp_dir)
    finally:
        # `ray start --block` shuts the cluster down in ~3 s on SIGINT; on SIGTERM it waited ~30 s
        _stop_process_group(proc, signal.SIGINT, stop_timeout)
        log.close()
        import shutil
        shutil.rmtree(temp_dir, ignore_errors=True)
