"""Fixtures for the dashboard tests: a market written into real Redis by the store's own sinks."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from itertools import count

import pytest
import redis
from prometheus_client import CollectorRegistry, start_http_server

from cryptopipe.observability import serve_metrics
from cryptopipe.schemas import Alert, RedisSettings, Side, Trade
from cryptopipe.store.alerts import AlertSink
from cryptopipe.store.prices import PriceSink
from cryptopipe.store.sink import connect_redis


def now_us() -> int:
    return time.time_ns() // 1000


class Market:
    """Writes trades and alerts exactly as the prices and alerts consumers do (their sinks)."""

    def __init__(self, client: redis.Redis, settings: RedisSettings) -> None:
        self.client = client
        self.settings = settings
        self.prices = PriceSink(client, key_prefix=settings.key_prefix)
        self.alerts = AlertSink(client, key_prefix=settings.key_prefix)
        self._ids = count(1)

    def trade(
        self, symbol: str, price: str | Decimal, *, age_s: float = 0.0, trade_time_us: int | None = None
    ) -> Trade:
        """One trade received ``age_s`` seconds ago (exchange time 1 ms earlier unless given)."""
        received = now_us() - int(age_s * 1e6)
        trade = Trade(
            symbol=symbol,
            trade_id=next(self._ids),
            price=Decimal(price),
            quantity=Decimal("0.5"),
            buyer_is_maker=False,
            trade_time_us=trade_time_us if trade_time_us is not None else received - 1000,
            event_time_us=received - 900,
            receive_time_us=received,
        )
        self.prices.write([trade])
        return trade

    def series(
        self, symbol: str, prices: Sequence[str], *, spacing_s: float, last_age_s: float = 0.0
    ) -> None:
        """Trades ``spacing_s`` apart in exchange time, the last one received ``last_age_s`` ago."""
        end = now_us() - int(last_age_s * 1e6)
        trades = []
        for i, price in enumerate(prices):
            t = end - int((len(prices) - 1 - i) * spacing_s * 1e6)
            trades.append(
                Trade(
                    symbol=symbol,
                    trade_id=next(self._ids),
                    price=Decimal(price),
                    quantity=Decimal("1"),
                    buyer_is_maker=True,
                    trade_time_us=t - 1000,
                    event_time_us=t - 900,
                    receive_time_us=t,
                )
            )
        self.prices.write(trades)

    def alert(
        self,
        symbol: str,
        side: Side,
        pct: float,
        *,
        rule: str = "pct_1m",
        kind: str = "final",
        raised_us: int | None = None,
        open_: str = "100",
        close: str = "101",
    ) -> Alert:
        raised = raised_us if raised_us is not None else now_us()
        window_end = raised - raised % 60_000_000
        alert = Alert(
            rule=rule,
            symbol=symbol,
            kind=kind,  # type: ignore[arg-type]
            side=side,
            window_start_us=window_end - 60_000_000,
            window_end_us=window_end,
            open=Decimal(open_),
            close=Decimal(close),
            pct_change=pct,
            raised_time_us=raised,
            trigger_receive_time_us=raised - 500_000,
        )
        self.alerts.write([alert])
        return alert


@pytest.fixture
def market(redis_settings: RedisSettings, redis_client: redis.Redis) -> Iterator[Market]:
    """This test's market, under this test's Redis key prefix (deleted afterwards by redis_client)."""
    client = connect_redis(redis_settings.url.get_secret_value())
    try:
        yield Market(client, redis_settings)
    finally:
        client.close()


@pytest.fixture(scope="session")
def metrics_url() -> str:
    """A live /metrics endpoint of this test process: the sinks used by the tests update its metrics."""
    port = serve_metrics("dashboard-tests", 0)
    return f"http://127.0.0.1:{port}/metrics"


class ServiceEndpoint:
    """A /metrics endpoint with a registry of its own, like one service's; add metrics to ``registry``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.server, self.thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def service_metrics() -> Iterator[ServiceEndpoint]:
    endpoint = ServiceEndpoint()
    yield endpoint
    endpoint.close()
