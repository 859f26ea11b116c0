"""``cryptopipe experiment compare DIR... --out REPORT_DIR``: one report over several result directories.

The report (``index.html`` with real tables and each run's details, ``summary.md``, ``report.json``,
charts as PNG and SVG from :mod:`~cryptopipe.measure.experiment.charts`) ranks the
environments by mean E2E latency and gives, for each environment against the fastest, the
difference in corrected network and system latency (medians) with a bootstrap 95% confidence
interval: a difference whose interval excludes 0 is called real, otherwise noise.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cryptopipe.measure.experiment.charts import draw_all, has_samples, latency_figure
from cryptopipe.measure.experiment.details import run_details
from cryptopipe.measure.experiment.errors import ExperimentError
from cryptopipe.measure.experiment.report_html import write_html
from cryptopipe.measure.experiment.result import Result, read_result
from cryptopipe.observability import metrics as m
from cryptopipe.observability.query import series_name

BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Difference:
    """One environment's median difference from the fastest, with its bootstrap 95 % interval.

    A skew-corrected network latency also carries both runs' clock-offset error bars
    (``clock_ms``, their sum; None when a run did not record one): the verdict uses the interval
    widened by it, since an offset error moves every corrected latency of a run alike.
    """

    name: str
    metric: str
    estimate_ms: float
    low_ms: float
    high_ms: float
    clock_ms: float | None = 0.0

    @property
    def widened(self) -> tuple[float, float]:
        clock = self.clock_ms or 0.0
        return self.low_ms - clock, self.high_ms + clock

    @property
    def real(self) -> bool:
        low, high = self.widened
        return low > 0 or high < 0

    @property
    def verdict(self) -> str:
        word = "real" if self.real else "noise"
        return word if self.clock_ms is not None else f"{word} (no clock error bar)"


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
            clock = _clock_error_ms(result, base) if metric == "network_corrected" else 0.0
            out.append(Difference(result.name, metric, est, low, high, clock))
    return out


def _clock_error_ms(result: Result, base: Result) -> float | None:
    """Both runs' offset error bars added (None when either run did not record one)."""
    bars = [r.metadata.get("clock_offset_uncertainty_ms") for r in (result, base)]
    known = [float(bar) for bar in bars if bar is not None]
    return sum(known) if len(known) == len(bars) else None


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
                "clock_uncertainty_ms": d.clock_ms,
                "ci95_with_clock_ms": list(d.widened),
                "real": d.real,
                "verdict": d.verdict,
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
    lines += [
        "| environment | latency | difference (ms) | 95% CI (ms) | with the clock's error bar (ms) "
        "| verdict |",
        "|---|---|---|---|---|---|",
    ]
    for d in data["differences"]:
        low, high = d["ci95_ms"]
        wide_low, wide_high = d["ci95_with_clock_ms"]
        lines.append(
            f"| {d['name']} | {d['metric']} | {d['estimate_ms']:+.2f} "
            f"| [{low:+.2f}, {high:+.2f}] | [{wide_low:+.2f}, {wide_high:+.2f}] | {d['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def details_markdown(ranked: Sequence[Result]) -> str:
    lines = ["| | " + " | ".join(r.name for r in ranked) + " |", "|---" * (len(ranked) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in run_details(ranked)]
    return "\n".join(lines) + "\n"


def compare(directories: Sequence[Path], out: Path) -> dict[str, Any]:
    if len(directories) < 2:
        raise ExperimentError("compare needs at least two result directories")
    results = [read_result(path) for path in directories]
    check_distinct(results)
    ranked = rank(results)
    diffs = differences(ranked)
    out.mkdir(parents=True, exist_ok=True)
    charts = draw_all(ranked, out)
    data = report_data(ranked, diffs)
    data["charts"] = charts
    (out / "summary.md").write_text(
        "# Environment comparison\n\n" + markdown(data) + "\n## Run details\n\n" + details_markdown(ranked)
    )
    (out / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    write_html(out, data, ranked, charts)
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
