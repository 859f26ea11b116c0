"""What a run's metadata says to a person: the report's run-details rows, and the lines
``experiment run`` prints at its end (headline figures, then the books)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from cryptopipe.measure.experiment.result import Result
from cryptopipe.observability import metrics as m
from cryptopipe.observability.query import series_name

Metadata = dict[str, Any]
Stat = Callable[[str, str], float | None]


def _when(text: str | None) -> str:
    if not text:
        return "-"
    moment = datetime.fromisoformat(text)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int | float) else "-"


def _source(meta: Metadata) -> str:
    source = meta.get("source") or {}
    kind = str(source.get("kind", "-"))
    if kind == "replay" and source.get("delay_ms"):
        return f"replay, +{source['delay_ms']} ms network delay"
    if kind == "prometheus":
        return f"Prometheus export ({source.get('url', '?')}, step {source.get('step_s', '?')} s)"
    if kind == "attach":
        return "attached to a running pipeline"
    return kind


def _trades(meta: Metadata) -> str:
    run = meta.get("run")
    if not run:
        return "not counted (no books for this kind of run)"
    return (
        f"{_count(run.get('trades_received'))} received, {_count(run.get('trades_published'))} published, "
        f"{_count(run.get('prices_written'))} written, {_count(run.get('lost'))} lost"
    )


def _books(meta: Metadata) -> str:
    if "balanced" not in meta:
        return "not kept (no books for this kind of run)"
    line = meta.get("books_line")
    return str(line) if line else ("balance" if meta["balanced"] else "DO NOT BALANCE")


def _versions(meta: Metadata) -> str:
    versions = meta.get("versions") or {}
    return ", ".join(f"{k} {v}" for k, v in versions.items() if v) or "-"


def _duration(meta: Metadata) -> str:
    seconds = meta.get("duration_s")
    return f"{seconds:g} s" if isinstance(seconds, int | float) else "-"


#: The run-details rows: label, and how to write it from one run's metadata.
ROWS: tuple[tuple[str, Callable[[Metadata], str]], ...] = (
    ("started", lambda meta: _when(meta.get("start_utc"))),
    ("ended", lambda meta: _when(meta.get("end_utc"))),
    ("measured for", _duration),
    ("source", _source),
    ("symbols", lambda meta: ", ".join(meta.get("symbols") or []) or "-"),
    ("trades", _trades),
    ("books", _books),
    ("host", lambda meta: f"{meta.get('host') or '-'} ({meta.get('cpu_count') or '?'} CPUs)"),
    ("platform", lambda meta: str(meta.get("platform") or "-")),
    ("labels", lambda meta: ", ".join(f"{k}={v}" for k, v in (meta.get("labels") or {}).items()) or "-"),
    ("versions", _versions),
)


def run_details(results: Sequence[Result]) -> list[tuple[str, list[str]]]:
    """One row per detail, one cell per run (in the order given)."""
    return [(label, [write(r.metadata) for r in results]) for label, write in ROWS]


def _triple(stat: Stat, name: str) -> str | None:
    values = [stat(name, s) for s in ("p50_ms", "p95_ms", "p99_ms")]
    if any(v is None for v in values):
        return None
    return " / ".join(f"{v:.1f}" for v in values if v is not None) + " ms"


#: The headline latencies: label, the raw samples' summary name, the histogram's (when no samples).
HEADLINES = (
    ("E2E", "samples_e2e", series_name(m.E2E_LATENCY)),
    ("system", "samples_system", series_name(m.SYSTEM_LATENCY)),
    ("network (skew-corrected)", "samples_network_corrected", series_name(m.NETWORK_LATENCY_CORRECTED)),
)


def headline(meta: Metadata, stat: Stat) -> list[str]:
    """The lines ``experiment run`` ends with: what was measured, the latencies, then the books."""
    lines = [
        f"{meta['name']}: measured {_duration(meta)}, {_when(meta.get('start_utc'))} to "
        f"{_when(meta.get('end_utc'))}; source {_source(meta)}",
        f"trades: {_trades(meta)}",
    ]
    for label, sampled, histogram in HEADLINES:
        figures = _triple(stat, sampled) or _triple(stat, histogram)
        if figures is not None:
            count = stat(sampled, "count")
            of = f" over {count:,.0f} trades" if count else " (from the histogram)"
            lines.append(f"{label} latency p50 / p95 / p99: {figures}{of}")
    lines.append(f"books: {_books(meta)}")
    return lines
