"""``cryptopipe experiment export --prometheus URL --start T --end T --name NAME``: the same result
directory as ``experiment run``, built from Prometheus alone (the compose stack, remote deployments).

Every ``cryptopipe_*`` series over [start, end] comes from one range query, at ``--step``. Prometheus
holds no per-trade records, so the samples table is empty and ``metadata.json`` says so
(``raw_samples: false``); the summary's latency figures come from the histograms.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptopipe.measure.experiment.errors import ExperimentError
from cryptopipe.measure.experiment.result import write_result
from cryptopipe.measure.experiment.run import parse_labels
from cryptopipe.measure.experiment.summarize import summarize
from cryptopipe.observability import metrics as m
from cryptopipe.observability.prometheus import PrometheusError, api_get
from cryptopipe.observability.query import series_name

Row = dict[str, Any]
SERIES = '{__name__=~"cryptopipe_.+"}'
DROPPED_LABELS = ("__name__", "job", "instance")


def parse_time(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 time (naive = UTC) or Unix seconds."""
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ExperimentError(
            f"{text!r} is not a time (use ISO 8601, e.g. 2026-12-02T15:00:00Z, or Unix s)"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def range_rows(url: str, start: datetime, end: datetime, step: float) -> list[Row]:
    params = {
        "query": SERIES,
        "start": str(start.timestamp()),
        "end": str(end.timestamp()),
        "step": str(step),
    }
    data = api_get(url, "/api/v1/query_range", params, timeout=60)
    rows: list[Row] = []
    for series in data["result"]:
        metric = series["metric"]
        labels = json.dumps({k: v for k, v in metric.items() if k not in DROPPED_LABELS}, sort_keys=True)
        service = metric.get("job", metric.get("component", "?"))
        for timestamp, value in series["values"]:
            rows.append(
                {
                    "time_s": float(timestamp) - start.timestamp(),
                    "service": service,
                    "metric": metric["__name__"],
                    "labels": labels,
                    "value": float(value),
                }
            )
    return rows


def export(
    url: str, start: datetime, end: datetime, name: str, out: Path, labels: dict[str, str], step: float
) -> Path:
    if end <= start:
        raise ExperimentError(f"--end {end.isoformat()} is not after --start {start.isoformat()}")
    rows = range_rows(url.rstrip("/"), start, end, step)
    if not rows:
        raise ExperimentError(
            f"{url} holds no cryptopipe_* series between {start.isoformat()} and {end.isoformat()}"
        )
    metadata = {
        "name": name,
        "labels": labels,
        "host": None,
        "cpu_count": None,
        "platform": None,
        "versions": {"python": platform.python_version(), "java": None, "broker": None, "redis": None},
        "clock_offset_ms": _last(rows, series_name(m.CLOCK_OFFSET), 1000.0),
        "clock_offset_uncertainty_ms": _last(rows, series_name(m.CLOCK_OFFSET_UNCERTAINTY), 1000.0),
        "source": {"kind": "prometheus", "url": url, "step_s": step},
        "symbols": sorted({json.loads(r["labels"]).get("symbol") for r in rows} - {None}),
        "start_utc": start.isoformat(),
        "end_utc": end.isoformat(),
        "duration_s": (end - start).total_seconds(),
        "raw_samples": False,
    }
    return Path(write_result(out, metadata, {"samples": [], "metrics": rows, "summary": summarize(rows, [])}))


def _last(rows: list[Row], metric: str, scale: float) -> float | None:
    values = sorted((r["time_s"], r["value"]) for r in rows if r["metric"] == metric)
    return values[-1][1] * scale if values else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cryptopipe experiment export")
    parser.add_argument("--prometheus", required=True, metavar="URL", help="e.g. http://127.0.0.1:9090")
    parser.add_argument("--start", required=True, metavar="T", help="ISO 8601 (UTC if no zone) or Unix s")
    parser.add_argument("--end", required=True, metavar="T")
    parser.add_argument("--name", required=True)
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--step", type=float, default=5.0, metavar="S", help="range-query step (default 5 s)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="default: ./NAME")
    args = parser.parse_args(argv)
    try:
        out = export(
            args.prometheus,
            parse_time(args.start),
            parse_time(args.end),
            args.name,
            args.out or Path(args.name),
            parse_labels(args.label),
            args.step,
        )
    except (ExperimentError, PrometheusError, OSError) as exc:
        print(f"cryptopipe experiment export: {exc}", flush=True)
        return 1
    print(f"cryptopipe experiment export: result written to {out}", flush=True)
    return 0
