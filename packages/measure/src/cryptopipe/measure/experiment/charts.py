"""The comparison report's charts, as matplotlib figures (PNG and SVG with real text).

Every figure puts its legend below the panels, never over the data; a log axis gets a few plain
ticks (1, 2, 5 times a power of 10) instead of overlapping minor labels; a panel with nothing to show (no lag
at all, no data in these runs) says so in words instead of drawing an empty axis.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from cryptopipe.measure.experiment.result import Result
from cryptopipe.observability import metrics as m
from cryptopipe.observability.query import series_name

PARTS = (("network_corrected", "network (skew-corrected)", "#4c72b0"), ("system", "system", "#dd8452"))
STATS = (("mean_ms", "mean"), ("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99"))
#: Room under the panels for the figure's legend, in inches.
LEGEND_ROOM_IN = 0.6


def has_samples(result: Result) -> bool:
    return bool(result.samples.num_rows > 0)


HISTOGRAMS = {
    "network": series_name(m.NETWORK_LATENCY),
    "network_corrected": series_name(m.NETWORK_LATENCY_CORRECTED),
    "system": series_name(m.SYSTEM_LATENCY),
}


def latency_figure(result: Result, kind: str, stat: str) -> float | None:
    """A latency figure from the raw samples, or from the histogram for a run without them (export)."""
    name = f"samples_{kind}" if has_samples(result) else HISTOGRAMS[kind]
    value: float | None = result.stat(name, stat)
    return value


def say(axis: Any, text: str) -> None:
    """A panel with nothing to plot: the words in its middle, no ticks."""
    axis.text(0.5, 0.5, text, ha="center", va="center", transform=axis.transAxes, fontsize=11)
    axis.set_xticks([])
    axis.set_yticks([])


def legend_below(figure: Figure, axes: Sequence[Any]) -> None:
    """One legend for the figure, under its panels (each label once)."""
    handles: dict[str, Any] = {}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    room = LEGEND_ROOM_IN / figure.get_figheight() if handles else 0
    figure.tight_layout(rect=(0, room, 1, 1))
    if handles:
        columns = min(len(handles), 4)
        figure.legend(handles.values(), handles.keys(), loc="lower center", ncol=columns, frameon=False)


def log_ticks(low: float, high: float) -> list[float]:
    """Plain ticks for a log axis over [low, high]: 1, 2 and 5 times powers of 10 (finer steps for
    a narrow range), two to seven of them (one for a single value)."""
    exponents = range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
    inside: list[float] = []
    for mantissas in ((1, 2, 5), (1, 1.5, 2, 3, 5, 7)):
        ticks = [float(f"{m * 10.0**e:.3g}") for e in exponents for m in mantissas]
        inside = [t for t in ticks if low <= t <= high]
        if len(inside) >= 3:
            return inside[:: -(-len(inside) // 7)]
    return sorted({float(f"{low:.3g}"), *inside, float(f"{high:.3g}")})


def log_axis(axis: Any, values: Sequence[float]) -> None:
    axis.set_xscale("log")
    axis.set_xticks(log_ticks(min(values), max(values)))
    axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.xaxis.set_minor_formatter(NullFormatter())


def figure_latency(ranked: Sequence[Result]) -> Figure:
    """Each part's own mean and percentiles, the two parts side by side (they do not add up)."""
    figure, grid = plt.subplots(2, 2, figsize=(12, 7.5))
    axes = grid.flatten()
    names = [textwrap.fill(r.name, 16) for r in ranked]
    xs = np.arange(len(names))
    width = 0.38
    for axis, (stat, title) in zip(axes, STATS, strict=True):
        for offset, (kind, label, colour) in zip((-width / 2, width / 2), PARTS, strict=True):
            values = [latency_figure(r, kind, stat) for r in ranked]
            heights = [v if v is not None else 0.0 for v in values]
            axis.bar(xs + offset, heights, width, label=label, color=colour)
        axis.set_xticks(xs, names)
        axis.set_title(title)
        axis.set_ylabel("ms")
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle("Latency per environment: each part's own statistic, side by side (not a sum)")
    legend_below(figure, axes)
    return figure


