"""The batch-like processes run at a lower CPU priority, their children too."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from cryptopipe.pipeline.priority import lower_priority, parse_cpus

# A parent with a second thread that starts a child only after the renice: the child inherits the
# starting thread's nice value, so every thread must have been reniced (a JVM starting Spark's
# Python workers from one of its threads).
_THREADED = (
    "import subprocess, sys, threading, time; "
    "go = threading.Event(); "
    "t = threading.Thread(target=lambda: (go.wait(), "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']))); t.start(); "
    "print('ready', flush=True); sys.stdin.readline(); go.set(); time.sleep(60)"
)

_PARENT = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print('ready', flush=True); time.sleep(60)"
)


@contextlib.contextmanager
def _running(source: str, **popen: Any) -> Iterator[subprocess.Popen[str]]:
    """``python -c source`` until the block ends (its whole tree killed then), once it printed
    ``ready``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", source], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **popen
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stdin):
            if stream is not None:
                stream.close()


def _with_children(pid: int) -> psutil.Process:
    """``pid``'s process once it has a child (10 s at most)."""
    parent = psutil.Process(pid)
    deadline = time.monotonic() + 10
    while not parent.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    return parent


def test_a_process_tree_is_reniced_and_new_children_inherit_it() -> None:
    with _running(_PARENT) as proc:
        parent = _with_children(proc.pid)
        assert lower_priority(proc.pid, 10) == 2  # the parent and its child
        assert [p.nice() for p in (parent, *parent.children())] == [10, 10]
        # Never raised back, and 0 changes nothing.
        assert lower_priority(proc.pid, 5) == 2
        assert parent.nice() == 10
        assert lower_priority(proc.pid, 0) == 0
    assert lower_priority(proc.pid, 10) == 0  # gone: skipped, not an error


def test_a_process_tree_can_be_kept_to_some_cpus() -> None:
    last = (psutil.cpu_count() or 1) - 1
    with _running(_PARENT) as proc:
        parent = _with_children(proc.pid)
        assert lower_priority(proc.pid, 0, (last,)) == 2
        assert [p.cpu_affinity() for p in (parent, *parent.children())] == [[last], [last]]
        assert parent.nice() == psutil.Process().nice()  # nice 0: the priority is left alone


def test_background_cpus_are_parsed_or_refused_naming_the_problem() -> None:
    assert parse_cpus("off") == parse_cpus("") == ()
    assert parse_cpus("0") == (0,)
    if (psutil.cpu_count() or 1) >= 2:
        assert parse_cpus("1,0") == (0, 1)
        assert parse_cpus("0-1") == (0, 1)
    with pytest.raises(ValueError, match="not a CPU list"):
        parse_cpus("one")
    with pytest.raises(ValueError, match="does not exist"):
        parse_cpus("4096")


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="kernel without autogroup")
def test_a_process_in_a_session_of_its_own_gets_its_autogroup_reniced() -> None:
    own_before = Path("/proc/self/autogroup").read_text()
    # as the run's services are started: a session, so an autogroup
    with _running("import time; print('ready', flush=True); time.sleep(60)", start_new_session=True) as proc:
        assert lower_priority(proc.pid, 10) == 1
        assert Path(f"/proc/{proc.pid}/autogroup").read_text().split()[-1] == "10"
        assert Path("/proc/self/autogroup").read_text() == own_before  # ours untouched


def test_a_child_started_later_by_any_thread_inherits_the_lower_priority() -> None:
    with _running(_THREADED) as proc:
        assert proc.stdin is not None
        target = psutil.Process().nice() + 5  # above whatever this test runs at
        assert target <= 19, "run this test below nice 15"
        assert lower_priority(proc.pid, target) == 1
        proc.stdin.write("go\n")
        proc.stdin.flush()
        (child,) = _with_children(proc.pid).children()
        assert child.nice() == target


def test_idle_puts_every_thread_under_sched_idle_and_later_children_inherit_it() -> None:
    with _running(_THREADED) as proc:
        assert proc.stdin is not None
        target = min(19, psutil.Process().nice() + 5)
        assert lower_priority(proc.pid, target, policy="idle") == 1
        threads = psutil.Process(proc.pid).threads()
        assert len(threads) == 2
        assert {os.sched_getscheduler(t.id) for t in threads} == {os.SCHED_IDLE}
        proc.stdin.write("go\n")
        proc.stdin.flush()
        (child,) = _with_children(proc.pid).children()
        assert os.sched_getscheduler(child.pid) == os.SCHED_IDLE
        assert child.nice() == target


def test_nice_0_turns_sched_idle_off_as_well() -> None:
    with _running(_PARENT) as proc:
        _with_children(proc.pid)
        assert lower_priority(proc.pid, 0, policy="idle") == 0
        assert os.sched_getscheduler(proc.pid) == os.SCHED_OTHER
