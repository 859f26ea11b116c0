"""The shell of a watcher that polls while a fault scenario runs: a Redis client, a thread that
calls :meth:`Poller.tick` every ``interval`` seconds, and start/stop."""

from __future__ import annotations

import threading
import time
from typing import Self

import redis as redis_lib


class Poller:
    """Calls :meth:`tick` on a daemon thread every ``interval`` seconds between :meth:`start` and
    :meth:`stop`; ``_client`` is its Redis connection (short timeouts: a Redis that is down makes a
    poll miss, never hang)."""

    def __init__(self, redis_url: str, interval: float, name: str) -> None:
        self.interval = interval
        self._client = redis_lib.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._client.close()

    def tick(self, started: float) -> None:
        """One round of polls; ``started`` is its monotonic start time."""
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.tick(started)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
