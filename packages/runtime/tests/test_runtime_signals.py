"""stop_on_signals(interrupt=True), whose first signal also breaks out (test_runtime_kit has the rest),
and stop_process for children."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import pytest

from cryptopipe.runtime import Interrupted, Stop, stop_on_signals, stop_process


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


def _child(code: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_stop_process_asks_first_and_kills_only_what_ignores_it() -> None:
    with _child("import time; print('ready', flush=True); time.sleep(60)") as polite:
        assert stop_process(polite, grace=30.0) is False
        assert polite.returncode == -signal.SIGTERM
    stubborn_code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
        "time.sleep(60)"
    )
    with _child(stubborn_code) as stubborn:
        assert stop_process(stubborn, grace=0.5) is True
        assert stubborn.returncode == -signal.SIGKILL
        assert stop_process(stubborn) is False  # already gone: nothing to do
