"""Quiet by default: what reaches the terminal, what only the run's log file gets."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from cryptopipe.pipeline import say as say_module
from cryptopipe.pipeline.runlog import RunLog, _prune

INFO = "[ingest] 2026-12-07 10:00:00,123 INFO    cryptopipe.ingest.service: ingesting 2 streams"
WARNING = "[ingest] 2026-12-07 10:00:01,456 WARNING cryptopipe.ingest.connection: no frame for 30.0 s"
ERROR = "[prices-consumer] 2026-12-07 10:00:02,789 ERROR   cryptopipe.store.loop: Redis write failed"
TRACEBACK = "[prices-consumer] Traceback (most recent call last):"
FRAME = '[prices-consumer]   File "loop.py", line 1, in run'  # a continuation: shown with its record


def test_the_terminal_gets_warnings_and_the_file_gets_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.log"
    with RunLog(path) as log:
        for line in (INFO, WARNING, ERROR, TRACEBACK, FRAME):
            log.child(line)
        log.child("[dashboard]   You can now view your Streamlit app in your browser.")
        log.child("[alerting] WARNING: Using incubator modules: jdk.incubator.vector")
        say_module.say("cryptopipe up: running")
    shown = capsys.readouterr().err.splitlines()
    assert shown == [WARNING, ERROR, TRACEBACK, FRAME, "cryptopipe up: running"]
    written = path.read_text().splitlines()
    assert INFO in written
    assert "cryptopipe up: running" in written
    assert len(written) == 8
    # Once the run log is closed, nothing more is written to it.
    say_module.say("after")
    assert "after" not in path.read_text()


def test_verbose_shows_everything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with RunLog(tmp_path / "run.log", verbose=True) as log:
        log.child(INFO)
    assert capsys.readouterr().err.splitlines() == [INFO]


def test_our_own_info_logging_goes_to_the_file_not_the_terminal(tmp_path: Path) -> None:
    root = logging.getLogger()
    terminal = logging.StreamHandler()
    root.addHandler(terminal)
    try:
        with RunLog(tmp_path / "run.log") as log:
            assert terminal.level == logging.WARNING
            logging.getLogger("cryptopipe.infra").warning("a broker went away")
        assert "a broker went away" in log.path.read_text()
    finally:
        root.removeHandler(terminal)


def test_lines_from_several_threads_never_run_together(capsys: pytest.CaptureFixture[str]) -> None:
    lines = [f"line {i} " + "x" * 200 for i in range(200)]
    threads = [threading.Thread(target=say_module.say, args=(line,)) for line in lines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(capsys.readouterr().err.splitlines()) == sorted(lines)


def test_only_the_newest_logs_are_kept(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"up-{i}.log").write_text(str(i))
    (tmp_path / "other.txt").write_text("not a log")
    _prune(tmp_path, 2)
    assert len(list(tmp_path.glob("up-*.log"))) == 2
    assert (tmp_path / "other.txt").exists()
