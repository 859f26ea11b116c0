"""The clock filter: samples in, an offset with its interval, drift and steps out. No I/O.

Each interval's samples are trimmed by round trip (a sample whose round trip is far above the
interval's typical one had room for a large asymmetry), then a least-squares line through the
offsets of the last ``window`` intervals gives the offset *now* and the frequency drift, so the
offset between updates follows a drifting clock (:mod:`cryptopipe.skew.fit`).

The published interval is ``offset ± half_width`` with ``half_width`` the sum of

* ``statistical``: z(confidence) times the fit's standard error at the evaluation time;
* ``resolution``: half the reference's stamp tick;
* ``asymmetry``: half the path asymmetry one assumes (``assumed_asymmetry_ms``), never more than
  ``round_trip_bound`` = half the smallest round trip, the most any asymmetry can hide.

A clock step shows as an interval whose median residual is far off the line. It is held back;
when the next interval is displaced the same way, the step is confirmed (two intervals), the
fit gains a step term and the older samples keep serving the drift. An interval displaced alone
is an outlier and is dropped.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist, median
from typing import Literal

from cryptopipe.skew.estimate import Sample
from cryptopipe.skew.fit import Fit, Moments, solve, sums_of

_NS = 1_000_000_000
_MS = 1_000_000
Outcome = Literal["accepted", "held", "step", "outlier", "empty"]


@dataclass(frozen=True, slots=True)
class Uncertainty:
    """The interval's half-width and where it comes from (all ms)."""

    statistical_ms: float
    resolution_ms: float
    asymmetry_ms: float
    round_trip_bound_ms: float

    @property
    def half_width_ms(self) -> float:
        return self.statistical_ms + self.resolution_ms + self.asymmetry_ms

    def as_dict(self) -> dict[str, float]:
        return {
            "statistical": self.statistical_ms,
            "resolution": self.resolution_ms,
            "asymmetry": self.asymmetry_ms,
            "round_trip_bound": self.round_trip_bound_ms,
        }


@dataclass(frozen=True, slots=True)
class FilterUpdate:
    """What one interval did: ``outcome``, and the confirmed step's size (ms) when it was one."""

    outcome: Outcome
    kept: int
    step_ms: float | None = None


@dataclass(frozen=True, slots=True)
class _Interval:
    """One interval's kept samples: their sums and the shortest round trip's sample (x, y, delay)."""

    sums: tuple[float, ...]
    best: tuple[float, float, float]
    resolution_ms: float
    after_step: bool = False
    displacement_ms: float = 0.0
    spread_ms: float = 0.0


