"""stop_on_signals(interrupt=True): the first signal also breaks out (test_runtime_kit has the rest)."""

from __future__ import annotations

import logging
import os
import signal

import pytest

from cryptopipe.runtime import Interrupted, Stop, stop_on_signals


def test_interrupt_raises_once_then_a_second_signal_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    stop = Stop()
    with stop_on_signals(stop, interrupt=True), pytest.raises(Interrupted) as info:
        os.kill(os.getpid(), signal.SIGINT)  # the handler raises in this thread, right here
    assert info.value.signal_name == "SIGINT"
    assert stop.is_set()
    with caplog.at_level(logging.WARNING), stop_on_signals(stop, interrupt=True):
        os.kill(os.getpid(), signal.SIGINT)  # already stopping: no raise
        stop.wait(0.1)  # the handler runs here, in this thread
    assert any("still stopping" in r.getMessage() for r in caplog.records)
