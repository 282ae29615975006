"""Nothing of ``make demo`` outlives it (issue 18: killed demos left Celery workers running, which hung, ignored
TERM and QUIT, and consumed the next run's broker folders). ``scripts/demo.sh`` and ``scripts/procfile.sh`` run as
``make demo`` runs them, on a free port and a folder of their own."""

import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.demo import (
    Demo,
    demo_kill,
    demo_prepare,
    demo_processes,
    demo_running,
    demo_start,
    demo_wait_gone,
    demo_wait_ready,
    kill_leftovers,
)
from tests.e2e.conftest import wait_for


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """One demo folder set up by the Makefile's demo-setup steps, for the tests of this module in turn."""
    prepared = demo_prepare(tmp_path_factory.mktemp("demo") / "var")
    yield prepared
    kill_leftovers(prepared.var_dir)


def test_terminating_then_killing_the_demos_process_group_leaves_no_process_behind(demo: Demo) -> None:
    proc = demo_start(demo)
    try:
        demo_wait_ready(demo, proc)
        running = demo_processes(demo.var_dir)
        # gunicorn and its worker, the Celery worker and its pool, beat, stripe, the HL7 listener
        assert len(running) >= 8, running
        assert any("hl7_listen" in command for _, command in running), running

        demo_kill(proc)  # TERM to the group, KILL to the group 4 s later, as a terminal or supervisor does

        assert demo_wait_gone(demo.var_dir) == []
    finally:
        kill_leftovers(demo.var_dir)


def test_ctrl_c_stops_every_process_of_the_demo(demo: Demo) -> None:
    proc = demo_start(demo)
    try:
        demo_wait_ready(demo, proc)

        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's foreground group
        proc.wait(15)

        assert demo_wait_gone(demo.var_dir) == []
    finally:
        demo_kill(proc)
        kill_leftovers(demo.var_dir)


def test_a_new_run_stops_the_processes_an_earlier_run_left_behind(demo: Demo) -> None:
    first = demo_start(demo)
    second = None
    try:
        demo_wait_ready(demo, first)
        os.kill(first.pid, signal.SIGKILL)  # the script alone dies: its processes are orphaned
        first.wait(5)
        time.sleep(1)
        orphans = {pid for pid, command in demo_processes(demo.var_dir) if " worker " in command}
        assert orphans, "the earlier run's worker should still be running for this test to mean anything"

        second = demo_start(demo)
        wait_for(lambda: "an earlier run left behind" in demo.console_text(), seconds=30)
        demo_wait_ready(demo, second)

        assert not orphans & {pid for pid, _ in demo_processes(demo.var_dir)}
        assert second.poll() is None
    finally:
        if second is not None:
            demo_kill(second)
        kill_leftovers(demo.var_dir)

    assert demo_wait_gone(demo.var_dir) == []


def test_a_second_run_on_the_same_folder_refuses_to_start_while_the_first_runs(demo: Demo) -> None:
    with demo_running(demo):
        second = demo_start(demo)
        try:
            assert second.wait(30) == 1
        finally:
            demo_kill(second)
        assert "another run is using" in demo.console_text()
        assert len([p for p in demo_processes(demo.var_dir) if " beat " in p[1]]) == 1

    assert demo_wait_gone(demo.var_dir) == []
