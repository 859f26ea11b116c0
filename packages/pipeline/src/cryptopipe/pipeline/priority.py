"""Keeping the latency-critical path first on a small machine: the batch-like processes (the Spark
job with its JVM and Python workers, the dashboard, Prometheus) run at a lower CPU priority, so
that ingest, the broker, the prices consumer and Redis get a core the moment they need one.

Two levers, both per thread (Linux keeps the scheduling policy and the nice value per thread, and
threads and processes started later inherit them from the thread that starts them):

- ``SCHED_IDLE`` (the default): the kernel runs such a thread only when nothing else of its group
  wants the CPU, and a waking normal thread preempts it at once. That is what bounds the prices
  path's tail while Spark runs a micro-batch; a nice value only shares the CPU out in proportion.
- a nice value, kept for ``--background-sched nice``, and harmless alongside ``SCHED_IDLE``.

Both act only between processes of one scheduling group, and on Linux with autogroup
(``kernel.sched_autogroup_enabled``) every session is its own group. So every server of a run
stays in the orchestrator's session (``infra/process.py`` gives each its own process group, not
its own session), and a process that is in a session of its own anyway has that session's group
reniced (``/proc/PID/autogroup``), unless it is this process's own group.

Optionally they are also kept to some CPUs (``--background-cpus``): a harder fence, which also
takes those CPUs' share from Spark. Which to use was measured (README, "Sustained operation")."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import psutil

logger = logging.getLogger(__name__)

#: The components that are batch-like: a delay of a few milliseconds costs them nothing.
BACKGROUND = ("alerting", "dashboard", "prometheus")

Policy = Literal["idle", "nice"]


def lower_priority(pid: int, nice: int, cpus: Sequence[int] = (), policy: Policy = "nice") -> int:
    """Renice a process and every descendant it has now (later ones inherit), with every thread
    under ``SCHED_IDLE`` too when ``policy`` is ``idle``, and keep them to ``cpus`` when given;
    returns how many processes were changed. ``nice`` 0 turns the whole of it off.

    A process that is gone, or that may not be changed, is skipped with a debug line: this is a
    preference, never a reason to stop a run.
    """
    if nice <= 0:
        policy = "nice"
    if nice <= 0 and not cpus:
        return 0
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    done = 0
    groups: set[str] = set()
    for process in tree:
        try:
            if nice > 0:
                _renice_threads(process, nice, idle=policy == "idle")
                groups.add(_lower_autogroup(process.pid, nice, groups))
            if cpus:
                process.cpu_affinity(list(cpus))
            done += 1
        except (psutil.Error, OSError, ValueError) as exc:
            logger.debug("could not lower the priority of %s: %s", process.pid, exc)
    return done


def _renice_threads(process: psutil.Process, nice: int, *, idle: bool) -> None:
    """Renice every thread (and make it ``SCHED_IDLE``): Linux keeps both per thread, and
    ``setpriority`` on a pid changes only its main thread. A JVM's other threads (one of which
    starts Spark's Python workers, which inherit its value) would otherwise stay as they were."""
    for thread in process.threads():
        try:
            if os.getpriority(os.PRIO_PROCESS, thread.id) < nice:
                os.setpriority(os.PRIO_PROCESS, thread.id, nice)
            if idle and os.sched_getscheduler(thread.id) != os.SCHED_IDLE:
                os.sched_setscheduler(thread.id, os.SCHED_IDLE, os.sched_param(0))
        except OSError as exc:  # the thread ended meanwhile
            logger.debug("could not renice thread %s of %s: %s", thread.id, process.pid, exc)


def _autogroup(pid: int | str) -> tuple[str, int] | None:
    """(group, nice) from ``/proc/PID/autogroup`` (``/autogroup-25 nice 0``); None without one."""
    try:
        name, _, value = Path(f"/proc/{pid}/autogroup").read_text().split()
        return name, int(value)
    except (OSError, ValueError):
        return None


def _lower_autogroup(pid: int, nice: int, done: set[str]) -> str:
    """Renice ``pid``'s autogroup (not ours: that would slow the orchestrator's own session)."""
    group = _autogroup(pid)
    if group is None or group[0] in done or group[1] >= nice:
        return group[0] if group else ""
    own = _autogroup("self")
    if own is not None and own[0] == group[0]:
        return group[0]
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError as exc:
        logger.debug("could not renice the autogroup of %s: %s", pid, exc)
    return group[0]


def parse_cpus(text: str) -> tuple[int, ...]:
    """``--background-cpus``: ``off`` or empty for none, else a comma list of CPU numbers and
    ranges (``1``, ``0,2``, ``2-3``). Raises ValueError naming what is wrong."""
    text = text.strip().lower()
    if text in ("", "off", "none"):
        return ()
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise ValueError(f"not a CPU list: {text!r} (e.g. 1, 0,2 or 2-3; off for none)")
        cpus.update(range(int(low), int(high or low) + 1))
    available = psutil.cpu_count() or 1
    if max(cpus) >= available:
        raise ValueError(f"CPU {max(cpus)} does not exist: this machine has CPUs 0-{available - 1}")
    return tuple(sorted(cpus))
