"""Offered against written while a scenario runs: the replay exchange's history against Redis, polled."""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis as redis_lib

from cryptopipe.measure.faults.config import REST_PAGE
from cryptopipe.measure.faults.poller import Poller
from cryptopipe.store import price_keys

# --- the offered side: the replay exchange's REST history ----------------------------------------


def rest_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _agg_trades(rest_url: str, symbol: str, **params: int) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"symbol": symbol.upper(), **params})
    found = rest_json(f"{rest_url}/api/v3/aggTrades?{query}", timeout=10.0)
    return found if isinstance(found, list) else []


def offered_trades(rest_url: str, symbols: Sequence[str]) -> dict[str, list[tuple[int, int]]]:
    """Every trade the exchange played, per (upper-case) symbol, as (id, trade time ms), from its
    REST history."""
    out: dict[str, list[tuple[int, int]]] = {}
    for symbol in symbols:
        trades: list[tuple[int, int]] = []
        next_id = 0
        while True:
            page = _agg_trades(rest_url, symbol, fromId=next_id, limit=REST_PAGE)
            trades += [(int(t["a"]), int(t["T"])) for t in page]
            if len(page) < REST_PAGE:
                break
            next_id = trades[-1][0] + 1
        out[symbol.upper()] = trades
    return out


# --- the monitor: offered vs written while the scenario runs ------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One poll: trades offered so far and trades in Redis; None where that side did not answer."""

    t: float
    offered: int | None
    written: int | None


class Monitor(Poller):
    """Polls trades offered (exchange REST) and trades in Redis (history ZCARD) on a thread."""

    def __init__(
        self, rest_url: str, symbols: Sequence[str], redis_url: str, key_prefix: str, interval: float
    ) -> None:
        super().__init__(redis_url, interval, "faults-monitor")
        self.rest_url = rest_url
        self.symbols = [s.upper() for s in symbols]
        self.samples: list[Sample] = []
        """Every poll, in order."""
        self.offered: int | None = None
        """Trades offered at the last poll (None: the exchange did not answer)."""
        self.written: int | None = None
        """Trades in Redis at the last poll (None: Redis did not answer)."""
        self.last_complete: Sample | None = None
        """The last poll that both sides answered."""
        self._keys = [price_keys(key_prefix, s)[1] for s in self.symbols]
        self._first: dict[str, int] = {}

    def _offered(self) -> int | None:
        total = 0
        try:
            for symbol in self.symbols:
                last = _agg_trades(self.rest_url, symbol, limit=1)
                if not last:
                    continue
                if symbol not in self._first:
                    self._first[symbol] = int(_agg_trades(self.rest_url, symbol, fromId=0, limit=1)[0]["a"])
                total += int(last[-1]["a"]) - self._first[symbol] + 1
        except (OSError, ValueError, KeyError, IndexError):
            return None
        return total

    def _written(self) -> int | None:
        try:
            pipe = self._client.pipeline(transaction=False)
            for key in self._keys:
                pipe.zcard(key)
            return sum(int(n) for n in pipe.execute())
        except redis_lib.RedisError:
            return None

    def tick(self, started: float) -> None:
        offered = self.offered = self._offered()
        written = self.written = self._written()
        sample = Sample(started, offered, written)
        self.samples.append(sample)
        if offered is not None and written is not None:
            self.last_complete = sample


def recovery_seconds(samples: Sequence[Sample], fault_end: float, excused: int = 0) -> float | None:
    """From ``fault_end`` to the first poll at which Redis held every trade offered up to the
    poll just before it, but the ``excused`` ones the fault made undeliverable (None if that
    never happened)."""
    for previous, sample in itertools.pairwise(samples):
        if sample.t < fault_end or previous.offered is None or sample.written is None:
            continue
        if sample.written + excused >= previous.offered:
            return round(sample.t - fault_end, 2)
    return None


def lag_episode(samples: Sequence[Sample], since: float) -> tuple[float, float | None] | None:
    """(behind from, caught up at), in seconds after ``since``: the longest stretch after ``since``
    during which Redis lacked trades offered a poll earlier (None if it never fell behind; caught
    up at None if it was still behind at the last poll)."""
    stretches: list[tuple[float, float | None]] = []
    start: float | None = None
    last = since
    for previous, sample in itertools.pairwise(samples):
        if sample.t < since or previous.offered is None:
            continue
        last = sample.t
        caught_up = sample.written is not None and sample.written >= previous.offered
        if start is None and not caught_up:
            start = sample.t
        elif start is not None and caught_up:
            stretches.append((start, sample.t))
            start = None
    if start is not None:
        stretches.append((start, None))
    if not stretches:
        return None
    begin, end = max(stretches, key=lambda s: (last if s[1] is None else s[1]) - s[0])
    return round(begin - since, 2), None if end is None else round(end - since, 2)
