"""Ingest in a test or a benchmark: the service on its own event loop in a thread.

handle = RunningIngest(settings, kafka).start()
...  # the caller stays synchronous; handle.stats are the live counts
handle.stop()  # flushes; re-raises whatever the service raised
"""

from __future__ import annotations

import asyncio
import threading

from cryptopipe.ingest.publisher import IngestStats
from cryptopipe.ingest.service import Ingest
from cryptopipe.ingest.settings import IngestSettings
from cryptopipe.schemas import KafkaSettings


class RunningIngest:
    """An :class:`Ingest` running on its own event loop in a thread."""

    def __init__(self, settings: IngestSettings, kafka: KafkaSettings) -> None:
        self.ingest = Ingest(settings, kafka)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="ingest-under-test", daemon=True)

    def _main(self) -> None:
        async def body() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await self.ingest.run(self._stop)

        try:
            asyncio.run(body())
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def start(self) -> RunningIngest:
        self._thread.start()
        assert self._ready.wait(10), "ingest loop did not start"
        return self

    @property
    def stats(self) -> IngestStats:
        return self.ingest.stats

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop and flush; raises what the service raised, AssertionError if it did not stop."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "ingest did not stop"
        if self.error is not None:
            raise self.error
