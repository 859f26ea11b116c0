"""Exact latency samples for benchmarks: a bounded, uniform reservoir written as JSON."""

from __future__ import annotations

import json
import random
from pathlib import Path

DEFAULT_CAPACITY = 1_000_000

#: Per-trade figures that may come with each system-latency sample, kept or replaced with it.
PAIRED = ("e2e", "fetch_to_written")


class LatencyReservoir:
    """Keeps a uniform sample of at most ``capacity`` values (Vitter's algorithm R).

    Pass ``reservoir.add`` as ``ConsumerLoop(latency_sink=...)``; below the capacity it holds
    every sample, so percentiles are exact rather than interpolated from histogram buckets.
    Each system-latency sample may come with the same trade's E2E latency and its
    fetch-to-written part (the consumer's own share: decode and Redis write). They are kept or
    replaced together, so ``e2e_samples[i]``, ``fetch_to_written_samples[i]`` and ``samples[i]``
    are one trade.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY, seed: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.seen = 0
        self.samples: list[int] = []
        self.paired: dict[str, list[int]] = {name: [] for name in PAIRED}
        self._random = random.Random(seed)

    @property
    def e2e_samples(self) -> list[int]:
        return self.paired["e2e"]

    @property
    def fetch_to_written_samples(self) -> list[int]:
        return self.paired["fetch_to_written"]

    def add(
        self, values: list[int], e2e: list[int] | None = None, fetch_to_written: list[int] | None = None
    ) -> None:
        """Offer system-latency ``values`` and, index for index, the same trades' ``e2e`` and
        ``fetch_to_written`` figures.

        A paired figure missing from one call is dropped for the whole reservoir (mixing would
        unpair it).
        """
        offered = {"e2e": e2e, "fetch_to_written": fetch_to_written}
        for name, column in offered.items():  # refuse before changing anything
            if column is not None and len(column) != len(values):
                raise ValueError(f"{len(values)} system samples but {len(column)} {name} samples")
        columns: dict[str, list[int]] = {}
        for name, column in offered.items():
            if column is not None and len(self.paired[name]) == len(self.samples):
                columns[name] = column
            else:
                self.paired[name] = []
        room = self.capacity - len(self.samples)
        if room > 0:  # below the capacity every sample is kept: extend, no per-value work
            self.samples.extend(values[:room])
            for name, column in columns.items():
                self.paired[name].extend(column[:room])
            self.seen += min(room, len(values))
            values = values[room:]
            columns = {name: column[room:] for name, column in columns.items()}
        for i, value in enumerate(values):
            self.seen += 1
            slot = self._random.randrange(self.seen)
            if slot < self.capacity:
                self.samples[slot] = value
                for name, column in columns.items():
                    self.paired[name][slot] = column[i]

    def write_json(self, path: Path | str) -> None:
        """``{"metric": "system_latency", "unit": "us", "seen": n, "samples_us": [...],
        "e2e_samples_us": [...], "fetch_to_written_samples_us": [...]}`` (a paired list is
        empty when its figures did not come with every sample)."""
        body = {
            "metric": "system_latency",
            "unit": "us",
            "seen": self.seen,
            "samples_us": self.samples,
            **{f"{name}_samples_us": column for name, column in self.paired.items()},
        }
        Path(path).write_text(json.dumps(body, separators=(",", ":")), encoding="utf-8")
