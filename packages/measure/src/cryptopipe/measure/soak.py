"""What a long run is watched for: each process's resident memory over time (and its slope after
a warm-up), and the latency of each window of the run, from the histograms' deltas."""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

from cryptopipe.observability import Scrape
from cryptopipe.observability.query import Series, histogram_quantile

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


@dataclass(frozen=True)
class TreeMemory:
    """One sample of a process tree's memory, in MB.

    ``rss`` counts a page once per process that maps it, so a forked Python worker that shares
    most of its pages with the daemon it came from counts them again; ``pss`` (proportional set
    size) splits each shared page between the processes that share it, so it adds up to what
    the tree really holds. ``processes`` tells how many processes the tree had; ``parts`` splits
    the tree's PSS by part: ``self`` (the root) and its descendants by program name (the alerting
    job's ``java``, its Python workers), so one part's growth is not hidden by another's swings;
    empty where the kernel gives no PSS."""

    rss: float
    pss: float | None
    processes: int
    parts: Mapping[str, float] = field(default_factory=dict)


#: kcmp(2)'s number where this runs (Linux x86_64 and arm64), and its KCMP_VM type.
_SYS_KCMP = {"x86_64": 312, "aarch64": 272}.get(platform.machine())
_KCMP_VM = 1
_libc = ctypes.CDLL(None, use_errno=True) if _SYS_KCMP is not None and os.name == "posix" else None


def same_address_space(pid: int, other: int) -> bool:
    """Whether two tasks (processes or threads) share one address space (kcmp(2) with KCMP_VM);
    False where that cannot be told."""
    if _libc is None:
        return False
    return bool(_libc.syscall(_SYS_KCMP, pid, other, _KCMP_VM, 0, 0) == 0)


def shares_parent_memory(process: psutil.Process) -> bool:
    """Whether ``process`` runs in its parent's address space: a child between vfork (or
    posix_spawn, which the JVM uses to run a command) and its exec. Its /proc memory figures are
    its parent's, whole, so adding them would count the parent twice: the Spark JVM, which runs
    a command for Hadoop's local file system now and then, seemed to double for a moment."""
    try:
        return same_address_space(process.ppid(), process.pid)
    except psutil.Error:
        return False


def tree_memory(pid: int) -> TreeMemory | None:
    """Memory of a process and all its descendants (a Spark JVM and its Python workers count with
    the alerting job); None once it is gone. PSS is None where the kernel does not give it. A
    child still in its parent's address space (:func:`shares_parent_memory`) holds nothing of its
    own and is left out."""
    try:
        root = psutil.Process(pid)
        tree = [root, *(p for p in root.children(recursive=True) if not shares_parent_memory(p))]
    except psutil.Error:
        return None
    rss = 0
    pss: int | None = 0
    counted = 0
    parts: dict[str, float] = {}
    for process in tree:
        try:
            part = "self" if process is root else process.name()
            if pss is None:
                own = process.memory_info().rss
                rss += own
            else:
                full = process.memory_full_info()  # /proc/PID/smaps_rollup
                rss += full.rss
                own = getattr(full, "pss", 0)
                pss += own
            parts[part] = parts.get(part, 0.0) + own / 1e6
            counted += 1
        except psutil.AccessDenied:
            pss = None  # no smaps for this one: RSS only, for the whole tree
            try:
                rss += process.memory_info().rss
                counted += 1
            except psutil.Error:
                continue
        except psutil.Error:
            continue
    if counted == 0:
        return None
    if pss is None:
        return TreeMemory(rss / 1e6, None, counted)
    return TreeMemory(rss / 1e6, pss / 1e6, counted, parts)


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process and all its descendants, in MB; None once it is gone."""
    memory = tree_memory(pid)
    return None if memory is None else memory.rss


@dataclass
class MemoryTrace:
    """Each named process tree's memory, sampled over the run: ``(seconds since start, memory)``."""

    samples: dict[str, list[tuple[float, TreeMemory]]] = field(default_factory=dict)

    def sample(self, at_s: float, pids: Mapping[str, int]) -> None:
        for name, pid in pids.items():
            value = tree_memory(pid)
            if value is not None:
                self.samples.setdefault(name, []).append((at_s, value))

    def report(self, warmup_s: float) -> dict[str, dict[str, Any]]:
        """Per process tree: RSS and PSS at the end of the warm-up, at the end, their peaks and
        their slopes after it, when the peak was and how many processes the tree had then, and
        the most processes it had."""
        out: dict[str, dict[str, Any]] = {}
        for name, points in sorted(self.samples.items()):
            steady = [(t, v) for t, v in points if t >= warmup_s] or points[-1:]
            row: dict[str, Any] = {
                "rss_start_mb": round(steady[0][1].rss, 1),
                "rss_end_mb": round(steady[-1][1].rss, 1),
                "rss_max_mb": round(max(v.rss for _, v in points), 1),
                "rss_slope_mb_per_h": slope_per_hour([(t, v.rss) for t, v in steady]),
            }
            pss = [(t, v.pss) for t, v in steady if v.pss is not None]
            every_pss = [v.pss for _, v in points if v.pss is not None]
            row["pss_start_mb"] = round(pss[0][1], 1) if pss else None
            row["pss_end_mb"] = round(pss[-1][1], 1) if pss else None
            row["pss_max_mb"] = round(max(every_pss), 1) if every_pss else None
            peak_at, peak = max(points, key=lambda point: point[1].pss or point[1].rss)
            row["peak_at_s"] = round(peak_at, 1)  # when the tree held the most (PSS, else RSS)
            row["peak_processes"] = peak.processes
            row["pss_slope_mb_per_h"] = slope_per_hour(pss) if pss else None
            row["processes_max"] = max(v.processes for _, v in points)
            parts = _parts(steady)
            if len(parts) > 1:
                row["parts"] = parts
            out[name] = row
        return out


def _parts(steady: Sequence[tuple[float, TreeMemory]]) -> dict[str, dict[str, float | None]]:
    """Each part of a tree (see :class:`TreeMemory`) after the warm-up: PSS at its start and end
    and its slope, from the samples that had that part (a Python worker comes and goes)."""
    names = sorted({part for _, memory in steady for part in memory.parts})
    out: dict[str, dict[str, float | None]] = {}
    for part in names:
        points = [(t, memory.parts[part]) for t, memory in steady if part in memory.parts]
        out[part] = {
            "pss_start_mb": round(points[0][1], 1),
            "pss_end_mb": round(points[-1][1], 1),
            "pss_slope_mb_per_h": slope_per_hour(points),
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
