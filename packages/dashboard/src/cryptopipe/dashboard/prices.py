"""The price cards' figures: the latest price from Redis, and the history kept by market time.

Prices come through the store package's read API (:class:`PriceStore`); each refresh folds the
newest trades Redis holds into the dashboard's own :class:`~cryptopipe.dashboard.history.MarketHistory`,
from which the chart and the fixed-window changes are drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from cryptopipe.dashboard.history import Change, MarketHistory, Point, changes, thin
from cryptopipe.store.prices import PriceStore


@dataclass(frozen=True, slots=True)
class PriceCard:
    symbol: str
    price: Decimal | None = None
    trade_time_us: int | None = None
    receive_time_us: int | None = None
    age_s: float | None = None
    stale: bool = True
    #: One per fixed window (1m, 5m, 1h); ``pct`` None while the history is shorter.
    changes: tuple[Change, ...] = ()
    #: The chart's (trade_time_us, price) points, oldest first: the newest hour at most.
    chart: tuple[Point, ...] = ()
    #: Market time the dashboard's history covers for this symbol, in seconds.
    kept_s: float = 0.0
    #: Reads that may have missed trades (more arrived between two refreshes than Redis holds).
    gaps: int = 0

    def change(self, window: str) -> float | None:
        return next((c.pct for c in self.changes if c.window == window), None)


def load_prices(
    store: PriceStore,
    symbols: Sequence[str],
    *,
    now_us: int,
    stale_seconds: float,
    history_points: int,
    history: MarketHistory,
) -> list[PriceCard]:
    """One card per symbol, in the order given (every symbol in Redis, sorted, when none is given).

    Staleness is judged on the local receive time, not the exchange's trade time, so a skewed
    exchange clock or a replay of old recordings does not make a live stream look stale.
    Raises ``redis.RedisError`` when Redis cannot be read.
    """
    wanted = list(symbols) or store.symbols()
    cards: list[PriceCard] = []
    for symbol in wanted:
        latest = store.latest(symbol)
        if latest is None:
            cards.append(PriceCard(symbol=symbol))
            continue
        rows = store.history(symbol, history_points)
        trades = [(int(r["trade_time_us"]), float(r["price"])) for r in rows]
        price: Decimal = latest["price"]
        trade_time_us = int(latest["trade_time_us"])
        trades.append((trade_time_us, float(price)))
        points, gaps = history.add(symbol, trades, full=len(rows) >= history_points)
        receive_time_us = int(latest.get("receive_time_us") or 0) or None
        age_s = (now_us - receive_time_us) / 1e6 if receive_time_us else None
        cards.append(
            PriceCard(
                symbol=symbol,
                price=price,
                trade_time_us=trade_time_us,
                receive_time_us=receive_time_us,
                age_s=age_s,
                stale=age_s is None or age_s > stale_seconds,
                changes=changes(points),
                chart=tuple(thin(points)),
                kept_s=(points[-1][0] - points[0][0]) / 1e6,
                gaps=gaps,
            )
        )
    return cards
