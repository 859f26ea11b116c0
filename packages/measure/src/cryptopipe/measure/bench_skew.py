"""``cryptopipe bench skew``: how far the clock offset (and the corrected network latency) can be
believed under jitter, asymmetry, drift and steps.

Three parts, each in the JSON (``--json PATH``):

* ``scenarios``: the grid (:mod:`cryptopipe.measure.skew_grid`), many seeded trials per set of
  conditions on a simulated clock and path drawn from the replay exchange's distributions;
* ``anchors``: on the same conditions, one exchange per interval (simulated, and real ``ntplib``
  over loopback) and ``chronyd -Q`` (:mod:`cryptopipe.measure.skew_anchors`);
* ``real``: a few trials of the real estimator against the replay exchange over loopback, with
  the simulation at the same sampling beside them, to show the simulation matches.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptopipe.measure.skew_anchors import chrony_anchor, ntplib_anchor
from cryptopipe.measure.skew_grid import (
    DEFAULT_GRID,
    Sampling,
    Scenario,
    quantiles,
    run_grid,
    run_scenario,
    summarise,
)
from cryptopipe.replay.config import ReplayConfig
from cryptopipe.replay.exchange import ReplayExchange
from cryptopipe.replay.network import ServerClock
from cryptopipe.runtime import write_json_atomic
from cryptopipe.skew import BinanceTimeReference, SkewEstimator

logger = logging.getLogger(__name__)

#: The real trials' sampling: compressed so a trial takes seconds (the grid's is 20 per 10 s).
REAL_SAMPLING = Sampling(samples=10, interval_s=0.5, window=20)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptopipe bench skew",
        description="How far the clock offset (and the skew-corrected network latency) can be believed "
        "under jitter, asymmetry, drift and steps: a seeded grid on a simulated clock, ntplib and chronyd "
        "anchors on the same conditions, and real trials against the replay exchange.",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    parser.add_argument("--trials", type=int, default=100, help="trials per scenario (100)")
    parser.add_argument("--scenario", action="append", metavar="NAME", help="only these (repeatable)")
    parser.add_argument("--samples", type=int, default=20, help="exchanges per interval (20)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds per interval (10)")
    parser.add_argument("--window", type=int, default=150, help="intervals in the fit (150)")
    parser.add_argument("--ntplib-exchanges", type=int, default=30, help="real ntplib exchanges (30)")
    parser.add_argument("--chrony-runs", type=int, default=4, help="chronyd -Q runs (4; 0: none)")
    parser.add_argument(
        "--real-trials",
        type=int,
        default=12,
        help="trials against the replay exchange, at once (12; 0: none)",
    )
    return parser


def _grid(names: list[str] | None) -> tuple[Scenario, ...]:
    if not names:
        return DEFAULT_GRID
    known = {s.name: s for s in DEFAULT_GRID}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"cryptopipe bench skew: unknown scenario {unknown[0]!r}; known: {', '.join(known)}")
    return tuple(known[n] for n in names)


async def _real_trials(scenario: Scenario, trials: int, sampling: Sampling) -> list[dict[str, Any]]:
    """``trials`` estimators at once against one replay exchange on the scenario's network."""
    config = ReplayConfig(
        symbols=("BTCUSDT",),
        rate=5.0,
        clock_offset_ms=round(scenario.offset_ms),
        delay_ms=round(scenario.delay_ms),
        jitter_ms=scenario.jitter_ms,
        jitter_distribution=scenario.distribution,
        rest_request_delay_ms=scenario.delay_ms + scenario.asymmetry_ms / 2,
        rest_response_delay_ms=scenario.delay_ms - scenario.asymmetry_ms / 2,
        clock_drift_ppm=scenario.drift_ppm,
    )
    async with ReplayExchange(config) as exchange:
        clock: ServerClock = exchange.clock
        estimators = [
            SkewEstimator(
                BinanceTimeReference(exchange.rest_url, name=f"bench-{i}"),
                samples=sampling.samples,
                interval_s=sampling.interval_s,
                window=sampling.window,
            )
            for i in range(trials)
        ]

        async def one(estimator: SkewEstimator) -> dict[str, Any]:
            try:
                for _ in range(sampling.window):
                    started = time.monotonic()
                    await estimator.update()
                    await asyncio.sleep(max(0.0, sampling.interval_s - (time.monotonic() - started)))
            finally:
                await estimator.aclose()
            now = time.time_ns()
            estimate = estimator.filter.offset_ms_at(now)
            uncertainty = estimator.filter.uncertainty_at(now)
            assert estimate is not None
            assert uncertainty is not None
            error = estimate - clock.offset_at_ns(now) / 1e6
            statistical = uncertainty.statistical_ms + uncertainty.resolution_ms
            return {
                "error": error,
                "covered": abs(error) <= uncertainty.half_width_ms,
                "covered_statistical": abs(error) <= statistical,
            }

        return list(await asyncio.gather(*(one(e) for e in estimators)))