class ClockFilter:
    """Offset, drift and steps from intervals of :class:`Sample`; see the module docstring.

    ``window``: intervals in the fit. ``trim``: a sample is dropped when its round trip exceeds the
    interval's median by more than ``trim`` times (median - 10th percentile) (robust against
    heavy tails, keeps nearly all of a normal jitter). ``step_sigmas`` / ``step_min_ms``: how far
    an interval's median must sit off the line to be a step candidate.
    """

    def __init__(
        self,
        *,
        window: int = 150,
        fit_drift: bool = True,
        min_drift_intervals: int = 3,
        trim: float = 2.0,
        confidence: float = 0.95,
        assumed_asymmetry_ms: float = 10.0,
        step_sigmas: float = 6.0,
        step_min_ms: float = 5.0,
    ) -> None:
        if window < 1 or not 0 < confidence < 1 or assumed_asymmetry_ms < 0 or trim <= 0:
            raise ValueError("window >= 1, 0 < confidence < 1, assumed_asymmetry_ms >= 0, trim > 0")
        self.window = window
        self.fit_drift = fit_drift
        self.min_drift_intervals = min_drift_intervals
        self.trim = trim
        self.z = NormalDist().inv_cdf(0.5 + confidence / 2)
        self.assumed_asymmetry_ms = assumed_asymmetry_ms
        self.step_sigmas = step_sigmas
        self.step_min_ms = step_min_ms
        self._intervals: deque[_Interval] = deque()
        self._moments = Moments()
        self._pushed = 0
        self._origin_ns: int | None = None
        self._y0_ms = 0.0
        self._fit: Fit | None = None
        self._line: tuple[float, float, int] | None = None
        self._held: _Interval | None = None
        self.steps = 0
        self.outliers = 0

    # --- reading -------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._fit is not None

    @property
    def samples_in_fit(self) -> int:
        return self._fit.n if self._fit is not None else 0

    def _x(self, local_ns: int) -> float:
        assert self._origin_ns is not None
        return (local_ns - self._origin_ns) / _NS

    def offset_ms_at(self, local_ns: int) -> float | None:
        """The offset (reference - local, ms) at local time ``local_ns``: the line, drift included."""
        line = self._line
        if line is None:
            return None
        level, slope, origin = line  # read per trade: a few float operations
        return level + slope * (local_ns - origin) / _NS

    @property
    def drift_ppm(self) -> float:
        return self._fit.slope * 1000 if self._fit is not None else 0.0

    @property
    def drift_uncertainty_ppm(self) -> float:
        return self.z * math.sqrt(self._fit.slope_var) * 1000 if self._fit is not None else 0.0

    def uncertainty_at(self, local_ns: int) -> Uncertainty | None:
        if self._fit is None or not self._intervals:
            return None
        fit = self._fit
        statistical = self.z * math.sqrt(fit.predict_var(self._x(local_ns)))
        resolution = max(i.resolution_ms for i in self._intervals) / 2
        # Whatever the asymmetry, the truth is within half a sample's round trip of that sample.
        # (plus how far the line's slope may be off between that sample and now)
        now, slope_sd = self._x(local_ns), self.z * math.sqrt(fit.slope_var)
        bound = min(
            abs(fit.predict(x) - y) + d / 2 + abs(now - x) * slope_sd
            for x, y, d in (i.best for i in self._current())
        )
        asymmetry = min(self.assumed_asymmetry_ms / 2, bound)
        return Uncertainty(statistical, resolution, asymmetry, bound + resolution)

    def _current(self) -> list[_Interval]:
        """The intervals of the current regime (after the last step, when one is in the window)."""
        after = [i for i in self._intervals if i.after_step]
        return after or list(self._intervals)

    # --- feeding -------------------------------------------------------------------------------
    def add(self, samples: Sequence[Sample]) -> FilterUpdate:
        """Fold one interval's samples in."""
        kept = self._trimmed(samples)
        if not kept:
            return FilterUpdate("empty", 0)
        if self._origin_ns is None:
            self._origin_ns = kept[0].t0_ns
            self._y0_ms = median(s.offset_ns for s in kept) / _MS
        xs = [self._x((s.t0_ns + s.t3_ns) // 2) for s in kept]
        ys = [s.offset_ns / _MS - self._y0_ms for s in kept]
        best = min(range(len(kept)), key=lambda i: kept[i].delay_ns)
        interval = _Interval(
            sums_of(xs, ys),
            (xs[best], ys[best], kept[best].delay_ns / _MS),
            max(s.resolution_ns for s in kept) / _MS,
        )
        fit = self._fit
        if fit is None or len(self._intervals) < 2:
            self._append(interval)
            return FilterUpdate("accepted", len(kept))
        a, b = fit.intercept, fit.slope
        displacement = median([y - a - b * x for x, y in zip(xs, ys, strict=True)])
        spread = math.sqrt(fit.residual_var * math.pi / 2 / len(kept) + fit.predict_var(max(xs)))
        return self._judge(replace(interval, displacement_ms=displacement, spread_ms=spread), len(kept))

    def _judge(self, interval: _Interval, kept: int) -> FilterUpdate:
        displaced = abs(interval.displacement_ms) > max(
            self.step_min_ms, self.step_sigmas * interval.spread_ms
        )
        held, self._held = self._held, None
        if held is not None and displaced:
            agree = max(self.step_min_ms, math.hypot(held.spread_ms, interval.spread_ms) * self.step_sigmas)
            partial = held.displacement_ms * interval.displacement_ms > 0 and abs(held.displacement_ms) < abs(
                interval.displacement_ms
            )
            if partial or abs(held.displacement_ms - interval.displacement_ms) <= agree:
                return self._step(interval, kept)
        if held is not None:
            self.outliers += 1
        if displaced:
            self._held = interval
            return FilterUpdate("held", kept)
        self._append(interval)
        return FilterUpdate("accepted", kept)

    def _step(self, second: _Interval, kept: int) -> FilterUpdate:
        """Confirmed. The held interval may straddle the step: it is left out. Intervals before an
        earlier step go; those since it stay, before the new step term, and keep serving the drift."""
        self.steps += 1
        before = [replace(i, after_step=False) for i in self._current()]
        self._intervals.clear()
        self._moments = Moments()
        for interval in before:
            self._push(interval)
        self._append(replace(second, after_step=True))
        return FilterUpdate("step", kept, second.displacement_ms)

    def _push(self, interval: _Interval) -> None:
        if len(self._intervals) >= self.window:
            old = self._intervals.popleft()
            self._moments.add(old.sums, old.after_step, -1.0)
        self._intervals.append(interval)
        self._moments.add(interval.sums, interval.after_step)
        self._pushed += 1
        if self._pushed % self.window == 0:  # running sums: start afresh now and then (rounding)
            self._moments = Moments()
            for kept in self._intervals:
                self._moments.add(kept.sums, kept.after_step)

    def _append(self, interval: _Interval) -> None:
        """Add an interval (in the current regime) and solve again."""
        if self._intervals and self._intervals[-1].after_step:
            interval = replace(interval, after_step=True)
        self._push(interval)
        drift = self.fit_drift and len(self._intervals) >= self.min_drift_intervals
        fit = solve(self._moments, drift=drift)
        if fit is None and drift:
            fit = solve(self._moments, drift=False)
        if fit is not None:
            self._fit = fit
            assert self._origin_ns is not None
            self._line = (self._y0_ms + fit.intercept, fit.slope, self._origin_ns)

    def _trimmed(self, samples: Sequence[Sample]) -> list[Sample]:
        if len(samples) < 5:
            return list(samples)
        delays = sorted([s.delay_ns for s in samples])
        mid = delays[len(delays) // 2]
        low = delays[len(delays) // 10]
        limit = mid + self.trim * max(mid - low, 1)
        return [s for s in samples if s.delay_ns <= limit]
