"""PySpark's Python worker daemon, quiet when Spark closes a worker's socket on purpose.

Stopping a streaming query while a Python task runs (``AlertingJob.stop`` once its grace is
over, or ``cryptopipe up`` stopping a job that is behind) makes the JVM close that task's
socket. Over Unix sockets, pyspark's own daemon then prints the worker's ``BrokenPipeError``
traceback to the executor's stderr, which ``cryptopipe up`` shows its user. It says nothing
new: Spark ended the task itself, and the cut-short micro-batch is replayed from the checkpoint.

This module runs pyspark's daemon unchanged, except that a worker whose JVM side has gone away
exits quietly, and a failed flush ends the worker (Spark's own
``spark.python.daemon.killWorkerOnFlushFailure`` behaviour) instead of printing a traceback and
carrying on with a socket in an unknown state. Every other error is printed as before.

:func:`cryptopipe.alerting.spark.session_conf` names it as ``spark.python.daemon.module`` in
local mode only: a cluster's executors need not have cryptopipe installed.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

#: What a worker meets when the JVM closed its socket under it.
PEER_GONE = (BrokenPipeError, ConnectionResetError, EOFError)

Worker = Callable[[socket.socket, bool], int]


def quiet_when_peer_gone(worker: Worker) -> Worker:
    """``worker``, returning 1 (pyspark's "do not reuse this worker") instead of raising when
    the JVM side of its socket is gone."""

    def run(sock: socket.socket, authenticated: bool) -> int:
        try:
            return worker(sock, authenticated)
        except PEER_GONE:
            return 1

    return run


def main() -> None:
    from pyspark import daemon

    os.environ.setdefault("PYTHON_DAEMON_KILL_WORKER_ON_FLUSH_FAILURE", "1")
    daemon.worker = quiet_when_peer_gone(daemon.worker)  # type: ignore[assignment]
    daemon.manager()


if __name__ == "__main__":
    main()
