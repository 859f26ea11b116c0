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
    Each system-latency sample may come with the same trade's E2E latency: the pair is kept or
    replaced together, so ``e2e_samples_us[i]`` and ``samples_us[i]`` are one trade.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY, seed: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.seen = 0
        self.samples: list[int] = []
        self.e2e_samples: list[int] = []
        self._random = random.Random(seed)

    def add(self, values: list[int], e2e: list[int] | None = None) -> None:
        """Offer system-latency ``values`` and, index for index, the same trades' ``e2e`` latencies.

        Without ``e2e`` a reservoir records no E2E samples at all (mixing would unpair them).
        """
        if e2e is not None and len(e2e) != len(values):
            raise ValueError(f"{len(values)} system samples but {len(e2e)} E2E samples")
        paired = e2e is not None and len(self.e2e_samples) == len(self.samples)
        if not paired:
            self.e2e_samples = []
        room = self.capacity - len(self.samples)
        if room > 0:  # below the capacity every sample is kept: extend, no per-value work
            self.samples.extend(values[:room])
            if paired:
                self.e2e_samples.extend(e2e[:room])  # type: ignore[index]
            self.seen += min(room, len(values))
            values = values[room:]
            e2e = e2e[room:] if paired else None  # type: ignore[index]
        for i, value in enumerate(values):
            self.seen += 1
            slot = self._random.randrange(self.seen)
            if slot < self.capacity:
                self.samples[slot] = value
                if paired:
                    self.e2e_samples[slot] = e2e[i]  # type: ignore[index]

    def write_json(self, path: Path | str) -> None:
        """``{"metric": "system_latency", "unit": "us", "seen": n, "samples_us": [...],
        "e2e_samples_us": [...]}`` (the last one empty when no E2E samples came)."""
        body = {
            "metric": "system_latency",
            "unit": "us",
            "seen": self.seen,
            "samples_us": self.samples,
            "e2e_samples_us": self.e2e_samples,
        }
        Path(path).write_text(json.dumps(body, separators=(",", ":")), encoding="utf-8")
