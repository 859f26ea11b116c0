"""Exact latency samples for benchmarks: a bounded, uniform reservoir written as JSON."""

from __future__ import annotations

import json
import random
from pathlib import Path

DEFAULT_CAPACITY = 1_000_000


class LatencyReservoir:
    """Keeps a uniform sample of at most ``capacity`` values (Vitter's algorithm R).

    Pass ``reservoir.add`` as ``ConsumerLoop(latency_sink=...)``; below the capacity it holds
    every sample, so percentiles are exact rather than interpolated from histogram buckets.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY, seed: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.seen = 0
        self.samples: list[int] = []
        self._random = random.Random(seed)

    def add(self, values: list[int]) -> None:
        room = self.capacity - len(self.samples)
        if room > 0:
            self.samples.extend(values[:room])
            self.seen += min(room, len(values))
            values = values[room:]
        for value in values:
            self.seen += 1
            slot = self._random.randrange(self.seen)
            if slot < self.capacity:
                self.samples[slot] = value

    def write_json(self, path: Path | str) -> None:
        """``{"metric": "system_latency", "unit": "us", "seen": n, "samples_us": [...]}``"""
        Path(path).write_text(
            json.dumps(
                {"metric": "system_latency", "unit": "us", "seen": self.seen, "samples_us": self.samples},
                separators=(",", ":"),
            ),
            encoding="utf-8",
        )
