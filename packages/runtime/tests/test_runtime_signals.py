"""stop_on_signals: a signal sets the stop; with interrupt=True the first one also breaks out."""

from __future__ import annotations

import logging
import os
import signal

import pytest

from cryptopipe.runtime import Interrupted, Stop, stop_on_signals


def test_a_signal_sets_the_stop_and_the_old_handler_comes_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = Stop()
    with stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)
    assert stop.reason == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


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
