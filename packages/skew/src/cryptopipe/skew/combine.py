"""More than one reference: compare them pairwise, flag a disagreement, combine them into one.

One reference cannot see its own path's asymmetry: it shifts the offset by half of it, and the
statistics stay as tight as ever. Two references over different paths can: when their offsets
differ by more than their combined statistical uncertainty, at least one path is asymmetric.
That is flagged (``cryptopipe_clock_references_disagree``, a counter and a warning) and the
combined interval then spans both references' intervals, since which one is right is unknown.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from cryptopipe.observability import metrics as m
from cryptopipe.skew.estimate import Estimate

logger = logging.getLogger(__name__)

COMBINED = "combined"


def statistical_ms(estimate: Estimate) -> float:
    """The part of the uncertainty that is measured, not assumed (all of it for one interval's)."""
    parts = estimate.components
    if not parts:
        return estimate.uncertainty_ms
    return parts.get("statistical", 0.0) + parts.get("resolution", 0.0)


@dataclass(frozen=True, slots=True)
class Comparison:
    """``reference`` minus ``other`` (ms), and how much of that their statistics allow."""

    reference: str
    other: str
    difference_ms: float
    allowed_ms: float

    @property
    def disagree(self) -> bool:
        return abs(self.difference_ms) > self.allowed_ms


def compare(a: Estimate, b: Estimate) -> Comparison:
    allowed = math.hypot(statistical_ms(a), statistical_ms(b))
    return Comparison(a.reference, b.reference, a.offset_ms - b.offset_ms, allowed)


def combine(estimates: Sequence[Estimate]) -> Estimate:
    """Inverse-variance mean of the offsets; when any two disagree, the interval spans them all."""
    if not estimates:
        raise ValueError("nothing to combine")
    weights = [1 / max(statistical_ms(e), 1e-6) ** 2 for e in estimates]
    total = sum(weights)
    offset = sum(w * e.offset_ms for w, e in zip(weights, estimates, strict=True)) / total
    statistical = 1 / math.sqrt(total)
    asymmetry = min(e.components.get("asymmetry", 0.0) for e in estimates)
    half = statistical + asymmetry
    if any(compare(a, b).disagree for a, b in itertools.combinations(estimates, 2)):
        low = min(e.offset_ms - e.uncertainty_ms for e in estimates)
        high = max(e.offset_ms + e.uncertainty_ms for e in estimates)
        half = max(offset - low, high - offset)
    return Estimate(
        offset_ms=offset,
        uncertainty_ms=half,
        rtt_ms=min(e.rtt_ms for e in estimates),
        reference=COMBINED,
        samples=sum(e.samples for e in estimates),
        taken_at_us=max(e.taken_at_us for e in estimates),
        stale=all(e.stale for e in estimates),
        components={"statistical": statistical, "asymmetry": half - statistical},
        drift_ppm=sum(w * e.drift_ppm for w, e in zip(weights, estimates, strict=True)) / total,
    )


class Consensus:
    """Compares the references' current estimates each time it is asked; metrics and log lines."""

    def __init__(self) -> None:
        self._disagreeing: set[tuple[str, str]] = set()

    def check(self, estimates: Sequence[Estimate]) -> list[Comparison]:
        ordered = sorted(estimates, key=lambda e: e.reference)
        found = [compare(a, b) for a, b in itertools.combinations(ordered, 2)]
        for comparison in found:
            self._note(comparison)
        return found

    def _note(self, c: Comparison) -> None:
        key = (c.reference, c.other)
        m.CLOCK_REFERENCE_DIFFERENCE.labels(reference=c.reference, other=c.other).set(c.difference_ms / 1000)
        m.CLOCK_REFERENCES_DISAGREE.labels(reference=c.reference, other=c.other).set(1 if c.disagree else 0)
        if c.disagree and key not in self._disagreeing:
            self._disagreeing.add(key)
            m.CLOCK_DISAGREEMENTS.labels(reference=c.reference, other=c.other).inc()
            logger.warning(
                "clock references disagree: %s - %s = %+.3f ms, more than their combined uncertainty "
                "±%.3f ms: at least one path is asymmetric (an offset inherits half its asymmetry)",
                c.reference,
                c.other,
                c.difference_ms,
                c.allowed_ms,
            )
        elif not c.disagree and key in self._disagreeing:
            self._disagreeing.discard(key)
            logger.info(
                "clock references %s and %s agree again (%+.3f ms)", c.reference, c.other, c.difference_ms
            )
