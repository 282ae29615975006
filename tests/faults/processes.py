"""The Procfile's ``worker`` and ``beat`` as real processes that ``make test-faults`` kills with SIGKILL.

Each process runs in a process group of its own, so killing a worker's group takes its pool children with it,
as a host losing the process would. Killing one pool child leaves Celery's main process to replace it (the task
it ran goes back to the queue: ``task_reject_on_worker_lost``).
"""

import contextlib
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from tests.servers import ROOT, procfile_command


def children_of(pid: int) -> list[int]:
    """Return the pids whose parent is ``pid`` (read from ``/proc``; Linux only)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 is the parent pid; the command name (field 2) may hold spaces, so split after its ")".
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _established_inodes(ports: set[int]) -> set[str]:
    """Socket inodes of the established TCP connections to any of ``ports`` on this machine (``/proc/net/tcp*``)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "01" and int(fields[2].rpartition(":")[2], 16) in ports:
                    inodes.add(fields[9])
    return inodes


def busy(pids: list[int], ports: set[int]) -> list[int]:
    """Return those of ``pids`` holding a connection to one of ``ports``: a pool child in the middle of a task holds
    one to PostgreSQL (connections are closed after each task) or to the supplier."""
    inodes, found = _established_inodes(ports), []
    for pid in pids:
        with contextlib.suppress(OSError):
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
            if any(link[8:-1] in inodes for link in links if link.startswith("socket:[")):
                found.append(pid)
    return found


class Fleet:
    """``workers`` Celery workers (Procfile ``worker``, concurrency 2, node ``worker-<n>@host``) and one ``beat``,
    with ``env`` and their output appended to ``logs/worker-<n>.log`` and ``logs/beat.log``.

    ``kills`` counts SIGKILLs by kind (``worker_child``, ``worker_group``); ``kills_mid_task`` those that hit a
    process in the middle of a task (it held a connection to one of ``busy_ports``). Like systemd's
    ``Restart=always`` (docs/deploy.md), a supervising thread starts again any process that exits on its own;
    ``exits`` counts those by process name.
    """

    def __init__(self, env: dict[str, str], logs: Path, *, busy_ports: set[int], workers: int = 2) -> None:
        self.env, self.logs, self.count, self.busy_ports = env, logs, workers, busy_ports
        self.procs: dict[str, subprocess.Popen] = {}
        self.kills: Counter[str] = Counter()
        self.exits: Counter[str] = Counter()
        self.kills_mid_task = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        logs.mkdir(parents=True, exist_ok=True)

    def _supervise(self) -> None:
        """Every 0.5 s, start again a worker or beat that exited by itself (a kill by the test restarts at once)."""
        while not self._stopping.wait(0.5):
            with self._lock:
                for name, proc in list(self.procs.items()):
                    if proc.poll() is None or self._stopping.is_set():
                        continue
                    self.exits[name] += 1
                    if name == "beat":
                        self._start("beat", "beat", self.env)
                    else:
                        self._start_worker(int(name.removeprefix("worker-")))

    def _start(self, name: str, process: str, env: dict[str, str]) -> None:
        with (self.logs / f"{name}.log").open("ab") as out:
            self.procs[name] = subprocess.Popen(
                procfile_command(process),
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _start_worker(self, number: int) -> None:
        self._start(f"worker-{number}", "worker", self.env | {"PORT": str(number), "WORKER_CONCURRENCY": "2"})

    def start(self, *, ready_seconds: float = 90) -> None:
        """Start the workers and beat; return once every worker logged ``ready``. Raises ``RuntimeError`` if one
        exits or is not ready in ``ready_seconds``."""
        for number in range(1, self.count + 1):
            self._start_worker(number)
        self._start("beat", "beat", self.env)
        self._supervisor.start()
        deadline = time.monotonic() + ready_seconds
        for number in range(1, self.count + 1):
            log = self.logs / f"worker-{number}.log"
            while " ready." not in (log.read_text(errors="replace") if log.exists() else ""):
                if self.procs[f"worker-{number}"].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker-{number} did not start:\n{self.log_tail()}")
                time.sleep(0.2)

    def _children(self) -> dict[int, list[int]]:
        """Worker number -> the pids of its pool children (none while it boots)."""
        return {
            n: children_of(proc.pid) if proc.poll() is None else []
            for n in range(1, self.count + 1)
            for proc in [self.procs[f"worker-{n}"]]
        }

    def _booted(self, *, wait: float) -> dict[int, list[int]]:
        """Worker number -> pool children, for the workers whose pool is up, waiting up to ``wait`` seconds for
        one (a worker started again after a kill needs a few seconds to boot)."""
        deadline = time.monotonic() + wait
        while True:
            booted = {n: pids for n, pids in self._children().items() if pids}
            if booted or time.monotonic() > deadline:
                return booted
            time.sleep(0.2)

    def _in_task(self, *, wait: float) -> dict[int, list[int]]:
        """Worker number -> its pool children in the middle of a task, polling up to ``wait`` seconds for one."""
        deadline = time.monotonic() + wait
        while True:
            found = {n: found for n, pids in self._children().items() if (found := busy(pids, self.busy_ports))}
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def kill_random(self, rng: random.Random) -> str:
        """SIGKILL a pool child of a booted worker (7 times in 10; Celery replaces it) or a booted worker's whole
        process group (started again at once), preferring one in the middle of a task (waiting up to 1.5 s for
        one). Return the kind of kill."""
        booted = self._booted(wait=30)
        in_task = self._in_task(wait=1.5)
        targets = in_task or booted or {n: [] for n in range(1, self.count + 1)}
        number = rng.choice(sorted(targets))
        with self._lock:
            if targets[number] and rng.random() < 0.7:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(rng.choice(targets[number]), signal.SIGKILL)
                kind = "worker_child"
            else:
                proc = self.procs[f"worker-{number}"]
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
                self._start_worker(number)
                kind = "worker_group"
        self.kills[kind] += 1
        self.kills_mid_task += bool(in_task)
        return kind

    def alive(self) -> dict[str, bool]:
        """Whether each process (``worker-<n>``, ``beat``) is still running."""
        return {name: proc.poll() is None for name, proc in self.procs.items()}

    def stop(self) -> None:
        """Stop supervising, SIGTERM every process group (warm shutdown), SIGKILL whatever still runs after 20 s."""
        self._stopping.set()
        with self._lock:
            pass  # a restart in progress has finished
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def lost_tasks(self) -> int:
        """How many running tasks a pool child's SIGKILL cut short, as the workers' main processes logged them
        (``WorkerLostError``); a killed process group logs nothing, so its cut tasks are not counted."""
        line = "Task handler raised error: WorkerLostError"
        return sum(log.read_text(errors="replace").count(line) for log in self.logs.glob("worker-*.log"))

    def log_tail(self, chars: int = 3000) -> str:
        """The end of every process log, for a failure message."""
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in sorted(self.logs.glob("*.log"))
        )
