"""A stop request that threads, signal handlers and asyncio tasks can all wait for.

Every service's ``run(settings, stop)`` takes a :class:`Stop`. The CLI sets it on SIGINT/SIGTERM
(:func:`stop_on_signals`), ``up`` sets it by signalling the child, a test sets it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

logger = logging.getLogger(__name__)

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stop:
    """Set once, from anywhere (a thread, a signal handler, a task); waited for as thread or task."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._loops: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.reason = ""

    def set(self, reason: str = "") -> None:
        with self._lock:
            if self._event.is_set():
                return
            self.reason = reason
            self._event.set()
            loops = list(self._loops)
        for loop, event in loops:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nothing waits there any more
                loop.call_soon_threadsafe(event.set)

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block the calling thread until set (True) or until ``timeout`` passes (False)."""
        return self._event.wait(timeout)

    def asyncio_event(self) -> asyncio.Event:
        """An :class:`asyncio.Event` of the running loop that is set when this is (now, if already)."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        with self._lock:
            if self._event.is_set():
                event.set()
            else:
                self._loops.append((loop, event))
        return event


class Interrupted(BaseException):
    """Raised in the main thread by ``stop_on_signals(stop, interrupt=True)`` on the first signal.

    A BaseException, so no ``except Exception`` swallows it: it breaks out of a call that blocks
    for long (a cluster's start) where checking ``stop`` is not possible.
    """

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


@contextlib.contextmanager
def stop_on_signals(stop: Stop, *, interrupt: bool = False) -> Iterator[Stop]:
    """While inside, SIGINT and SIGTERM set ``stop`` (main thread only; elsewhere a no-op).

    With ``interrupt``, the first signal also raises :class:`Interrupted` in the main thread.
    The previous handlers come back on exit. A second signal while stopping is logged (WARNING,
    so a user pressing Ctrl-C again sees it), not fatal: the service is already finishing its
    batch and flushing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            logger.warning("%s received again: still stopping, please wait", name)
            return
        logger.info("%s received: stopping", name)
        stop.set(name)
        if interrupt:
            raise Interrupted(name)

    previous = {sig: signal.signal(sig, handler) for sig in _SIGNALS}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
