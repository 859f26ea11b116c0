"""``cryptopipe experiment compare DIR... --out REPORT_DIR``: one report over several result directories.

The report (``index.html``, ``summary.md``, ``report.json``, charts as PNG and SVG) ranks the
environments by mean E2E latency and gives, for each environment against the fastest, the
difference in corrected network and system latency (medians) with a bootstrap 95% confidence
interval: a difference whose interval excludes 0 is called real, otherwise noise.
"""

from __future__ import annotations

import argparse
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from cryptopipe.measure.experiment.errors import ExperimentError
from cryptopipe.measure.experiment.result import Result, read_result
from cryptopipe.observability import metrics as m
from cryptopipe.observability.query import series_name

BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Difference:
    name: str
    metric: str
    estimate_ms: float
    low_ms: float
    high_ms: float

    @property
    def real(self) -> bool:
        return self.low_ms > 0 or self.high_ms < 0


def bootstrap_median_difference(
    a: Sequence[float], b: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float, float]:
    """median(a) - median(b), with a percentile-bootstrap 95% interval."""
    if not a or not b:
        raise ExperimentError("cannot compare an empty sample")
    rng = np.random.default_rng(seed)
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    xs = np.median(rng.choice(x, size=(resamples, x.size)), axis=1)
    ys = np.median(rng.choice(y, size=(resamples, y.size)), axis=1)
    low, high = np.percentile(xs - ys, [2.5, 97.5])
    return float(np.median(x) - np.median(y)), float(low), float(high)


def _e2e_mean(result: Result) -> float:
    value = result.stat(series_name(m.E2E_LATENCY), "mean_ms")
    if value is None:
        raise ExperimentError(f"{result.path}: no E2E latency in its summary (did any trade reach Redis?)")
    return float(value)


HISTOGRAMS = {
    "network": series_name(m.NETWORK_LATENCY),
    "network_corrected": series_name(m.NETWORK_LATENCY_CORRECTED),
    "system": series_name(m.SYSTEM_LATENCY),
}


def has_samples(result: Result) -> bool:
    return bool(result.samples.num_rows > 0)


def latency_figure(result: Result, kind: str, stat: str) -> float | None:
    """A latency figure from the raw samples, or from the histogram for a run without them (export)."""
    name = f"samples_{kind}" if has_samples(result) else HISTOGRAMS[kind]
    value: float | None = result.stat(name, stat)
    return value


def rank(results: Sequence[Result]) -> list[Result]:
    return sorted(results, key=_e2e_mean)


def differences(ranked: Sequence[Result]) -> list[Difference]:
    """Each environment against the fastest; runs without raw samples (exports) get no interval."""
    base = ranked[0]
    out: list[Difference] = []
    if not has_samples(base):
        return out
    for result in [r for r in ranked[1:] if has_samples(r)]:
        for metric in ("network_corrected", "system"):
            est, low, high = bootstrap_median_difference(
                result.sample_values(metric), base.sample_values(metric)
            )
            out.append(Difference(result.name, metric, est, low, high))
    return out


def _legend(axis: Any) -> None:
    """A legend where something was drawn; a note where the runs had no such data."""
    if axis.get_legend_handles_labels()[0]:
        axis.legend()
    else:
        axis.text(0.5, 0.5, "no data in these runs", ha="center", va="center", transform=axis.transAxes)


def _save(figure: Any, out: Path, stem: str) -> list[str]:
    figure.tight_layout()
    names = []
    for ext in ("png", "svg"):
        figure.savefig(out / f"{stem}.{ext}", dpi=110)
        names.append(f"{stem}.{ext}")
    plt.close(figure)
    return names


