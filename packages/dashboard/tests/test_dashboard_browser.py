"""The dashboard in a real headless browser (Debian chromium driven by Playwright).

The page is served by ``python -m cryptopipe.dashboard`` (the same code as ``cryptopipe
dashboard``) as a child process; Redis is filled by the store's real consumer loops reading a
real broker, and the health panel reads this process's live /metrics endpoint, which those loops
update. Screenshots land in ``artifacts/`` at the repository root.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Producer

from cryptopipe.dashboard.testing import (
    body_text,
    card_value,
    feed_text,
    metric_value,
    page_env,
    screenshot,
    start_dashboard,
)
from cryptopipe.infra.kafka import KafkaEndpoint
from cryptopipe.infra.redis_server import RedisEndpoint, start_redis
from cryptopipe.infra.testing import eventually
from cryptopipe.schemas import ALERTS, PRICES, Alert, KafkaSettings, RedisSettings, Trade, encode, encode_key
from cryptopipe.store.alerts import AlertSink
from cryptopipe.store.loop import ConsumerLoop
from cryptopipe.store.prices import PriceSink
from cryptopipe.store.sink import connect_redis

SYMBOLS = ("BTCUSDT", "ETHUSDT")

pytestmark = pytest.mark.slow


# --- the live page, fed by the real consumers -------------------------------------------------


class TradeFeed:
    """Produces a random walk of trades for each symbol to the prices topic, ~20 a second."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self.producer = Producer({**settings.client_config(), "linger.ms": 1})
        self.topic = topic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trade-feed", daemon=True)
        self.prices = {"BTCUSDT": Decimal("60000.00"), "ETHUSDT": Decimal("2500.00")}
        self._random = random.Random(4)

    def _run(self) -> None:
        trade_id = 0
        while not self._stop.wait(0.05):
            trade_id += 1
            for symbol, price in self.prices.items():
                step = Decimal(f"{self._random.gauss(0, float(price) * 2e-5):.2f}")
                self.prices[symbol] = price + step
                received = time.time_ns() // 1000
                trade = Trade(
                    symbol=symbol,
                    trade_id=trade_id,
                    price=self.prices[symbol],
                    quantity=Decimal("0.01"),
                    buyer_is_maker=trade_id % 2 == 0,
                    trade_time_us=received - 3000,
                    event_time_us=received - 2500,
                    receive_time_us=received,
                )
                self.producer.produce(self.topic, encode(trade), key=encode_key(symbol))
            self.producer.poll(0)
        self.producer.flush(10)

    def __enter__(self) -> TradeFeed:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def run_loop(stack: ExitStack, loop: ConsumerLoop[Any]) -> None:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            loop.run()
        except BaseException as exc:
            errors.append(exc)
            raise

    thread = threading.Thread(target=target, name=loop.component, daemon=True)
    thread.start()

    def stop() -> None:
        loop.stop()
        thread.join(30)
        if errors:
            raise errors[0]

    stack.callback(stop)


