"""How a catalogue metric is defined: its kind, buckets and catalogue entry, registered once.

Each area module (``common``, ``ingest``, ``consumer``, ...) builds its metrics with
:func:`counter`, :func:`gauge` and :func:`histogram`, which also note them in the catalogue.
Counters and histograms are exported without their ``_created`` twin (one more line per series,
read by nothing of ours), in every process that imports the catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # type: ignore[no-untyped-call]


def _exponential(start: float, factor: float, stop: float) -> tuple[float, ...]:
    buckets = [start]
    while buckets[-1] * factor < stop:
        buckets.append(round(buckets[-1] * factor, 9))
    buckets.append(stop)
    return tuple(buckets)


#: 50 µs .. 60 s, ~1.5x apart: fine enough that p95/p99 interpolate to within a few percent.
LATENCY_BUCKETS = _exponential(50e-6, 1.5, 60.0)
#: Records per consumer batch.
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    name: str
    type: str
    labels: tuple[str, ...]
    component: str
    meaning: str


_ENTRIES: list[CatalogueEntry] = []


def _note(name: str, kind: str, labels: tuple[str, ...], component: str, meaning: str) -> None:
    _ENTRIES.append(CatalogueEntry(name, kind, labels, component, meaning))


def counter(name: str, meaning: str, labels: tuple[str, ...], component: str) -> Counter:
    _note(name, "counter", labels, component, meaning)
    return Counter(name, meaning, labels, registry=REGISTRY)


def gauge(name: str, meaning: str, labels: tuple[str, ...], component: str) -> Gauge:
    _note(name, "gauge", labels, component, meaning)
    return Gauge(name, meaning, labels, registry=REGISTRY)


def histogram(
    name: str,
    meaning: str,
    labels: tuple[str, ...],
    component: str,
    buckets: tuple[float, ...] = LATENCY_BUCKETS,
) -> Histogram:
    _note(name, "histogram", labels, component, meaning)
    return Histogram(name, meaning, labels, buckets=buckets, registry=REGISTRY)


def catalogue() -> list[CatalogueEntry]:
    """Every catalogue metric, in definition order (names without the _total suffix)."""
    return list(_ENTRIES)
