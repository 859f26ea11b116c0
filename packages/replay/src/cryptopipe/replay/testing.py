"""pytest plugin: a replay exchange per test, and the shared real Binance recordings.

Register it with ``pytest_plugins = ["cryptopipe.replay.testing"]`` in the root conftest (or import
the fixture into a package conftest)::

    def test_ingest(replay_exchange_factory):
        ex = replay_exchange_factory(replay_files=(str(real_data_file("btcusdt_20240808.gz")),), speed="max")
        ...ex.ws_url, ex.rest_url, ex.wait_finished(30), ex.history("BTCUSDT")...
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cryptopipe.replay.config import ReplayConfig
from cryptopipe.replay.threaded import ThreadedExchange

#: Overrides the location of the real recordings (a directory holding the *.gz files).
DATA_ENV = "CRYPTOPIPE_BINANCE_DATA"

ReplayExchangeFactory = Callable[..., ThreadedExchange]


def repo_root(start: Path | None = None) -> Path | None:
    """The workspace root: the nearest parent whose pyproject.toml declares ``[tool.uv.workspace]``."""
    for origin in (start or Path(__file__).resolve(), Path.cwd().resolve()):
        for parent in (origin, *origin.parents):
            pyproject = parent / "pyproject.toml"
            if pyproject.is_file() and "[tool.uv.workspace]" in pyproject.read_text(encoding="utf-8"):
                return parent
    return None


def real_data_dir() -> Path | None:
    """``../shared/data/binance`` beside the repository root (or ``$CRYPTOPIPE_BINANCE_DATA``)."""
    override = os.environ.get(DATA_ENV)
    if override:
        return Path(override) if Path(override).is_dir() else None
    root = repo_root()
    if root is None:
        return None
    for candidate in (root.parent / "shared" / "data" / "binance", root / "shared" / "data" / "binance"):
        if candidate.is_dir():
            return candidate
    return None


def real_data_file(name: str) -> Path:
    """A real Binance recording by file name; skips the test (saying why) if the data is absent."""
    directory = real_data_dir()
    if directory is None:
        pytest.skip(
            f"real Binance data not found: expected ../shared/data/binance beside the repository root "
            f"(or set {DATA_ENV})"
        )
    path = directory / name
    if not path.is_file():
        pytest.skip(f"real Binance data file {name} not found in {directory}")
    return path


@pytest.fixture
def replay_exchange_factory() -> Iterator[ReplayExchangeFactory]:
    """``replay_exchange_factory(**config_overrides) -> handle`` started in a thread, stopped at teardown."""
    started: list[ThreadedExchange] = []

    def factory(**overrides: Any) -> ThreadedExchange:
        handle = ThreadedExchange(ReplayConfig(**overrides)).start()
        started.append(handle)
        return handle

    yield factory
    for handle in reversed(started):
        handle.stop()


def count_stream_lines(path: Path, suffix: str = "@trade") -> int:
    """How many recorded frames in ``path`` belong to a stream ending in ``suffix`` (e.g. ``@trade``)."""
    import gzip

    needle = f'@{suffix.lstrip("@")}"'.encode()
    with path.open("rb") as probe:
        opener = gzip.open if probe.read(2) == b"\x1f\x8b" else open
    count = 0
    with opener(path, "rb") as stream:
        for line in stream:
            head = line[:120]
            start = head.find(b'"stream"')
            if start >= 0 and needle in head[start : start + 60]:
                count += 1
    return count
