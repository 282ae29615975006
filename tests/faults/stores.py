"""A private PostgreSQL cluster and a private Redis server for ``make test-faults``, so the test may restart them
without touching the machine's shared services (other test runs use those meanwhile).

PostgreSQL: the Debian binaries under ``/usr/lib/postgresql/<version>/bin``; ``initdb`` refuses to run as root,
so as root every PostgreSQL command runs as the ``postgres`` OS user (``runuser``). Redis: ``redis-server`` with no
persistence, so a restart loses every queued task, as a crash of a cache-only Redis does.
"""

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.servers import free_port

PG_USER = "postgres"


def postgres_bindir() -> Path | None:
    """Return the newest ``/usr/lib/postgresql/<version>/bin`` that has ``initdb`` and ``pg_ctl``, else ``None``."""
    found = [
        path.parent
        for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")
        if (path.parent / "pg_ctl").exists() and path.parent.parent.name.isdigit()
    ]
    return max(found, key=lambda bindir: int(bindir.parent.name)) if found else None


def missing_tools() -> list[str]:
    """Name what this machine lacks to run the private services (empty when all is there)."""
    missing = [] if postgres_bindir() else ["PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb)"]
    if not shutil.which("redis-server"):
        missing.append("redis-server")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        missing.append("runuser (to run PostgreSQL as the postgres user)")
    return missing


@dataclass
class PrivatePostgres:
    """A throwaway cluster in ``root`` (``data/``, ``log``), on ``127.0.0.1:port``, trust auth, database ``faults``."""

    bindir: Path
    root: Path
    port: int

    @property
    def url(self) -> str:
        """The ``DATABASE_URL`` of the test database."""
        return f"postgres://{PG_USER}@127.0.0.1:{self.port}/faults"

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", PG_USER, "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, check=False, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{Path(args[0]).name} failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")

    def init(self) -> None:
        """``initdb`` the cluster (no fsync: it is thrown away), start it and create the ``faults`` database."""
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.root / "data"),
            "-U",
            PG_USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        self.start()
        self._run(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, "faults")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        log = str(self.root / "log")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-l", log, "-o", options, "-w", "start")

    def stop(self) -> None:
        """Stop with ``-m fast``: open transactions roll back and every client loses its connection."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")

    def restart(self, *, down_seconds: float) -> None:
        """Stop, stay down ``down_seconds``, start again."""
        self.stop()
        time.sleep(down_seconds)
        self.start()


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """Run a fresh cluster in a temporary folder (owned by ``postgres`` when we are root) until the block ends,
    then stop it (``-m immediate``) and delete the folder. Raises ``RuntimeError`` when a step fails."""
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server binaries")
    root = Path(tempfile.mkdtemp(prefix="hc-faults-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, PG_USER, PG_USER)
    cluster = PrivatePostgres(bindir=bindir, root=root, port=free_port())
    try:
        cluster.init()
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError):  # it was not running
            cluster._run(str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class PrivateRedis:
    """``redis-server`` on ``127.0.0.1:port`` with no persistence; ``proc`` is the running server."""

    port: int
    log: Path
    proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        """``redis://127.0.0.1:<port>/<db>``."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        """Start the server and wait (up to 20 s) until it answers PING; raise ``RuntimeError`` otherwise."""
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([*args, "--daemonize", "no"], stdout=out, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.RedisError:
                time.sleep(0.1)
        raise RuntimeError("the private redis-server did not start")

    def stop(self) -> None:
        """Kill the server (SIGKILL: a crash, nothing saved)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def restart(self, *, down_seconds: float) -> None:
        """Crash, stay down ``down_seconds``, start again empty."""
        self.stop()
        time.sleep(down_seconds)
        self.start()


@contextmanager
def private_redis(log: Path) -> Iterator[PrivateRedis]:
    """Run a private Redis (output to ``log``) until the block ends."""
    server = PrivateRedis(port=free_port(), log=log)
    server.start()
    try:
        yield server
    finally:
        server.stop()