def real_entries(scenario: Scenario, trials: int) -> list[dict[str, Any]]:
    """The real trials' entry and the simulation's at the same sampling."""
    outcomes = asyncio.run(_real_trials(scenario, trials, REAL_SAMPLING))
    errors = [o["error"] for o in outcomes]
    real = {
        **scenario.conditions(),
        "estimator": "filter (real, replay exchange over loopback)",
        "sampling": {
            "samples": REAL_SAMPLING.samples,
            "interval_s": REAL_SAMPLING.interval_s,
            "window": REAL_SAMPLING.window,
        },
        "trials": len(outcomes),
        "offset_error_ms": quantiles([abs(e) for e in errors]),
        "network_p50_error_ms": quantiles([abs(e) for e in errors]),
        "coverage": round(sum(o["covered"] for o in outcomes) / len(outcomes), 4),
        "coverage_statistical": round(sum(o["covered_statistical"] for o in outcomes) / len(outcomes), 4),
        "step_detected_after_intervals": None,
    }
    simulated = summarise(
        scenario, run_scenario(scenario, REAL_SAMPLING), "filter (simulated, same sampling)"
    )
    simulated["sampling"] = real["sampling"]
    return [real, simulated]


def _row(entry: dict[str, Any]) -> str:
    if "unavailable" in entry:
        return f"  {entry['estimator']:<58} unavailable: {entry['unavailable']}"
    err = entry["offset_error_ms"] or {}
    net = entry["network_p50_error_ms"] or {}
    coverage = "-" if entry.get("coverage") is None else f"{entry['coverage']:.2f}"
    if entry.get("coverage_statistical") is not None:
        coverage += f" (statistics alone {entry['coverage_statistical']:.2f})"
    step = entry.get("step_detected_after_intervals")
    back = (entry.get("converged_after_intervals") or {}).get("p50")
    tail = ""
    if step is not None:
        tail = (
            f"  step found <= {step} intervals; back within 1 ms for good after {back} (p50),"
            f" not by the end in {entry.get('never_converged')} of {entry['trials']}"
        )
    return (
        f"  {entry['estimator']:<58} |err| p50/p95/max {err.get('p50')}/{err.get('p95')}/{err.get('max')} ms"
        f"  net p50 err p95 {net.get('p95')} ms  coverage {coverage}{tail}"
    )


def _print(result: dict[str, Any]) -> None:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for entry in result["scenarios"] + result["anchors"] + result["real"]:
        by_name.setdefault(entry["name"], []).append(entry)
    for name, entries in by_name.items():
        first = entries[0]
        print(
            f"{name}: offset {first['offset_ms']:+g} ms, {first['delay_ms']:g} ± {first['jitter_ms']:g} ms "
            f"{first['distribution']} each way, asymmetry {first['asymmetry_ms']:g} ms, drift "
            f"{first['drift_ppm']:g} ppm, step {first['step_ms']:g} ms"
        )
        for entry in entries:
            print(_row(entry))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("cryptopipe.skew").setLevel(logging.ERROR)  # steps are the point, not news
    grid = _grid(args.scenario)
    sampling = Sampling(samples=args.samples, interval_s=args.interval, window=args.window)
    started = time.monotonic()
    scenarios, single = run_grid(grid, sampling, args.trials)
    target = replace(grid[0], trials=args.trials)
    anchors = list(single)
    if args.ntplib_exchanges:
        anchors.append(ntplib_anchor(target, args.ntplib_exchanges))
    if args.chrony_runs:
        anchors.append(chrony_anchor(target, args.chrony_runs))
    real = real_entries(target, args.real_trials) if args.real_trials else []
    result = {
        "sampling": {
            "samples": sampling.samples,
            "interval_s": sampling.interval_s,
            "window": sampling.window,
        },
        "scenarios": scenarios,
        "anchors": anchors,
        "real": real,
        "seconds": round(time.monotonic() - started, 1),
    }
    _print(result)
    if args.json is not None:
        write_json_atomic(args.json, result)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
