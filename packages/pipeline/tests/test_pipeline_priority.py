"""The batch-like processes run at a lower CPU priority, their children too."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from cryptopipe.pipeline.priority import lower_priority

_PARENT = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print('ready', flush=True); time.sleep(60)"
)


def test_a_process_tree_is_reniced_and_new_children_inherit_it() -> None:
    proc = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 10
        while not parent.children() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lower_priority(proc.pid, 10) == 2  # the parent and its child
        assert [p.nice() for p in (parent, *parent.children())] == [10, 10]
        # Never raised back, and 0 changes nothing.
        assert lower_priority(proc.pid, 5) == 2
        assert parent.nice() == 10
        assert lower_priority(proc.pid, 0) == 0
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert lower_priority(proc.pid, 10) == 0  # gone: skipped, not an error
