"""Our own services as child processes: started, watched, their logs shown, stopped in order.

Each service is ``python -m cryptopipe.cli <command> ...`` in its own process (real parallelism
on every core, and per-component resource figures), managed by :class:`cryptopipe.infra.LocalServer`
so that no child outlives ``cryptopipe up``. Secrets reach children through the environment,
never the command line (which ``ps`` shows to every user).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from cryptopipe.infra import LocalServer
from cryptopipe.infra.process import port_open

logger = logging.getLogger(__name__)


def _port_ready(port: int) -> Callable[[LocalServer], bool]:
    def ready(_server: LocalServer) -> bool:
        return port_open("127.0.0.1", port)

    return ready


def _file_ready(path: Path) -> Callable[[LocalServer], bool]:
    def ready(_server: LocalServer) -> bool:
        return path.exists() and path.stat().st_size > 0

    return ready


class Service(LocalServer):
    """One cryptopipe service process, ready when its port (``ready_port``, else the metrics port)
    or its ready file answers."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        metrics_port: int | None = None,
        ready_port: int | None = None,
        ready_file: Path | None = None,
        ready_timeout: float = 60.0,
        stop_grace: float = 20.0,
    ) -> None:
        port = ready_port or metrics_port
        if port is None and ready_file is None:
            raise ValueError("a service needs a port or a ready file to know it started")
        ready = _file_ready(ready_file) if ready_file is not None else _port_ready(port or 0)
        super().__init__(
            name,
            [sys.executable, "-m", "cryptopipe.cli", *command],
            ready=ready,
            ready_timeout=ready_timeout,
            stop_grace=stop_grace,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        )
        self.metrics_port = metrics_port
        self._follower: threading.Thread | None = None
        self._following = threading.Event()

    @property
    def metrics_url(self) -> str | None:
        return None if self.metrics_port is None else f"http://127.0.0.1:{self.metrics_port}/metrics"

    def follow_log(self, sink: Callable[[str], None]) -> None:
        """Copy the child's log lines, prefixed with its name, to ``sink`` as they are written."""
        if self.log_path is None:
            return
        self._following.set()
        path = self.log_path

        def follow() -> None:
            with open(path, encoding="utf-8", errors="replace") as handle:
                while self._following.is_set():
                    line = handle.readline()
                    if line:
                        sink(f"[{self.name}] {line.rstrip()}")
                    else:
                        time.sleep(0.1)
                for line in handle:  # whatever the child wrote while stopping
                    sink(f"[{self.name}] {line.rstrip()}")

        self._follower = threading.Thread(target=follow, name=f"log-{self.name}", daemon=True)
        self._follower.start()

    def stop(self) -> None:
        """Stop the child, then drain its log (the temp dir holding it goes last)."""
        if self.running():
            logger.info("stopping %s", self.name)
        self.terminate()
        self._following.clear()
        if self._follower is not None:
            self._follower.join(timeout=5)
            self._follower = None
        super().stop()
