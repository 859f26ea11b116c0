"""How a run's processes are named and how the symbols are dealt to them."""

from __future__ import annotations

import re
from collections.abc import Sequence

from cryptopipe.schemas import ConfigError

_MEMBER_SUFFIX = re.compile(r"-[0-9]+$")


def member_names(component: str, count: int) -> list[str]:
    """Service names of ``count`` processes of one component: ``ingest``, ``ingest-2``, ...
    (the first keeps the component's name, so one process is named as before)."""
    return [component if i == 1 else f"{component}-{i}" for i in range(1, count + 1)]


def component_of(name: str) -> str:
    """The component a service name belongs to: ``ingest-2`` -> ``ingest``."""
    return _MEMBER_SUFFIX.sub("", name)


def parse_symbols(text: str) -> list[str]:
    return [s.strip().lower() for s in text.split(",") if s.strip()]


def split_symbols(symbols: Sequence[str], shards: int) -> list[list[str]]:
    """The symbols of each ingest shard: round-robin in the order given (shard i gets symbols i,
    i + shards, ...), so the shares are disjoint and differ by one symbol at most.

    Raises :class:`ConfigError` when there are more shards than symbols (a shard with nothing
    to stream).
    """
    if shards < 1:
        raise ConfigError(f"--ingest-shards must be at least 1, got {shards}")
    if shards > len(symbols):
        raise ConfigError(
            f"--ingest-shards {shards} exceeds the {len(symbols)} symbol(s) to stream "
            f"({','.join(symbols) or 'none'}): each shard needs at least one symbol"
        )
    return [list(symbols[i::shards]) for i in range(shards)]


def group_assigned(owned: Sequence[float], partitions: int) -> bool:
    """Whether a consumer group has settled: every member owns partitions (as many members as
    there are partitions when there are more members) and together they own all of them.

    ``owned`` is each member's ``cryptopipe_consumer_assigned_partitions``. A member gives up its
    partitions before a rebalance hands them out again, so no old assignment counts twice.
    """
    busy = sum(1 for count in owned if count > 0)
    return busy >= min(len(owned), partitions) and sum(owned) >= partitions
