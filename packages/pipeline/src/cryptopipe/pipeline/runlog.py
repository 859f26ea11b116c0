"""Quiet by default: a run's full log in a file, and on the terminal only what a person acts on.

The terminal gets ``up``'s own lines and what the services say at WARNING or above (with their
tracebacks); ``verbose`` shows everything. The file gets every line of every service and of the
orchestrator. Its path is printed when the run starts, and only the newest logs are kept.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from types import TracebackType

from cryptopipe.pipeline.say import attach, detach, record, say

#: How many run logs are kept in the default log directory (the oldest go first).
KEEP_LOGS = 20

_RECORD = re.compile(r"^\[[\w.-]+\] \d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>[A-Z]+)\b")
_QUIET_LEVELS = {"DEBUG", "INFO"}
_LOUD_WORDS = ("WARN", "ERROR", "Error", "Exception", "Traceback", "FATAL")
#: Lines that look loud and say nothing anyone can act on: the JVM's notice that Spark uses an
#: incubator module (Spark adds it, and Java 17 has no switch to silence the notice).
_NOISE = ("Using incubator modules: jdk.incubator.vector",)


def default_log_dir() -> Path:
    """``$XDG_STATE_HOME/cryptopipe/logs`` (``~/.local/state/cryptopipe/logs``)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "cryptopipe" / "logs"


class RunLog:
    """The run's log file, and the filter that decides which service lines reach the terminal."""

    def __init__(self, path: Path | None = None, *, verbose: bool = False) -> None:
        if path is None:
            folder = default_log_dir()
            path = folder / f"up-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
            _prune(folder, KEEP_LOGS - 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.verbose = verbose
        self._handle = path.open("a", encoding="utf-8")
        #: Per service, whether its last record was shown (its traceback follows it).
        self._shown: dict[str, bool] = {}
        self._handler = logging.FileHandler(path, encoding="utf-8")

    def __enter__(self) -> RunLog:
        attach(self._handle)
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(self._handler)
        if not self.verbose:
            for handler in root.handlers:
                if isinstance(handler, logging.StreamHandler) and not isinstance(
                    handler, logging.FileHandler
                ):
                    handler.setLevel(logging.WARNING)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        logging.getLogger().removeHandler(self._handler)
        self._handler.close()
        detach(self._handle)
        self._handle.close()

    def child(self, line: str) -> None:
        """One line of a service's log (prefixed ``[name]``): always in the file, on the terminal
        when verbose, when it is a record at WARNING or above, or what follows one (a traceback)."""
        if self.verbose or self._visible(line):
            say(line)
        else:
            record(line)

    def _visible(self, line: str) -> bool:
        if any(noise in line for noise in _NOISE):
            return False
        service, _, text = line.partition("] ")
        match = _RECORD.match(line)
        if match is not None:
            shown = match.group("level") not in _QUIET_LEVELS
        elif text[:1].isspace() and self._shown.get(service, False):
            shown = True  # a continuation of a record shown: its traceback
        else:
            shown = any(word in line for word in _LOUD_WORDS)
        self._shown[service] = shown
        return shown


def _prune(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` run logs in ``folder``."""
    if not folder.is_dir():
        return
    logs = sorted(folder.glob("up-*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in logs[keep:]:
        old.unlink(missing_ok=True)