def chart_stacked(ranked: Sequence[Result], out: Path) -> list[str]:
    figure, axes = plt.subplots(1, 3, figsize=(11, 4), sharey=False)
    names = [r.name for r in ranked]
    for axis, stat in zip(axes, ("mean_ms", "p95_ms", "p99_ms"), strict=True):
        network = [latency_figure(r, "network_corrected", stat) or 0.0 for r in ranked]
        system = [latency_figure(r, "system", stat) or 0.0 for r in ranked]
        axis.bar(names, network, label="network (corrected)", color="#4c72b0")
        axis.bar(names, system, bottom=network, label="system", color="#dd8452")
        axis.set_title(stat.replace("_ms", ""))
        axis.set_ylabel("ms")
    _legend(axes[0])
    figure.suptitle("Latency per environment: network + system")
    return _save(figure, out, "latency_stacked")


def chart_cdf(ranked: Sequence[Result], out: Path) -> list[str]:
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in zip(axes, ("network_corrected", "system"), strict=True):
        for result in ranked:
            values = np.sort(result.sample_values(metric))
            if values.size:
                axis.plot(values, np.arange(1, values.size + 1) / values.size, label=result.name)
        axis.set_xscale("log")
        axis.set_xlabel(f"{metric} latency (ms, log)")
        axis.set_ylabel("fraction of trades")
        axis.grid(alpha=0.3)
        _legend(axis)
    figure.suptitle("Latency CDFs")
    return _save(figure, out, "latency_cdf")


