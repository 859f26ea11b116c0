"""One line for the person running the pipeline: stderr, flushed at once."""

from __future__ import annotations

import sys


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
