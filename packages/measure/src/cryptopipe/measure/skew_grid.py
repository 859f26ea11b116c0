"""``bench skew``'s grid: network conditions, many seeded trials each, on a simulated clock.

Every trial drives the skew estimator's :class:`~cryptopipe.skew.filter.ClockFilter` through a
simulated path whose delays are drawn from the replay exchange's own distributions
(:mod:`cryptopipe.replay.network`), so thousands of intervals take a second, not hours. The
single-exchange anchor (what one ``ntplib`` request per interval gives) runs on the same paths.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cryptopipe.replay.network import Distribution, NetworkConditions, ServerClock
from cryptopipe.skew.simulate import Path, TrialResult, TrialSettings, run_trial

START_NS = 1_765_000_000 * 10**9


@dataclass(frozen=True, slots=True)
class Scenario:
    """One set of conditions. ``asymmetry_ms``: the request is that much slower than the reply."""

    name: str
    offset_ms: float = 250.0
    delay_ms: float = 40.0
    jitter_ms: float = 20.0
    distribution: Distribution = "normal"
    asymmetry_ms: float = 0.0
    drift_ppm: float = 0.0
    step_ms: float = 0.0
    trials: int = 100

    def conditions(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "trials"}

    def network(self) -> NetworkConditions:
        return NetworkConditions.build(
            self.delay_ms,
            self.jitter_ms,
            self.distribution,
            rest_request_ms=self.delay_ms + self.asymmetry_ms / 2,
            rest_response_ms=self.delay_ms - self.asymmetry_ms / 2,
        )


#: The issue's target first, then one condition changed at a time.
DEFAULT_GRID: tuple[Scenario, ...] = (
    Scenario("target"),
    Scenario("asymmetric", asymmetry_ms=10.0),
    Scenario("drift", drift_ppm=50.0),
    Scenario("step", step_ms=100.0),
    Scenario("pareto", distribution="pareto"),
    Scenario("no-jitter", jitter_ms=0.0),
    Scenario("low-jitter", jitter_ms=5.0),
    Scenario("behind", offset_ms=-80.0, delay_ms=10.0, jitter_ms=5.0),
)


@dataclass(frozen=True, slots=True)
class Sampling:
    """How the estimator samples: ``samples`` exchanges per ``interval_s``, fitted over ``window``."""

    samples: int = 20
    interval_s: float = 10.0
    window: int = 150
    #: Intervals played after the step before the trial is read.
    after_step: int = 80
    filter_options: dict[str, Any] = field(default_factory=dict)

    def trial(self, scenario: Scenario, single_exchange: bool = False) -> TrialSettings:
        step = self.window if scenario.step_ms else None
        intervals = self.window + (self.after_step if step is not None else 0)
        return TrialSettings(
            intervals=intervals,
            samples=self.samples,
            interval_s=self.interval_s,
            window=self.window,
            step_interval=step,
            filter_options=self.filter_options,
            single_exchange=single_exchange,
        )


def path_for(scenario: Scenario, sampling: Sampling, seed: int) -> Path:
    """The simulated path of one trial; a step falls 40 % into its interval."""
    net = scenario.network()
    step_after_s = None
    if scenario.step_ms:
        step_after_s = (sampling.window + 0.4) * sampling.interval_s
    clock = ServerClock(
        scenario.offset_ms, scenario.drift_ppm, scenario.step_ms, step_after_s, start_ns=START_NS
    )
    return Path.drawn(net, clock.offset_at_ns, seed)


def run_scenario(
    scenario: Scenario, sampling: Sampling, *, single_exchange: bool = False
) -> list[TrialResult]:
    settings = sampling.trial(scenario, single_exchange)
    return [
        run_trial(path_for(scenario, sampling, seed), settings, START_NS, seed + 1_000_000)
        for seed in range(scenario.trials)
    ]


def quantiles(values: list[float]) -> dict[str, float] | None:
    """p50/p95/max of ``values`` (nearest rank), rounded to µs; None when empty."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    return {"p50": round(rank(0.5), 3), "p95": round(rank(0.95), 3), "max": round(ordered[-1], 3)}


def summarise(scenario: Scenario, results: list[TrialResult], estimator: str) -> dict[str, Any]:
    """One ``scenarios`` entry of the JSON: the conditions, then what the trials measured."""
    detected = [
        r.step_detected_after_intervals for r in results if r.step_detected_after_intervals is not None
    ]
    converged = [r.converged_after_intervals for r in results if r.converged_after_intervals is not None]
    entry: dict[str, Any] = {
        **scenario.conditions(),
        "estimator": estimator,
        "trials": len(results),
        "offset_error_ms": quantiles([abs(r.offset_error_ms) for r in results]),
        "network_p50_error_ms": quantiles([abs(r.network_p50_error_ms) for r in results]),
        "coverage": round(sum(r.covered for r in results) / len(results), 4),
        "coverage_statistical": round(sum(r.covered_statistical for r in results) / len(results), 4),
        "interval_half_width_ms": quantiles([r.half_width_ms for r in results]),
        "step_detected_after_intervals": None,
    }
    if scenario.step_ms and "one exchange" not in estimator:
        entry["step_detected_after_intervals"] = max(detected) if len(detected) == len(results) else None
        entry["step_detected_after_intervals_p50"] = quantiles([float(d) for d in detected])
        entry["step_missed"] = len(results) - len(detected)
        entry["converged_after_intervals"] = quantiles([float(c) for c in converged])
        entry["never_converged"] = len(results) - len(converged)
    return entry


def run_grid(
    grid: tuple[Scenario, ...], sampling: Sampling, trials: int | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The filter's entries and the single-exchange anchor's, scenario by scenario."""
    filtered: list[dict[str, Any]] = []
    single: list[dict[str, Any]] = []
    for scenario in grid:
        if trials is not None:
            scenario = replace(scenario, trials=trials)
        filtered.append(summarise(scenario, run_scenario(scenario, sampling), "filter (simulated)"))
        anchor = run_scenario(scenario, sampling, single_exchange=True)
        single.append(summarise(scenario, anchor, "one exchange per interval, as ntplib (simulated)"))
    return filtered, single
