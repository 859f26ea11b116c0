"""What a long run is watched for: each process's resident memory over time (and its slope after
a warm-up), and the latency of each window of the run, from the histograms' deltas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import psutil

from cryptopipe.observability import Scrape
from cryptopipe.observability.query import Series, histogram_quantile

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process and all its descendants (a Spark JVM and its Python workers
    count with the alerting job), in MB; None once it is gone."""
    try:
        process = psutil.Process(pid)
        total: int = process.memory_info().rss
        for child in process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                continue
    except psutil.Error:
        return None
    return total / 1e6


@dataclass
class MemoryTrace:
    """Each named process's memory, sampled over the run: ``(seconds since start, MB)`` pairs."""

    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def sample(self, at_s: float, pids: Mapping[str, int]) -> None:
        for name, pid in pids.items():
            value = rss_mb(pid)
            if value is not None:
                self.samples.setdefault(name, []).append((at_s, value))

    def report(self, warmup_s: float) -> dict[str, dict[str, float | None]]:
        """Per process: RSS at the end of the warm-up and at the end, and the slope after it."""
        out: dict[str, dict[str, float | None]] = {}
        for name, points in sorted(self.samples.items()):
            steady = [(t, v) for t, v in points if t >= warmup_s] or points[-1:]
            out[name] = {
                "rss_start_mb": round(steady[0][1], 1),
                "rss_end_mb": round(steady[-1][1], 1),
                "rss_max_mb": round(max(v for _, v in points), 1),
                "rss_slope_mb_per_h": slope_per_hour(steady),
            }
        return out


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float | None:
    """The least-squares slope of ``(seconds, MB)`` points, in MB per hour (None below 2 points)."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return None
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / spread
    return round(slope * 3600, 2)


def window_percentiles_ms(before: Scrape, after: Scrape, histogram: Series) -> dict[str, float | None]:
    """p50/p95/p99 in ms of what ``histogram`` observed between two scrapes (its buckets' deltas:
    interpolated inside a bucket, as Prometheus' histogram_quantile does)."""
    start = dict(before.buckets(histogram))
    delta = [(upper, count - start.get(upper, 0.0)) for upper, count in after.buckets(histogram)]
    out: dict[str, float | None] = {}
    for name, q in QUANTILES.items():
        value = histogram_quantile(q, delta)
        out[name] = None if value is None else round(value * 1000, 3)
    return out
