"""From scraped metric rows and raw samples to the run's summary rows (tidy: metric, labels, stat, value).

Every metric in the catalogue that the run exposed gets rows: histograms their mean, p95 and p99
(from the last scrape's buckets, as Prometheus' histogram_quantile computes them); counters
their total and rate over the run; gauges their mean, max and last value. The raw samples add
exact mean/p50/p95/p99 per latency kind.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from cryptopipe.observability.metrics import catalogue
from cryptopipe.observability.query import histogram_quantile

Row = dict[str, Any]


def _kinds() -> dict[str, str]:
    return {entry.name: entry.type for entry in catalogue()}


def _series(rows: Iterable[Row]) -> dict[tuple[str, str], list[tuple[float, float]]]:
    series: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        series[(row["metric"], row["labels"])].append((row["time_s"], row["value"]))
    return series


def _strip(labels: str, *drop: str) -> str:
    parsed = {k: v for k, v in json.loads(labels).items() if k not in drop}
    return json.dumps(parsed, sort_keys=True)


def _last_by_label(points: dict[tuple[str, str], list[tuple[float, float]]], name: str) -> dict[str, float]:
    return {labels: max(values)[1] for (metric, labels), values in points.items() if metric == name}


def _histogram_rows(name: str, points: dict[tuple[str, str], list[tuple[float, float]]]) -> list[Row]:
    buckets: dict[float, float] = defaultdict(float)
    for labels, value in _last_by_label(points, name + "_bucket").items():
        buckets[float(json.loads(labels)["le"])] += value
    total = sum(_last_by_label(points, name + "_sum").values())
    count = sum(_last_by_label(points, name + "_count").values())
    if count <= 0:
        return []
    ordered = sorted(buckets.items())
    scale, unit = (1000.0, "_ms") if name.endswith("_seconds") else (1.0, "")
    rows = [{"metric": name, "labels": "{}", "stat": "mean" + unit, "value": total / count * scale}]
    for stat, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        quantile = histogram_quantile(q, ordered)
        if quantile is not None:
            rows.append({"metric": name, "labels": "{}", "stat": stat + unit, "value": quantile * scale})
    rows.append({"metric": name, "labels": "{}", "stat": "count", "value": count})
    return rows


def _scalar_rows(name: str, kind: str, points: dict[tuple[str, str], list[tuple[float, float]]]) -> list[Row]:
    rows: list[Row] = []
    for (metric, labels), values in sorted(points.items()):
        if metric != name or not values:
            continue
        values = sorted(values)
        numbers = np.array([v for _, v in values], dtype=float)
        if kind == "counter":
            span = values[-1][0] - values[0][0]
            rows.append({"metric": name, "labels": labels, "stat": "total", "value": float(numbers[-1])})
            if span > 0:
                rate = (numbers[-1] - numbers[0]) / span
                rows.append({"metric": name, "labels": labels, "stat": "rate_per_s", "value": float(rate)})
        else:
            rows.append({"metric": name, "labels": labels, "stat": "mean", "value": float(numbers.mean())})
            rows.append({"metric": name, "labels": labels, "stat": "max", "value": float(numbers.max())})
            rows.append({"metric": name, "labels": labels, "stat": "last", "value": float(numbers[-1])})
    return rows


def summarize(metric_rows: list[Row], samples: list[Row]) -> list[Row]:
    """Summary rows for every catalogue metric found in ``metric_rows``, then the raw samples'."""
    per_service: dict[str, list[Row]] = defaultdict(list)
    for row in metric_rows:
        per_service[row["service"]].append(row)
    points: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for service_rows in per_service.values():
        for key, values in _series(service_rows).items():
            # Several processes of one component (ingest-2, ...) sum into one series per time.
            points[key].extend(values)
    points = {key: _sum_by_time(values) for key, values in points.items()}
    out: list[Row] = []
    for name, kind in _kinds().items():
        if kind == "histogram":
            out += _histogram_rows(name, points)
        else:
            out += _scalar_rows(name + ("_total" if kind == "counter" else ""), kind, points)
    return out + sample_rows(samples)


def _sum_by_time(values: list[tuple[float, float]]) -> list[tuple[float, float]]:
    summed: dict[float, float] = defaultdict(float)
    for time_s, value in values:
        summed[round(time_s, 0)] += value
    return sorted(summed.items())


def sample_rows(samples: list[Row]) -> list[Row]:
    by_metric: dict[str, list[float]] = defaultdict(list)
    for sample in samples:
        by_metric[sample["metric"]].append(sample["value_ms"])
    out: list[Row] = []
    for metric, values in sorted(by_metric.items()):
        array = np.array(values, dtype=float)
        name = f"samples_{metric}"
        out.append({"metric": name, "labels": "{}", "stat": "count", "value": float(array.size)})
        out.append({"metric": name, "labels": "{}", "stat": "mean_ms", "value": float(array.mean())})
        for stat, q in (("p50_ms", 50), ("p95_ms", 95), ("p99_ms", 99)):
            out.append(
                {"metric": name, "labels": "{}", "stat": stat, "value": float(np.percentile(array, q))}
            )
    return out