def figure_cdf(ranked: Sequence[Result]) -> Figure:
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for axis, (kind, label, _) in zip(axes, PARTS, strict=True):
        drawn: list[float] = []
        for result in ranked:
            values = np.sort([v for v in result.sample_values(kind) if v > 0])
            if values.size:
                axis.plot(values, np.arange(1, values.size + 1) / values.size, label=result.name)
                drawn += [float(values[0]), float(values[-1])]
        if not drawn:
            say(axis, "no per-trade samples in these runs")
            continue
        log_axis(axis, drawn)
        axis.set_xlabel(f"{label} latency (ms, log scale)")
        axis.set_ylabel("fraction of trades")
        axis.grid(alpha=0.3)
    figure.suptitle("Latency CDFs")
    legend_below(figure, axes)
    return figure


def _series(result: Result, metric: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [r for r in result.metrics.to_pylist() if r["metric"] == metric]
    by_time: dict[float, float] = {}
    for row in rows:
        key = round(row["time_s"])
        by_time[key] = by_time.get(key, 0.0) + row["value"]
    times = np.array(sorted(by_time), dtype=float)
    return times, np.array([by_time[t] for t in sorted(by_time)], dtype=float)


def figure_over_time(ranked: Sequence[Result]) -> Figure:
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    lagged = False
    for result in ranked:
        times, written = _series(result, series_name(m.CONSUMED))
        if times.size > 1:
            left.plot(times[1:], np.diff(written) / np.diff(times), label=result.name)
        times, lag = _series(result, series_name(m.CONSUMER_LAG))
        if times.size and lag.any():
            right.plot(times, lag, label=result.name)
            lagged = True
    left.set(title="consumer throughput", xlabel="s", ylabel="messages/s")
    left.set_ylim(bottom=0)
    left.grid(alpha=0.3)
    right.set_title("Kafka lag")
    if lagged:
        right.set(xlabel="s", ylabel="messages")
        right.set_ylim(bottom=0)
        right.grid(alpha=0.3)
    else:
        say(right, "no lag: 0 messages behind throughout, in every run")
    legend_below(figure, (left, right))
    return figure


def _per_component(result: Result, metric: str, stat: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for row in result.summary.to_pylist():
        if row["metric"] == metric and row["stat"] == stat:
            out[json.loads(row["labels"]).get("component", "?")] = row["value"]
    return out


def figure_resources(ranked: Sequence[Result]) -> Figure:
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for axis, metric, stat, scale, title in (
        (axes[0], series_name(m.PROCESS_CPU), "rate_per_s", 100.0, "CPU (% of one core)"),
        (axes[1], series_name(m.PROCESS_MEMORY), "mean", 1 / 2**20, "RAM (MiB, mean)"),
    ):
        values = [_per_component(r, metric, stat) for r in ranked]
        components = sorted({c for v in values for c in v})
        if not components:
            say(axis, "no resource figures in these runs")
            continue
        width = 0.8 / max(1, len(ranked))
        for i, (result, by_component) in enumerate(zip(ranked, values, strict=True)):
            xs = np.arange(len(components)) + i * width
            axis.bar(xs, [by_component.get(c, 0.0) * scale for c in components], width, label=result.name)
        axis.set_xticks(
            np.arange(len(components)) + width * (len(ranked) - 1) / 2, components, rotation=30, ha="right"
        )
        axis.set_title(title)
        axis.grid(axis="y", alpha=0.3)
    legend_below(figure, axes)
    return figure


#: file stem -> (figure builder, caption for the report).
CHARTS = {
    "latency_parts": (
        figure_latency,
        "Network (skew-corrected) and system latency per environment, side by side: each bar is that "
        "part's own mean or percentile over its trades. Percentiles do not add, so the two bars do not "
        "sum to an end-to-end percentile.",
    ),
    "latency_cdf": (figure_cdf, "Per-trade latency distributions (log scale): further right is slower."),
    "throughput_lag": (figure_over_time, "Prices consumer throughput and Kafka lag over each run."),
    "resources": (figure_resources, "CPU and memory per component."),
}


def save(figure: Figure, out: Path, stem: str) -> list[str]:
    """``stem.png`` and ``stem.svg`` (text kept as text, so it can be searched and read)."""
    names = []
    with plt.rc_context({"svg.fonttype": "none"}):
        for ext in ("png", "svg"):
            figure.savefig(out / f"{stem}.{ext}", dpi=110)
            names.append(f"{stem}.{ext}")
    plt.close(figure)
    return names


def draw_all(ranked: Sequence[Result], out: Path) -> list[str]:
    return [name for stem, (build, _) in CHARTS.items() for name in save(build(ranked), out, stem)]
