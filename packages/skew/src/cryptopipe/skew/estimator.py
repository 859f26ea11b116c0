"""Clock-offset estimation against one time reference, for the monitor and for in-process use.

Sign convention (NTP's): ``offset = reference clock - local clock``. A server whose clock is
250 ms ahead of ours gives ``offset_ms = +250``.

Skew-corrected network latency of an exchange event stamped ``T`` on the exchange's clock and
received at ``R`` on ours::

    corrected = (R - T) + offset(R)

which is the issue's "receive - trade - offset" with the offset written the other way round
(local - reference). Without the correction the raw ``R - T`` is off by exactly the offset.

Each interval takes ``samples`` exchanges spread over it and hands them to the
:class:`~cryptopipe.skew.filter.ClockFilter`: a line through the last ``window`` intervals gives
the offset at any time (drift included), a 95 % interval with its parts, and clock steps. A
reference that stops answering costs an error count and marks the estimate stale; the last good
line stays in use.

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
from dataclasses import replace
from typing import Any

from cryptopipe.observability import metrics as m
from cryptopipe.skew.errors import ReferenceUnavailable
from cryptopipe.skew.estimate import Estimate, Sample, estimate_from_samples
from cryptopipe.skew.filter import ClockFilter, FilterUpdate
from cryptopipe.skew.references import BinanceTimeReference, TimeReference

logger = logging.getLogger(__name__)

_COMPONENT = "skew"
#: The first interval is taken back to back, at most this many exchanges (a first estimate fast).
_FIRST_SAMPLES = 8


class SkewEstimator:
    """Estimates and keeps the offset of the local clock against one reference.

    ``samples`` exchanges per interval, ``spacing_s`` apart (default: spread over the interval;
    the first interval back to back); an interval gives up after ``max_consecutive_failures``
    failed exchanges in a row. The offset comes from a :class:`ClockFilter` over the last
    ``window`` intervals (``filter_options`` go to it); it turns stale after a failed interval or
    when older than ``stale_after_s`` (default: three intervals).
    """

    def __init__(
        self,
        reference: TimeReference,
        *,
        samples: int = 20,
        interval_s: float = 10.0,
        window: int = 150,
        spacing_s: float | None = None,
        stale_after_s: float | None = None,
        max_consecutive_failures: int = 2,
        **filter_options: Any,
    ) -> None:
        if samples < 1 or window < 1 or max_consecutive_failures < 1:
            raise ValueError("samples, window and max_consecutive_failures must be >= 1")
        if not interval_s > 0 or (spacing_s is not None and spacing_s < 0):
            raise ValueError("interval_s must be > 0 and spacing_s >= 0")
        self.reference = reference
        self.samples = samples
        self.interval_s = interval_s
        self.spacing_s = spacing_s if spacing_s is not None else interval_s / samples
        self.stale_after_s = stale_after_s if stale_after_s is not None else 3 * interval_s
        self.max_consecutive_failures = max_consecutive_failures
        self.filter = ClockFilter(window=window, **filter_options)
        self._current: Estimate | None = None
        self._intervals = 0
        self._outliers = 0
        self._last_failed = False
        self._started_mono = time.monotonic()
        self._good_mono: float | None = None
        self.last_error: ReferenceUnavailable | None = None
        self.last_update: FilterUpdate | None = None
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
        """The estimate of the last good interval (None before the first), stale-flagged."""
        if self._current is None:
            return None
        return replace(self._current, stale=True) if self.is_stale() else self._current

    @property
    def offset_us(self) -> int | None:
        """The offset in µs (reference - local) now, drift included."""
        return self.offset_us_at(time.time_ns() // 1000)

    def offset_us_at(self, local_us: int) -> int | None:
        """The offset in µs at local time ``local_us``, following the fitted drift."""
        offset_ms = self.filter.offset_ms_at(local_us * 1000)
        return None if offset_ms is None else round(offset_ms * 1000)

    def is_stale(self) -> bool:
        return self._last_failed or self.age_s() > self.stale_after_s

    def age_s(self) -> float:
        """Seconds since the last good estimate (since construction while there is none)."""
        since = self._good_mono if self._good_mono is not None else self._started_mono
        return time.monotonic() - since

    def corrected_latency_us(self, receive_time_us: int, reference_time_us: int) -> int | None:
        """``receive (local) - event time (reference) + offset``; None before the first estimate."""
        offset = self.offset_us_at(receive_time_us)
        if offset is None:
            return None
        return receive_time_us - reference_time_us + offset

    def observe_network_latency(self, symbol: str, receive_time_us: int, trade_time_us: int) -> int | None:
        """Observe the skew-corrected network latency of one trade; returns it in µs (None: no estimate)."""
        corrected = self.corrected_latency_us(receive_time_us, trade_time_us)
        if corrected is not None:
            m.NETWORK_LATENCY_CORRECTED.labels(symbol=m.symbol_label(symbol)).observe(corrected / 1e6)
        return corrected

    # --- estimating ----------------------------------------------------------------------------
    async def take_samples(self, count: int | None = None, spacing_s: float | None = None) -> list[Sample]:
        """One interval's exchanges; raises :class:`ReferenceUnavailable` when none succeeded."""
        count = self.samples if count is None else count
        spacing = self.spacing_s if spacing_s is None else spacing_s
        taken: list[Sample] = []
        failures = failed = 0
        error: ReferenceUnavailable | None = None
        for i in range(count):
            if i and spacing:
                await asyncio.sleep(spacing)
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
        return taken

    def _extras(self) -> dict[str, Any]:
        extras: dict[str, Any] = {"source": self.reference.source}
        unit = getattr(self.reference, "time_unit", None)
        if unit is not None:
            extras["time_unit"] = unit
        return extras

    async def sample_once(self) -> Estimate:
        """One interval's own estimate (its shortest round trip: NTP's way), taken back to back.

        Does not touch ``current``, the filter or the gauges (see :meth:`update`). Raises
        :class:`ReferenceUnavailable` when no exchange succeeded.
        """
        taken = await self.take_samples(spacing_s=0.0)
        return estimate_from_samples(taken, self.reference.name, time.time_ns() // 1000, self._extras())

    async def update(self) -> Estimate | None:
        """One interval folded into the filter and published; None (and stale) if it failed."""
        first = self._intervals == 0
        try:
            taken = await self.take_samples(
                min(self.samples, _FIRST_SAMPLES) if first else None, 0.0 if first else None
            )
        except ReferenceUnavailable as exc:
            logger.warning("no clock estimate this interval, keeping the last good one (stale): %s", exc)
            self._last_failed = True
            self.last_error = exc
            return None
        self._intervals += 1
        self._last_failed = False
        self.last_error = None
        self._good_mono = time.monotonic()
        return self.fold(taken, time.time_ns())

    def fold(self, taken: list[Sample], now_ns: int) -> Estimate | None:
        """Fold one interval's samples into the filter; the estimate at ``now_ns``, published."""
        update = self.filter.add(taken)
        self.last_update = update
        name = self.reference.name
        if update.outcome == "step" and update.step_ms is not None:
            m.CLOCK_STEPS.labels(reference=name).inc()
            m.CLOCK_LAST_STEP.labels(reference=name).set(update.step_ms / 1000)
            logger.warning(
                "%s: the clock stepped by %+.3f ms (detected over two intervals)", name, update.step_ms
            )
        if self.filter.outliers > self._outliers:
            m.CLOCK_OUTLIER_INTERVALS.labels(reference=name).inc(self.filter.outliers - self._outliers)
            self._outliers = self.filter.outliers
        if update.outcome == "held":
            logger.info("%s: this interval is off the fitted line; held until the next one says why", name)
        estimate = self._estimate(now_ns, min(s.delay_ns for s in taken) / 1e6)
        if estimate is None:
            return None
        self._current = estimate
        publish(estimate, self.filter.samples_in_fit)
        return estimate

    def _estimate(self, now_ns: int, rtt_ms: float) -> Estimate | None:
        offset_ms = self.filter.offset_ms_at(now_ns)
        uncertainty = self.filter.uncertainty_at(now_ns)
        if offset_ms is None or uncertainty is None:
            return None
        return Estimate(
            offset_ms=offset_ms,
            uncertainty_ms=uncertainty.half_width_ms,
            rtt_ms=rtt_ms,
            reference=self.reference.name,
            samples=self.filter.samples_in_fit,
            taken_at_us=now_ns // 1000,
            extras=self._extras(),
            components=uncertainty.as_dict(),
            drift_ppm=self.filter.drift_ppm,
        )

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


def publish(estimate: Estimate, samples_in_fit: int) -> None:
    """Set the ``cryptopipe_clock_*`` gauges of ``estimate``'s reference."""
    name = estimate.reference
    m.CLOCK_OFFSET.labels(reference=name).set(estimate.offset_ms / 1000)
    m.CLOCK_OFFSET_UNCERTAINTY.labels(reference=name).set(estimate.uncertainty_ms / 1000)
    m.CLOCK_RTT.labels(reference=name).set(estimate.rtt_ms / 1000)
    low, high = estimate.offset_ms - estimate.uncertainty_ms, estimate.offset_ms + estimate.uncertainty_ms
    m.CLOCK_OFFSET_INTERVAL.labels(reference=name, end="lower").set(low / 1000)
    m.CLOCK_OFFSET_INTERVAL.labels(reference=name, end="upper").set(high / 1000)
    for component, value in estimate.components.items():
        m.CLOCK_UNCERTAINTY_COMPONENT.labels(reference=name, component=component).set(value / 1000)
    m.CLOCK_DRIFT.labels(reference=name).set(estimate.drift_ppm)
    m.CLOCK_SAMPLES_IN_FIT.labels(reference=name).set(samples_in_fit)


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
