"""The clock filter on a simulated path and clock: thousands of intervals a second, no sockets.

A :class:`Path` draws each direction's delay (ms) and tells the reference's offset at any local
time; :func:`run_trial` plays ``intervals`` intervals of ``samples`` exchanges through a
:class:`~cryptopipe.skew.filter.ClockFilter` (as :class:`~cryptopipe.skew.estimator.SkewEstimator`
does with real ones), plus trades whose network latency is corrected with the filter's offset.
The bench (``cryptopipe bench skew``) feeds it the replay exchange's own delay distributions.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import median
from typing import Any, Protocol

from cryptopipe.skew.estimate import Sample
from cryptopipe.skew.filter import ClockFilter

_NS = 1_000_000_000
_MS = 1_000_000
#: The estimate counts as back after a step once its error stays within this (ms).
CONVERGED_MS = 1.0


class Draws(Protocol):
    def draw_ms(self, rng: random.Random) -> float: ...


class Conditions(Protocol):
    """A delay per direction, e.g. :class:`cryptopipe.replay.network.NetworkConditions`."""

    @property
    def rest_request(self) -> Draws: ...

    @property
    def rest_response(self) -> Draws: ...

    @property
    def ws(self) -> Draws: ...


@dataclass(frozen=True, slots=True)
class Path:
    """A simulated reference: delays per direction (ms), the offset (ns) at a local time (ns)."""

    request_ms: Callable[[], float]
    response_ms: Callable[[], float]
    ws_ms: Callable[[], float]
    offset_ns_at: Callable[[int], float]
    resolution_ns: int = 1_000

    @classmethod
    def drawn(cls, conditions: Conditions, offset_ns_at: Callable[[int], float], seed: int) -> Path:
        """A path whose delays are drawn from ``conditions`` with one seeded generator."""
        rng = random.Random(seed)
        return cls(
            lambda: conditions.rest_request.draw_ms(rng),
            lambda: conditions.rest_response.draw_ms(rng),
            lambda: conditions.ws.draw_ms(rng),
            offset_ns_at,
        )

    def exchange(self, t0_ns: int) -> Sample:
        """One request/reply: the reference stamps its clock once, on arrival (as Binance does)."""
        arrive = t0_ns + round(self.request_ms() * _MS)
        stamp = arrive + round(self.offset_ns_at(arrive))
        res = self.resolution_ns
        stamp = stamp // res * res + res // 2
        return Sample(t0_ns, stamp, stamp, arrive + round(self.response_ms() * _MS), res)


@dataclass(frozen=True, slots=True)
class TrialSettings:
    intervals: int
    samples: int = 20
    interval_s: float = 10.0
    window: int = 150
    #: A step (if the path has one) falls in this interval (0-based); None: no step.
    step_interval: int | None = None
    #: Trades per interval whose corrected network latency is compared with the truth (last 10 %).
    trades: int = 20
    filter_options: dict[str, Any] = field(default_factory=dict)
    #: The single-exchange anchor: one exchange per interval, NTP's offset and bound.
    single_exchange: bool = False


@dataclass(frozen=True, slots=True)
class TrialResult:
    offset_error_ms: float
    half_width_ms: float
    covered: bool
    covered_statistical: bool
    network_p50_error_ms: float
    step_detected_after_intervals: int | None
    converged_after_intervals: int | None


def run_trial(path: Path, settings: TrialSettings, start_ns: int, seed: int) -> TrialResult:
    """One trial; the error is read at the end of the last interval."""
    if settings.single_exchange:
        return _single_exchange_trial(path, settings, start_ns, seed)
    rng = random.Random(seed)
    flt = ClockFilter(window=settings.window, **settings.filter_options)
    spacing = round(settings.interval_s * _NS / settings.samples)
    length = round(settings.interval_s * _NS)
    errors: list[float] = []
    detected: int | None = None
    corrected: list[float] = []
    truth: list[float] = []
    measured_from = settings.intervals - max(1, settings.intervals // 10)
    t = start_ns
    for k in range(settings.intervals):
        update = flt.add([path.exchange(t + i * spacing) for i in range(settings.samples)])
        t += length
        step = settings.step_interval
        if update.outcome == "step" and step is not None and detected is None and k >= step:
            detected = k - step + 1
        estimate = flt.offset_ms_at(t)
        errors.append(float("nan") if estimate is None else estimate - path.offset_ns_at(t) / _MS)
        if k >= measured_from:
            _trades(path, flt, t, length, settings.trades, rng, corrected, truth)
    uncertainty = flt.uncertainty_at(t)
    assert uncertainty is not None
    error = errors[-1]
    return TrialResult(
        offset_error_ms=error,
        half_width_ms=uncertainty.half_width_ms,
        covered=abs(error) <= uncertainty.half_width_ms,
        covered_statistical=abs(error) <= uncertainty.statistical_ms + uncertainty.resolution_ms,
        network_p50_error_ms=median(corrected) - median(truth),
        step_detected_after_intervals=detected,
        converged_after_intervals=_converged(errors, settings.step_interval),
    )


def _trades(
    path: Path,
    flt: ClockFilter,
    end_ns: int,
    length: int,
    count: int,
    rng: random.Random,
    corrected: list[float],
    truth: list[float],
) -> None:
    """Trades of the interval after ``end_ns``, corrected with the line fitted so far: each is
    stamped by the reference as it is sent and received a WS delay later."""
    for _ in range(count):
        sent = end_ns + rng.randrange(length)
        stamp_ns = sent + path.offset_ns_at(sent)
        received = sent + round(path.ws_ms() * _MS)
        offset = flt.offset_ms_at(received)
        assert offset is not None
        corrected.append((received - stamp_ns) / _MS + offset)
        truth.append((received - sent) / _MS)


def _converged(errors: list[float], step: int | None) -> int | None:
    """Intervals from the step's until the error stays within :data:`CONVERGED_MS` (None: never)."""
    if step is None:
        return None
    back = None
    for k in range(len(errors) - 1, step - 1, -1):
        if not abs(errors[k]) <= CONVERGED_MS:
            break
        back = k
    return None if back is None else back - step + 1


def _single_exchange_trial(path: Path, settings: TrialSettings, start_ns: int, seed: int) -> TrialResult:
    """The anchor: each interval's estimate is one exchange (NTP's formula, as ``ntplib`` gives)."""
    rng = random.Random(seed)
    length = round(settings.interval_s * _NS)
    t = start_ns + (settings.intervals - 1) * length
    sample = path.exchange(t)
    t_read = sample.t3_ns
    error = sample.offset_ns / _MS - path.offset_ns_at(t_read) / _MS
    bound = sample.uncertainty_ns / _MS
    corrected: list[float] = []
    truth: list[float] = []
    for _ in range(settings.trades):
        sent = t_read + rng.randrange(length)
        received = sent + round(path.ws_ms() * _MS)
        corrected.append((received - sent - path.offset_ns_at(sent)) / _MS + sample.offset_ns / _MS)
        truth.append((received - sent) / _MS)
    step = settings.step_interval
    return TrialResult(
        offset_error_ms=error,
        half_width_ms=bound,
        covered=abs(error) <= bound,
        covered_statistical=abs(error) <= bound,
        network_p50_error_ms=median(corrected) - median(truth),
        step_detected_after_intervals=None if step is None else 1,
        converged_after_intervals=None,
    )