def test_live_prices_alert_and_health_in_the_browser(
    page: Any,
    kafka: KafkaEndpoint,
    kafka_settings: KafkaSettings,
    topic_factory: Callable[..., str],
    redis_server: RedisEndpoint,
    redis_settings: RedisSettings,
    redis_client: Any,
    metrics_url: str,
) -> None:
    prices_topic = topic_factory(PRICES)
    alerts_topic = topic_factory(ALERTS)
    group = f"dashboard-{uuid.uuid4().hex[:8]}"
    client = connect_redis(redis_settings.url.get_secret_value())
    with ExitStack() as stack:
        stack.callback(client.close)
        for sink, topic in (
            (PriceSink(client, key_prefix=redis_settings.key_prefix), prices_topic),
            (AlertSink(client, key_prefix=redis_settings.key_prefix), alerts_topic),
        ):
            loop: ConsumerLoop[Any] = ConsumerLoop(
                sink, kafka=kafka_settings, topic=topic, group_id=f"{group}-{sink.name}", from_beginning=True
            )
            run_loop(stack, loop)
        feed = stack.enter_context(TradeFeed(kafka_settings, prices_topic))
        url, _ = start_dashboard(
            stack,
            {
                **page_env(redis_settings, SYMBOLS, metrics_url),
                "CRYPTOPIPE_RUNTIME_INFO": json.dumps(
                    {
                        "broker": kafka.kind,
                        "redis": redis_server.kind,
                        "spark": "not running (alert produced by the test)",
                    }
                ),
            },
        )
        page.goto(url)

        first = {
            s: eventually(
                lambda s=s: (v := card_value(page, s)) not in (None, "—") and v,
                timeout=60,
                message=f"no price for {s}",
            )
            for s in SYMBOLS
        }
        for symbol in SYMBOLS:
            eventually(
                lambda s=symbol: card_value(page, s) not in (None, first[s]),
                timeout=30,
                message=f"the price of {symbol} never changed on the page (still {first[symbol]})",
            )

        # A forced threshold crossing: the alert the Spark job would raise, on the alerts topic.
        now = time.time_ns() // 1000
        window_end = now - now % 60_000_000
        alert = Alert(
            rule="pct_1m",
            symbol="BTCUSDT",
            kind="final",
            side="SELL",
            window_start_us=window_end - 60_000_000,
            window_end_us=window_end,
            open=Decimal("60000.00"),
            close=Decimal("61500.00"),
            pct_change=0.025,
            raised_time_us=now,
            trigger_receive_time_us=now - 1000,
        )
        feed.producer.produce(alerts_topic, encode(alert), key=encode_key(alert.symbol))
        feed.producer.flush(10)
        eventually(
            lambda: metric_value(page, "BTCUSDT alerts") == "1", timeout=30, message="alert never shown"
        )

        def alert_row() -> bool:
            text = feed_text(page)
            assert re.search(r"BTCUSDT\s*SELL\s*▲ \+2\.500%\s*pct_1m.*60,000 → 61,500\s*final", text), text
            return True

        eventually(alert_row, timeout=10, message="the alert's row is not on the page")

        def health_numbers() -> bool:
            text = body_text(page)
            throughput, lag = metric_value(page, "Throughput (prices)"), metric_value(page, "Kafka lag")
            # No Spark job here: n/a, or a figure when another test in this process exported one.
            spark_lag = metric_value(page, "Spark query lag")
            return bool(
                spark_lag is not None
                and (spark_lag == "n/a" or spark_lag.endswith("records"))
                and re.search(r"E2E\s+[\d,.]+ m?s\s+[\d,.]+ m?s\s+[\d,.]+ m?s", text)
                and throughput
                and throughput.endswith("msg/s")
                and lag
                and lag.endswith("records")
            )

        eventually(health_numbers, timeout=30, message="the health panel never showed numbers")
        assert kafka.kind in body_text(page)
        shot = screenshot(page, "dashboard-live.png")
        assert shot.stat().st_size > 10_000
        assert redis_settings.url.get_secret_value() not in page.content()


# --- Redis goes away and comes back ----------------------------------------------------------


def test_redis_outage_is_reported_and_the_page_recovers(page: Any, metrics_url: str) -> None:
    with ExitStack() as stack:
        server = start_redis()
        stack.callback(server.stop)
        url = server.url.get_secret_value()
        password = server.password.get_secret_value()
        client = connect_redis(url, socket_timeout=2)
        stack.callback(client.close)
        sink = PriceSink(client, key_prefix="outage:")

        def write(price: str, trade_id: int) -> None:
            received = time.time_ns() // 1000
            sink.write(
                [
                    Trade(
                        symbol="BTCUSDT",
                        trade_id=trade_id,
                        price=Decimal(price),
                        quantity=Decimal(1),
                        buyer_is_maker=False,
                        trade_time_us=received - 1000,
                        event_time_us=received - 900,
                        receive_time_us=received,
                    )
                ]
            )

        write("100.5", 1)
        dashboard, process = start_dashboard(
            stack,
            {
                "REDIS_URL": url,
                "REDIS_KEY_PREFIX": "outage:",
                "DASHBOARD_SYMBOLS": "BTCUSDT",
                "DASHBOARD_REFRESH_SECONDS": "0.5",
                "DASHBOARD_REDIS_TIMEOUT_SECONDS": "0.5",
                "DASHBOARD_METRICS_URLS": metrics_url,
            },
        )
        page.goto(dashboard)
        eventually(
            lambda: card_value(page, "BTCUSDT") == "100.5", timeout=60, message="no price before the outage"
        )

        server.stop()
        message = f"Redis at redis://127.0.0.1:{server.port}/0 is unreachable"
        eventually(lambda: message in body_text(page), timeout=30, message="no outage message")
        text = body_text(page)
        assert "REDIS_URL" in text
        assert "recovers by itself" in text
        assert password not in page.content()
        screenshot(page, "dashboard-redis-down.png")

        # The same server comes back: same port, same password (the page's URL is unchanged).
        again = start_redis(port=server.port)
        stack.callback(again.stop)
        admin = connect_redis(again.url.get_secret_value())
        admin.config_set("requirepass", password)
        admin.close()
        write("101.25", 2)
        eventually(
            lambda: card_value(page, "BTCUSDT") == "101.25" and message not in body_text(page),
            timeout=30,
            message="the page did not recover after Redis came back",
        )
        screenshot(page, "dashboard-redis-recovered.png")

        process.stop()  # SIGTERM: the CLI stops Streamlit and exits cleanly
        assert process.returncode() == 0, process.log_tail()
