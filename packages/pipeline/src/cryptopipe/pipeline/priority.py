"""Keeping the latency-critical path first on a small machine: the batch-like processes (the Spark
job with its JVM and Python workers, the dashboard, Prometheus) run at a lower CPU priority, so
that ingest, the broker, the prices consumer and Redis get a core the moment they need one."""

from __future__ import annotations

import logging

import psutil

logger = logging.getLogger(__name__)

#: The components that are batch-like: a delay of a few milliseconds costs them nothing.
BACKGROUND = ("alerting", "dashboard", "prometheus")


def lower_priority(pid: int, nice: int) -> int:
    """Renice a process and every descendant it has now (later ones inherit); returns how many.

    A process that is gone, or that may not be reniced, is skipped with a debug line: this is a
    preference, never a reason to stop a run.
    """
    if nice <= 0:
        return 0
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    done = 0
    for process in tree:
        try:
            process.nice(max(process.nice(), nice))
            done += 1
        except psutil.Error as exc:
            logger.debug("could not renice %s: %s", process.pid, exc)
    return done
