"""Stopping a child process: ask it, give it a grace period, then kill it."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from typing import Any


def stop_process(
    proc: subprocess.Popen[Any], sig: signal.Signals = signal.SIGTERM, grace: float = 10.0
) -> bool:
    """Send ``sig`` to ``proc`` if it still runs, wait up to ``grace`` seconds, then SIGKILL it.

    Returns True when it had to be killed (the caller says so, in its own words). Idempotent: a
    process that already exited is left alone (and reaped).
    """
    if proc.poll() is not None:
        return False
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        return True
    return False
