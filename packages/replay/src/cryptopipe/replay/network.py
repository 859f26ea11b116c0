"""Network conditions of the replay exchange: jittered one-way delays and a drifting, stepping clock.

Pure and seeded, so the exchange (which sleeps them) and a simulation (which only adds them up)
draw from the very same distributions:

* :class:`Delay`: one direction's delay in ms. ``normal``: ``base_ms`` is the mean and
  ``jitter_ms`` the standard deviation (cut at 0). ``pareto``: ``base_ms`` is the floor and the
  excess is Lomax (Pareto II) with shape ``shape`` and mean ``jitter_ms``, a heavy tail.
* :class:`NetworkConditions`: a delay per direction: REST request, REST response, WS frame.
* :class:`ServerClock`: the exchange's clock, ``offset_ms`` ahead of the local one, drifting
  ``drift_ppm`` and stepping by ``step_ms`` once ``step_after_s`` have passed.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Literal

Distribution = Literal["normal", "pareto"]
DISTRIBUTIONS: tuple[Distribution, ...] = ("normal", "pareto")
#: Pareto shape by default: a finite mean, an infinite variance (a heavy tail).
PARETO_SHAPE = 2.0


@dataclass(frozen=True, slots=True)
class Delay:
    """One direction's delay distribution (ms); see the module docstring for the parameters."""

    base_ms: float = 0.0
    jitter_ms: float = 0.0
    distribution: Distribution = "normal"
    shape: float = PARETO_SHAPE

    def __post_init__(self) -> None:
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {self.distribution!r}")
        if self.base_ms < 0 or self.jitter_ms < 0:
            raise ValueError("base_ms and jitter_ms must be >= 0")
        if not self.shape > 1:
            raise ValueError(f"the Pareto shape must be > 1 (a finite mean), got {self.shape!r}")

    def draw_ms(self, rng: random.Random) -> float:
        """One delay in ms, never negative."""
        if not self.jitter_ms:
            return self.base_ms
        if self.distribution == "normal":
            return max(0.0, rng.gauss(self.base_ms, self.jitter_ms))
        return self._lomax(1.0 - rng.random())

    def quantile_ms(self, q: float) -> float:
        """The q-quantile of :meth:`draw_ms` (0 < q < 1), for tests and reports."""
        if not self.jitter_ms:
            return self.base_ms
        if self.distribution == "normal":
            return max(0.0, self.base_ms + self.jitter_ms * _normal_quantile(q))
        return self._lomax(1.0 - q)

    def _lomax(self, survival: float) -> float:
        """The base plus the Lomax excess whose survival probability is ``survival`` (mean jitter_ms)."""
        scale = (self.shape - 1) * self.jitter_ms
        return self.base_ms + scale * (math.pow(survival, -1.0 / self.shape) - 1.0)


def _normal_quantile(q: float) -> float:
    return NormalDist().inv_cdf(q)


@dataclass(frozen=True, slots=True)
class NetworkConditions:
    """A delay per direction; ``asymmetric(...)`` builds the common case."""

    rest_request: Delay = field(default_factory=Delay)
    rest_response: Delay = field(default_factory=Delay)
    ws: Delay = field(default_factory=Delay)

    @classmethod
    def build(
        cls,
        delay_ms: float = 0.0,
        jitter_ms: float = 0.0,
        distribution: Distribution = "normal",
        *,
        rest_request_ms: float | None = None,
        rest_response_ms: float | None = None,
        ws_ms: float | None = None,
        shape: float = PARETO_SHAPE,
    ) -> NetworkConditions:
        """Every direction ``delay_ms`` (unless given its own base), all with the same jitter."""

        def one(base: float | None) -> Delay:
            return Delay(delay_ms if base is None else base, jitter_ms, distribution, shape)

        return cls(one(rest_request_ms), one(rest_response_ms), one(ws_ms))

    @property
    def active(self) -> bool:
        return any(d.base_ms or d.jitter_ms for d in (self.rest_request, self.rest_response, self.ws))


class Sampler:
    """Draws delays of :class:`NetworkConditions` in seconds; WS frames keep their order.

    A TCP stream delivers in order, so a frame's due time is never before the previous frame's:
    ``due = max(now + draw, last due)``.
    """

    def __init__(self, conditions: NetworkConditions, seed: int | None = None) -> None:
        self.conditions = conditions
        self.rng = random.Random(seed)
        self._last_ws_due = -math.inf

    def rest_request_s(self) -> float:
        return self.conditions.rest_request.draw_ms(self.rng) / 1000

    def rest_response_s(self) -> float:
        return self.conditions.rest_response.draw_ms(self.rng) / 1000

    def ws_due(self, now: float) -> float:
        """When a WS frame handed over at ``now`` (seconds, any monotonic clock) reaches the wire."""
        delay = self.conditions.ws
        due = now + (delay.draw_ms(self.rng) / 1000 if delay.base_ms or delay.jitter_ms else 0.0)
        self._last_ws_due = max(due, self._last_ws_due)
        return self._last_ws_due


@dataclass
class ServerClock:
    """The exchange's clock against the local one: offset, drift (ppm) and one step.

    ``at_ns(local_ns)`` is pure (a simulation calls it with its own times); ``now_us()`` reads the
    local wall clock. Drift and step count from ``start_ns`` (construction by default).
    """

    offset_ms: float = 0.0
    drift_ppm: float = 0.0
    step_ms: float = 0.0
    step_after_s: float | None = None
    start_ns: int | None = None
    local_ns: Callable[[], int] = time.time_ns

    def __post_init__(self) -> None:
        if self.start_ns is None:
            self.start_ns = self.local_ns()
        if self.step_after_s is not None and self.step_after_s < 0:
            raise ValueError("step_after_s must be >= 0")

    def offset_at_ns(self, local_ns: int) -> float:
        """Server minus local clock at ``local_ns``, in ns (a float: drift is fractional)."""
        assert self.start_ns is not None
        elapsed = local_ns - self.start_ns
        offset = self.offset_ms * 1e6 + self.drift_ppm * 1e-6 * elapsed
        if self.step_ms and self.step_after_s is not None and elapsed >= self.step_after_s * 1e9:
            offset += self.step_ms * 1e6
        return offset

    def at_ns(self, local_ns: int) -> int:
        return local_ns + round(self.offset_at_ns(local_ns))

    def now_us(self) -> int:
        return self.at_ns(self.local_ns()) // 1000
