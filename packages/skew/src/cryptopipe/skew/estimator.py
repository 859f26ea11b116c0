"""Clock-offset estimation against one time reference, for the monitor and for in-process use.

Sign convention (NTP's): ``offset = reference clock - local clock``. A server whose clock is
250 ms ahead of ours gives ``offset_ms = +250``.

Skew-corrected network latency of an exchange event stamped ``T`` on the exchange's clock and
received at ``R`` on ours::

    corrected = (R - T) + offset

which is the issue's "receive - trade - offset" with the offset written the other way round
(local - reference). Without the correction the raw ``R - T`` is off by exactly the offset.

Each interval takes several samples and keeps the one with the smallest round trip (NTP's
clock filter in its simplest form); its midpoint gives the offset, half its round trip (plus half
the reference's stamp resolution) the uncertainty. The published value is the median of the
last few intervals. A reference that stops answering costs an error count and marks the
estimate stale; the last good estimate stays in use.

In-process use (e.g. ingest)::

    skew = SkewEstimator(BinanceTimeReference(rest_url))
    task = asyncio.create_task(skew.run(stop_event))
    ...
    skew.observe_network_latency(trade.symbol, trade.receive_time_us, trade.trade_time_us)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from dataclasses import replace
from typing import Any

from cryptopipe.observability import metrics as m
from cryptopipe.skew.errors import ReferenceUnavailable
from cryptopipe.skew.estimate import Estimate, Sample, estimate_from_samples, smooth
from cryptopipe.skew.references import BinanceTimeReference, TimeReference

logger = logging.getLogger(__name__)

_COMPONENT = "skew"


class SkewEstimator:
    """Estimates and keeps the offset of the local clock against one reference.

    ``samples`` exchanges per interval, ``spacing_s`` apart; an interval gives up after
    ``max_consecutive_failures`` failed exchanges in a row. ``current`` is the median of the
    last ``window`` interval estimates; it turns stale after a failed interval or when older
    than ``stale_after_s`` (default: three intervals).
    """

    def __init__(
        self,
        reference: TimeReference,
        *,
        samples: int = 8,
        interval_s: float = 30.0,
        window: int = 5,
        spacing_s: float = 0.05,
        stale_after_s: float | None = None,
        max_consecutive_failures: int = 2,
    ) -> None:
        if samples < 1 or window < 1 or max_consecutive_failures < 1:
            raise ValueError("samples, window and max_consecutive_failures must be >= 1")
        if not interval_s > 0 or spacing_s < 0:
            raise ValueError("interval_s must be > 0 and spacing_s >= 0")
        self.reference = reference
        self.samples = samples
        self.interval_s = interval_s
        self.spacing_s = spacing_s
        self.stale_after_s = stale_after_s if stale_after_s is not None else 3 * interval_s
        self.max_consecutive_failures = max_consecutive_failures
        self._window: deque[Estimate] = deque(maxlen=window)
        self._smoothed: Estimate | None = None
        self._offset_us: int | None = None
        self._last_failed = False
        self._started_mono = time.monotonic()
        self._good_mono: float | None = None
        self.last_error: ReferenceUnavailable | None = None
        name = reference.name
        m.CLOCK_ESTIMATE_AGE.labels(reference=name).set_function(self.age_s)
        m.CLOCK_ESTIMATE_STALE.labels(reference=name).set_function(lambda: 1.0 if self.is_stale() else 0.0)

    @classmethod
    def for_binance(cls, rest_url: str, *, timeout_s: float = 2.0, **kwargs: Any) -> SkewEstimator:
        """Shorthand for ``SkewEstimator(BinanceTimeReference(rest_url, timeout_s=...), ...)``."""
        return cls(BinanceTimeReference(rest_url, timeout_s=timeout_s), **kwargs)

    # --- reading -------------------------------------------------------------------------------
    @property
    def current(self) -> Estimate | None:
        """The smoothed estimate in use (None before the first good interval), stale-flagged."""
        if self._smoothed is None:
            return None
        stale = self.is_stale()
        return replace(self._smoothed, stale=True) if stale else self._smoothed

    @property
    def offset_us(self) -> int | None:
        """The smoothed offset in µs (reference - local), cheap to read per message."""
        return self._offset_us

    def is_stale(self) -> bool:
        return self._last_failed or self.age_s() > self.stale_after_s

    def age_s(self) -> float:
        """Seconds since the last good estimate (since construction while there is none)."""
        since = self._good_mono if self._good_mono is not None else self._started_mono
        return time.monotonic() - since

    def corrected_latency_us(self, receive_time_us: int, reference_time_us: int) -> int | None:
        """``receive (local) - event time (reference) + offset``; None before the first estimate."""
        offset = self._offset_us
        if offset is None:
            return None
        return receive_time_us - reference_time_us + offset

    def observe_network_latency(self, symbol: str, receive_time_us: int, trade_time_us: int) -> int | None:
        """Observe the skew-corrected network latency of one trade; returns it in µs (None: no estimate)."""
        corrected = self.corrected_latency_us(receive_time_us, trade_time_us)
        if corrected is not None:
            m.NETWORK_LATENCY_CORRECTED.labels(symbol=symbol).observe(corrected / 1e6)
        return corrected

    # --- estimating ----------------------------------------------------------------------------
    async def sample_once(self) -> Estimate:
        """One interval: ``samples`` exchanges, estimate from the shortest round trip.

        Does not touch ``current`` or the gauges (see :meth:`update`). Raises
        :class:`ReferenceUnavailable` when no exchange succeeded.
        """
        taken: list[Sample] = []
        failures = failed = 0
        error: ReferenceUnavailable | None = None
        for i in range(self.samples):
            if i and self.spacing_s:
                await asyncio.sleep(self.spacing_s)
            try:
                taken.append(await self.reference.sample())
                failures = 0
            except ReferenceUnavailable as exc:
                m.ERRORS.labels(component=_COMPONENT, reason=exc.reason).inc()
                logger.debug("clock reference failed: %s", exc)
                error, failures, failed = exc, failures + 1, failed + 1
                if failures >= self.max_consecutive_failures:
                    break
        if not taken:
            assert error is not None
            raise error
        if failed:
            logger.warning(
                "%d of %d exchanges failed this interval, last: %s", failed, failed + len(taken), error
            )
        extras = {"source": self.reference.source}
        unit = getattr(self.reference, "time_unit", None)
        if unit is not None:
            extras["time_unit"] = unit
        return estimate_from_samples(taken, self.reference.name, time.time_ns() // 1000, extras)

    async def update(self) -> Estimate | None:
        """One interval, folded into ``current`` and published; None (and stale) if it failed."""
        try:
            estimate = await self.sample_once()
        except ReferenceUnavailable as exc:
            logger.warning("no clock estimate this interval, keeping the last good one (stale): %s", exc)
            self._last_failed = True
            self.last_error = exc
            return None
        self._last_failed = False
        self.last_error = None
        self._good_mono = time.monotonic()
        self._window.append(estimate)
        smoothed = smooth(list(self._window))
        self._smoothed = smoothed
        self._offset_us = smoothed.offset_us
        name = self.reference.name
        m.CLOCK_OFFSET.labels(reference=name).set(smoothed.offset_ms / 1000)
        m.CLOCK_OFFSET_UNCERTAINTY.labels(reference=name).set(smoothed.uncertainty_ms / 1000)
        m.CLOCK_RTT.labels(reference=name).set(smoothed.rtt_ms / 1000)
        logger.debug(
            "%s: interval offset %+.3f ms ± %.3f (rtt %.3f ms); smoothed %+.3f ms",
            name,
            estimate.offset_ms,
            estimate.uncertainty_ms,
            estimate.rtt_ms,
            smoothed.offset_ms,
        )
        return estimate

    async def run(self, stop_event: asyncio.Event) -> None:
        """Update every ``interval_s`` until ``stop_event`` is set; never raises for a dead reference."""
        while not stop_event.is_set():
            started = time.monotonic()
            await self.update()
            remaining = self.interval_s - (time.monotonic() - started)
            if remaining > 0 and not math.isinf(remaining):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop_event.wait(), remaining)

    async def aclose(self) -> None:
        await self.reference.close()


def measure_once(
    reference: TimeReference | str, *, samples: int = 8, spacing_s: float = 0.05, timeout_s: float = 2.0
) -> Estimate:
    """Blocking one-shot estimate, for scripts and summaries; a str is a Binance REST base URL.

    Runs its own event loop (do not call it from async code: use :meth:`SkewEstimator.sample_once`).
    Raises :class:`ReferenceUnavailable` when the reference does not answer.
    """
    ref = BinanceTimeReference(reference, timeout_s=timeout_s) if isinstance(reference, str) else reference

    async def _once() -> Estimate:
        estimator = SkewEstimator(ref, samples=samples, spacing_s=spacing_s)
        try:
            return await estimator.sample_once()
        finally:
            await estimator.aclose()

    return asyncio.run(_once())
