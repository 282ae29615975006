"""``make demo`` as a test runs it: the Makefile's demo-setup steps, then ``scripts/demo.sh`` in a process group of
its own (as a terminal runs ``make demo``), on a free port and a folder of its own (``HC_VAR_DIR``), stopped the
way a terminal or a supervisor stops it. Its processes are found by their ``HC_VAR_DIR``, which each inherits."""

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.servers import ROOT, base_env, free_port

# The Makefile's demo-setup target, step by step (SANDBOX_ENABLED=true manage.py ...).
DEMO_SETUP = (("migrate", "--noinput"), ("sandbox_load",), ("demo_setup",))


@dataclass
class Demo:
    """A demo folder set up for ``base`` (``http://127.0.0.1:<port>``); ``env`` is what every process gets."""

    var_dir: Path
    base: str
    env: dict[str, str]

    @property
    def console(self) -> Path:
        """What ``scripts/demo.sh`` printed (its stdout and stderr) in every run."""
        return self.var_dir / "demo-console.txt"

    def console_text(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""


def demo_prepare(var_dir: Path) -> Demo:
    """Run the Makefile's demo-setup steps for a demo on a free port in ``var_dir``; return the ``Demo``.

    Raises ``RuntimeError`` with the command's output when a step fails."""
    port = free_port()
    var_dir.mkdir(parents=True, exist_ok=True)
    env = base_env(
        SANDBOX_ENABLED="true",
        HC_VAR_DIR=str(var_dir),
        APP_BASE_URL=f"http://127.0.0.1:{port}",
        DEMO_STRIPE_PORT=str(free_port()),
        DEMO_HL7_PORT=str(free_port()),
        PROCFILE_KILL_WAIT="3",
    )
    for step in DEMO_SETUP:
        done = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "python"), "manage.py", *step],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"manage.py {step[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return Demo(var_dir=var_dir, base=f"http://127.0.0.1:{port}", env=env)


def demo_start(demo: Demo) -> subprocess.Popen:
    """Start ``scripts/demo.sh`` in a new session (its own process group, like ``make demo`` in a terminal); its
    output goes to ``demo.console``. Does not wait for it."""
    out = demo.console.open("ab")
    try:
        return subprocess.Popen(
            ["bash", "scripts/demo.sh"],
            cwd=ROOT,
            env=demo.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        out.close()


def demo_wait_ready(demo: Demo, proc: subprocess.Popen, seconds: float = 90) -> None:
    """Wait until the sandbox page answers, the worker, its pool, beat and localstripe run and the HL7 listener
    listens; raise ``RuntimeError`` with the console's tail if the demo exits or is not ready in time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"demo exited with {proc.returncode}:\n{demo.console_text()[-4000:]}")
        commands = [command for _, command in demo_processes(demo.var_dir)]
        kinds = {
            "worker": sum(" worker " in command for command in commands),
            "beat": sum(" beat " in command for command in commands),
            "stripe": sum("tests.stripe_server" in command for command in commands),
            "hl7": sum("hl7_listen" in command for command in commands),
        }
        ready = kinds["beat"] and kinds["stripe"] and kinds["hl7"] and "hl7_listen: listening" in demo.console_text()
        if kinds["worker"] >= 3 and ready:  # the worker and its two pool processes
            try:
                if requests.get(f"{demo.base}/sandbox/", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
        time.sleep(0.3)
    raise RuntimeError(f"demo not ready in {seconds} s:\n{demo.console_text()[-4000:]}")


def demo_kill(proc: subprocess.Popen, grace: float = 4) -> None:
    """Stop the demo as a terminal or a supervisor does: TERM to its process group, then KILL to the group after
    ``grace`` seconds."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(5)


def demo_processes(var_dir: Path) -> list[tuple[int, str]]:
    """Every live process (not a zombie) whose environment has ``HC_VAR_DIR=var_dir``: (pid, command line)."""
    marker = f"HC_VAR_DIR={var_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            continue
        if state not in ("Z", "X"):
            found.append((int(entry.name), command))
    return found


def demo_wait_gone(var_dir: Path, seconds: float = 10) -> list[tuple[int, str]]:
    """Wait up to ``seconds`` for every process of the demo in ``var_dir`` to end; return those still there."""
    deadline = time.monotonic() + seconds
    while (left := demo_processes(var_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def kill_leftovers(var_dir: Path) -> None:
    """KILL whatever processes of the demo in ``var_dir`` are left (the test's own clean-up after a failure)."""
    for pid, _ in demo_processes(var_dir):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextmanager
def demo_running(demo: Demo) -> Iterator[subprocess.Popen]:
    """Run the demo until the block ends, then stop it with ``demo_kill`` (and KILL any leftover)."""
    proc = demo_start(demo)
    try:
        demo_wait_ready(demo, proc)
        yield proc
    finally:
        demo_kill(proc)
        if demo_wait_gone(demo.var_dir, seconds=5):
            kill_leftovers(demo.var_dir)


LINK = re.compile(r"http://127\.0\.0\.1:\d+/p/[A-Za-z0-9_-]{32,128}/")


def printed_links(demo: Demo) -> list[str]:
    """The purchase links the demo's console email and SMS backends printed, oldest first."""
    return LINK.findall(demo.console_text())
