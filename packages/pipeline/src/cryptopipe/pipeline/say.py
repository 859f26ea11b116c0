"""The run's output: one line for the person running the pipeline, and the run's log file.

Every line goes out in one write under a lock, so lines from several threads (a service's log
being followed, the progress line) never run together. While a log file is open
(:class:`cryptopipe.pipeline.runlog.RunLog`), every line is also written there.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

_lock = threading.Lock()
_files: list[TextIO] = []


def say(line: str) -> None:
    """``line`` on the terminal (stderr) and in the run's log file."""
    with _lock:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
        for handle in _files:
            handle.write(line + "\n")
            handle.flush()


def record(line: str) -> None:
    """``line`` in the run's log file only."""
    with _lock:
        for handle in _files:
            handle.write(line + "\n")
            handle.flush()


def attach(handle: TextIO) -> None:
    with _lock:
        _files.append(handle)


def detach(handle: TextIO) -> None:
    with _lock:
        if handle in _files:
            _files.remove(handle)
