"""A seeded synthetic market: Poisson arrivals with occasional bursts and a tick-size price walk."""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterable, Iterator
from decimal import Decimal

from cryptopipe.replay.errors import ReplayConfigError
from cryptopipe.replay.sources.base import Source, TradeRecord
from cryptopipe.replay.symbols import symbol_spec

_EIGHT_PLACES = Decimal("0.00000001")
#: 2024-01-01T00:00:00Z: the synthetic tape's original clock, so ``--clock original`` is deterministic.
SYNTHETIC_EPOCH_US = 1_704_067_200_000_000


class SyntheticSource(Source):
    """Seeded trades for several symbols: Poisson arrivals with occasional bursts, tick-size walk.

    ``rate`` is the long-run mean of messages per second over all symbols; ``burst=False`` gives a
    steady Poisson stream (benchmarks). The same seed always yields the same events.
    """

    BURST_START_P = 0.01
    BURST_MEAN_LEN = 30
    BURST_FACTOR = 10.0

    def __init__(
        self, symbols: Iterable[str], *, rate: float, seed: int, burst: bool = True, count: int | None = None
    ) -> None:
        super().__init__()
        self._symbols = tuple(s.upper() for s in symbols)
        if not self._symbols:
            raise ReplayConfigError("symbols", "the synthetic source needs at least one symbol")
        self.rate = rate
        self.seed = seed
        self.burst = burst
        self.count = count
        self.name = f"synthetic(seed={seed})"

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(self._symbols)

    def _base_rate(self) -> float:
        if not self.burst:
            return self.rate
        share = self.BURST_START_P * self.BURST_MEAN_LEN / (1 + self.BURST_START_P * self.BURST_MEAN_LEN)
        return self.rate * ((1 - share) + share / self.BURST_FACTOR)

    def events(self) -> Iterator[TradeRecord]:
        rng = random.Random(self.seed)
        specs = [symbol_spec(s) for s in self._symbols]
        ticks = [Decimal(s.tick) for s in specs]
        lots = [Decimal(s.lot) for s in specs]
        price_ticks = [int(Decimal(s.start_price) / Decimal(s.tick)) for s in specs]
        log_typical = [math.log(float(Decimal(s.typical_qty) / Decimal(s.lot))) for s in specs]
        next_id = [100_000_000 * (i + 1) for i in range(len(specs))]
        weights = [1.0 / (i + 1) for i in range(len(specs))]
        cumulative = list(itertools.accumulate(w / sum(weights) for w in weights))
        base_rate = self._base_rate()
        now_us = float(SYNTHETIC_EPOCH_US)
        burst_left = 0
        produced = 0
        while self.count is None or produced < self.count:
            if self.burst and burst_left == 0 and rng.random() < self.BURST_START_P:
                burst_left = 1 + int(rng.expovariate(1.0 / self.BURST_MEAN_LEN))
            rate = base_rate * (self.BURST_FACTOR if burst_left > 0 else 1.0)
            burst_left = max(0, burst_left - 1)
            now_us += rng.expovariate(rate) * 1e6
            i = min(bisect.bisect_right(cumulative, rng.random()), len(specs) - 1)
            sigma = max(1.0, price_ticks[i] * 0.0001)
            price_ticks[i] = max(1, price_ticks[i] + round(rng.gauss(0.0, sigma)))
            lots_n = max(1, round(math.exp(rng.gauss(log_typical[i], 1.2))))
            trade_time = int(now_us)
            trade_id = next_id[i]
            next_id[i] += 1
            yield TradeRecord(
                symbol=self._symbols[i],
                kind="trade",
                id=trade_id,
                price=(price_ticks[i] * ticks[i]).quantize(_EIGHT_PLACES),
                qty=(lots_n * lots[i]).quantize(_EIGHT_PLACES),
                first_id=trade_id,
                last_id=trade_id,
                trade_time_us=trade_time,
                event_time_us=trade_time + rng.randrange(0, 1500),
                buyer_is_maker=rng.random() < 0.5,
                best_match=True,
                pace_ns=trade_time * 1000,
            )
            produced += 1
