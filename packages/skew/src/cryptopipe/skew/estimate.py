"""The estimator's arithmetic: NTP's four timestamps, minimum-delay selection and smoothing.

Pure functions on integers (nanoseconds since the Unix epoch), so the properties that matter
are tested exhaustively with hypothesis rather than over a network.

Sign convention (NTP's): ``offset = reference clock - local clock``. With the four timestamps
of one exchange,

* ``t0`` request sent, local clock      * ``t1`` request received, reference clock
* ``t2`` reply sent, reference clock    * ``t3`` reply received, local clock

``offset = ((t1 - t0) + (t2 - t3)) / 2`` and ``delay = (t3 - t0) - (t2 - t1)``. If the path
takes ``a`` out and ``b`` back, the formula's error is exactly ``(a - b) / 2``: it is zero for a
symmetric path and can never exceed ``delay / 2``, which is why that is the reported uncertainty.
No two-way method can tell an asymmetric path from a clock offset.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

_NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class Sample:
    """One request/reply exchange with a reference clock, in ns since the epoch.

    ``resolution_ns`` is the granularity of the reference's stamps (1 ms for Binance's default
    ``serverTime``): a stamp is taken to mean the middle of its tick, so it adds up to half a
    tick of error either way.
    """

    t0_ns: int
    t1_ns: int
    t2_ns: int
    t3_ns: int
    resolution_ns: int = 0

    @property
    def offset_ns(self) -> float:
        return ((self.t1_ns - self.t0_ns) + (self.t2_ns - self.t3_ns)) / 2

    @property
    def delay_ns(self) -> int:
        """The round trip minus the time the reference held the request (never negative)."""
        return max(0, (self.t3_ns - self.t0_ns) - (self.t2_ns - self.t1_ns))

    @property
    def uncertainty_ns(self) -> float:
        return self.delay_ns / 2 + self.resolution_ns / 2


@dataclass(frozen=True, slots=True)
class Estimate:
    """One clock-offset estimate against one reference.

    ``offset_ms`` is reference clock minus local clock: add it to a local time to get the
    reference's time. ``offset_ms ± uncertainty_ms`` is the reported interval: for one interval's
    estimate, half the round trip plus half the stamp resolution (it bounds the error as long as
    the path is symmetric); for the filter's (:mod:`cryptopipe.skew.filter`), a 95 % interval
    whose parts are in ``components``. ``rtt_ms`` is the round trip of the best sample. ``stale``
    marks an estimate kept after its reference stopped answering (or grew too old).
    """

    offset_ms: float
    uncertainty_ms: float
    rtt_ms: float
    reference: str
    samples: int
    taken_at_us: int
    stale: bool = False
    extras: dict[str, Any] = field(default_factory=dict, compare=False)
    #: Where ``uncertainty_ms`` comes from (ms): statistical, resolution, asymmetry,
    #: round_trip_bound. Empty for a single interval's estimate (its uncertainty is the bound).
    components: dict[str, float] = field(default_factory=dict, compare=False)
    #: Frequency drift of the reference against the local clock (ppm), 0 when not estimated.
    drift_ppm: float = 0.0

    @property
    def offset_us(self) -> int:
        return round(self.offset_ms * 1000)

    def corrected_latency_us(self, receive_time_us: int, reference_time_us: int) -> int:
        """``receive (local clock) - event time (reference clock) + offset``: both on one clock."""
        return receive_time_us - reference_time_us + self.offset_us

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "offset_ms": round(self.offset_ms, 3),
            "uncertainty_ms": round(self.uncertainty_ms, 3),
            "rtt_ms": round(self.rtt_ms, 3),
            "reference": self.reference,
            "samples": self.samples,
            "taken_at_us": self.taken_at_us,
            "stale": self.stale,
        }
        if self.components:
            out["interval_ms"] = [
                round(self.offset_ms - self.uncertainty_ms, 3),
                round(self.offset_ms + self.uncertainty_ms, 3),
            ]
            out["uncertainty_components_ms"] = {k: round(v, 3) for k, v in self.components.items()}
            out["drift_ppm"] = round(self.drift_ppm, 3)
        out.update(self.extras)
        return out


def best_sample(samples: Iterable[Sample]) -> Sample:
    """The sample with the smallest delay: the one whose path had the least room for asymmetry."""
    return min(samples, key=lambda s: (s.delay_ns, s.t0_ns))


def estimate_from_samples(
    samples: Sequence[Sample], reference: str, taken_at_us: int, extras: dict[str, Any] | None = None
) -> Estimate:
    """NTP's estimate from the minimum-delay sample of one interval."""
    if not samples:
        raise ValueError("an estimate needs at least one sample")
    best = best_sample(samples)
    return Estimate(
        offset_ms=best.offset_ns / _NS_PER_MS,
        uncertainty_ms=best.uncertainty_ns / _NS_PER_MS,
        rtt_ms=best.delay_ns / _NS_PER_MS,
        reference=reference,
        samples=len(samples),
        taken_at_us=taken_at_us,
        extras=dict(extras or {}),
    )


def smooth(estimates: Sequence[Estimate]) -> Estimate:
    """Median of recent interval estimates (lower median: always one real estimate).

    Picking a real estimate rather than averaging keeps its uncertainty and round trip
    meaningful, and one congested interval cannot move the result. The result carries the
    newest interval's time and the number of samples behind the whole window.
    """
    if not estimates:
        raise ValueError("nothing to smooth")
    ordered = sorted(estimates, key=lambda e: e.offset_ms)
    chosen = ordered[(len(ordered) - 1) // 2]
    return replace(
        chosen,
        taken_at_us=max(e.taken_at_us for e in estimates),
        samples=sum(e.samples for e in estimates),
    )