def _series(result: Result, metric: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [r for r in result.metrics.to_pylist() if r["metric"] == metric]
    by_time: dict[float, float] = {}
    for row in rows:
        key = round(row["time_s"])
        by_time[key] = by_time.get(key, 0.0) + row["value"]
    times = np.array(sorted(by_time), dtype=float)
    return times, np.array([by_time[t] for t in sorted(by_time)], dtype=float)


def chart_over_time(ranked: Sequence[Result], out: Path) -> list[str]:
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for result in ranked:
        times, written = _series(result, series_name(m.CONSUMED))
        if times.size > 1:
            left.plot(times[1:], np.diff(written) / np.diff(times), label=result.name)
        times, lag = _series(result, series_name(m.CONSUMER_LAG))
        if times.size:
            right.plot(times, lag, label=result.name)
    left.set(title="consumer throughput", xlabel="s", ylabel="messages/s")
    right.set(title="Kafka lag", xlabel="s", ylabel="messages")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        _legend(axis)
    return _save(figure, out, "throughput_lag")


def _per_component(result: Result, metric: str, stat: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for row in result.summary.to_pylist():
        if row["metric"] == metric and row["stat"] == stat:
            out[json.loads(row["labels"]).get("component", "?")] = row["value"]
    return out


def chart_resources(ranked: Sequence[Result], out: Path) -> list[str]:
    figure, (cpu_axis, ram_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric, stat, scale, title in (
        (cpu_axis, series_name(m.PROCESS_CPU), "rate_per_s", 100.0, "CPU (% of one core)"),
        (ram_axis, series_name(m.PROCESS_MEMORY), "mean", 1 / 2**20, "RAM (MiB, mean)"),
    ):
        values = [_per_component(r, metric, stat) for r in ranked]
        components = sorted({c for v in values for c in v})
        width = 0.8 / max(1, len(ranked))
        for i, (result, by_component) in enumerate(zip(ranked, values, strict=True)):
            xs = np.arange(len(components)) + i * width
            axis.bar(xs, [by_component.get(c, 0.0) * scale for c in components], width, label=result.name)
        axis.set_xticks(np.arange(len(components)) + width * (len(ranked) - 1) / 2, components, rotation=30)
        axis.set_title(title)
        _legend(axis)
    return _save(figure, out, "resources")


def check_distinct(results: Sequence[Result]) -> None:
    seen: dict[str, Path] = {}
    for result in results:
        if result.name in seen:
            raise ExperimentError(
                f"{result.path} and {seen[result.name]} are both named {result.name!r}: "
                "each environment needs its own --name"
            )
        seen[result.name] = result.path


def report_data(ranked: Sequence[Result], diffs: Sequence[Difference]) -> dict[str, Any]:
    stats = ("mean_ms", "p50_ms", "p95_ms", "p99_ms")
    return {
        "ranking": [r.name for r in ranked],
        "environments": {
            r.name: {
                "labels": r.metadata["labels"],
                "raw_samples": has_samples(r),
                "e2e_mean_ms": _e2e_mean(r),
                **{
                    f"{m}_{s}": latency_figure(r, m, s)
                    for m in ("network", "network_corrected", "system")
                    for s in stats
                },
            }
            for r in ranked
        },
        "baseline": ranked[0].name,
        "differences": [
            {
                "name": d.name,
                "metric": d.metric,
                "estimate_ms": d.estimate_ms,
                "ci95_ms": [d.low_ms, d.high_ms],
                "real": d.real,
            }
            for d in diffs
        ],
    }


def markdown(data: dict[str, Any]) -> str:
    lines = [
        "| rank | environment | E2E mean (ms) | network corrected p50 / p95 / p99 (ms) "
        "| system p50 / p95 / p99 (ms) |",
        "|---|---|---|---|---|",
    ]
    for i, name in enumerate(data["ranking"], 1):
        env = data["environments"][name]

        def triple(metric: str, env: dict[str, Any] = env) -> str:
            values = [env[f"{metric}_{s}"] for s in ("p50_ms", "p95_ms", "p99_ms")]
            return " / ".join("-" if v is None else f"{v:.1f}" for v in values)

        lines.append(
            f"| {i} | {name} | {env['e2e_mean_ms']:.1f} "
            f"| {triple('network_corrected')} | {triple('system')} |"
        )
    without = [n for n in data["ranking"] if not data["environments"][n]["raw_samples"]]
    if without:
        lines += ["", f"Without raw samples (figures from histograms, no intervals): {', '.join(without)}"]
    lines += ["", f"Differences against the fastest, **{data['baseline']}** (median, bootstrap 95% CI):", ""]
    lines += ["| environment | latency | difference (ms) | 95% CI (ms) | verdict |", "|---|---|---|---|---|"]
    for d in data["differences"]:
        low, high = d["ci95_ms"]
        verdict = "real" if d["real"] else "noise"
        lines.append(
            f"| {d['name']} | {d['metric']} | {d['estimate_ms']:+.2f} "
            f"| [{low:+.2f}, {high:+.2f}] | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def write_html(out: Path, table_md: str, charts: Sequence[str]) -> None:
    images = "\n".join(
        f'<figure><img src="{html.escape(c)}" alt="{html.escape(c)}"><figcaption>'
        f'<a href="{html.escape(c[:-4])}.svg">SVG</a></figcaption></figure>'
        for c in charts
        if c.endswith(".png")
    )
    (out / "index.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>cryptopipe experiment report</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}</style>"
        "</head><body><h1>Environment comparison</h1>"
        f"<pre>{html.escape(table_md)}</pre>{images}</body></html>\n"
    )


def compare(directories: Sequence[Path], out: Path) -> dict[str, Any]:
    if len(directories) < 2:
        raise ExperimentError("compare needs at least two result directories")
    results = [read_result(path) for path in directories]
    check_distinct(results)
    ranked = rank(results)
    diffs = differences(ranked)
    out.mkdir(parents=True, exist_ok=True)
    charts = [
        *chart_stacked(ranked, out),
        *chart_cdf(ranked, out),
        *chart_over_time(ranked, out),
        *chart_resources(ranked, out),
    ]
    data = report_data(ranked, diffs)
    data["charts"] = charts
    table = markdown(data)
    (out / "summary.md").write_text("# Environment comparison\n\n" + table)
    (out / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    write_html(out, table, charts)
    return data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cryptopipe experiment compare")
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    parser.add_argument("--out", type=Path, required=True, metavar="REPORT_DIR")
    args = parser.parse_args(argv)
    try:
        data = compare(args.dirs, args.out)
    except ExperimentError as exc:
        print(f"cryptopipe experiment compare: {exc}", flush=True)
        return 2
    print(markdown(data), end="")
    print(f"cryptopipe experiment compare: report written to {args.out / 'index.html'}", flush=True)
    return 0
