"""Small helpers tests import: wait for a condition, see what a process listens on, find Prometheus."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def require_prometheus_tool(binary: str) -> str:
    """The path of ``prometheus`` or ``promtool``. Missing, it fails the test (``.ci/run`` and
    ``apt-get install -y prometheus`` install both), unless CRYPTOPIPE_ALLOW_NO_PROMETHEUS=1 says
    this machine runs without it: then the test is skipped, with that reason."""
    path = shutil.which(binary)
    if path is None:
        message = (
            f"{binary} not on PATH: apt-get install -y prometheus (or set CRYPTOPIPE_ALLOW_NO_PROMETHEUS=1)"
        )
        if os.environ.get("CRYPTOPIPE_ALLOW_NO_PROMETHEUS") == "1":
            pytest.skip(message)
        pytest.fail(message)
    return path


def eventually(
    condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, message: str = ""
) -> T:
    """Poll ``condition()`` until it returns something truthy, and return that value.

    An ``AssertionError`` raised by the condition counts as "not yet" (so conditions may use
    ``assert``); any other exception propagates at once. On timeout, raise AssertionError with
    ``message`` and the last value or assertion seen.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = condition()
        except AssertionError as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message or 'condition not met'} (after {timeout:g} s; last: {last!r})")
        time.sleep(interval)


def listening_ips(pid: int) -> set[str]:
    """The addresses process ``pid`` listens on (TCP): a loopback-only server gives {"127.0.0.1"}."""
    import psutil

    connections = psutil.Process(pid).net_connections("tcp")
    return {c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN}
