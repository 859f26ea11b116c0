"""Several sources played as one, interleaved by their timelines."""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from cryptopipe.replay.sources.base import Source, SourceEvent


class MergedSource(Source):
    """Several sources played together, interleaved by ``pace_ns`` (each one's own order kept)."""

    def __init__(self, sources: list[Source]) -> None:
        super().__init__()
        self.sources = sources
        self.name = "+".join(s.name for s in sources)

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset().union(*(s.symbols for s in self.sources))

    @property
    def agg_symbols(self) -> frozenset[str]:
        return frozenset().union(*(s.agg_symbols for s in self.sources))

    @property
    def inactive_symbols(self) -> frozenset[str]:
        return frozenset().union(*(s.inactive_symbols for s in self.sources))

    def events(self) -> Iterator[SourceEvent]:
        if len(self.sources) == 1:
            yield from self.sources[0].events()
            return
        yield from heapq.merge(*(s.events() for s in self.sources), key=lambda e: e.pace_ns)

    def line_counts(self) -> tuple[int, int]:
        return sum(s.skipped_lines for s in self.sources), sum(s.bad_lines for s in self.sources)
