"""The express lane against the real broker: the reference's alerts, decided by the trade that
arrives, and only for trades that arrive once it is live (the backlog's alerts are Spark's)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import pytest

from cryptopipe.alerting.book_reference import reference_book_alerts
from cryptopipe.alerting.express import ExpressLane
from cryptopipe.alerting.reference import reference_alerts
from cryptopipe.alerting.rules import Rule, parse_rules
from cryptopipe.alerting.sink import AlertPublisher, Delivery
from cryptopipe.infra.testing import eventually, produce
from cryptopipe.observability import metrics as m
from cryptopipe.schemas import (
    ALERTS,
    BOOK_UPDATES,
    PRICES,
    Alert,
    KafkaSettings,
    Trade,
    encode_book,
    encode_key,
)

from .conftest import BASE_US, MINUTE_US, book_market, identity, produce_trades, read_alerts, trade

RULES = "1m:1%:early:name=early;1m:0.5%:name=final"


class Lanes:
    """Starts express lanes on this test's topics and stops them all."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.lanes: list[ExpressLane] = []

    def start(self, rules: Sequence[Rule], delay_ms: int = 1000) -> ExpressLane:
        publisher = AlertPublisher(self.kafka, ALERTS.with_prefix(self.kafka.topic_prefix).name)
        prices = PRICES.with_prefix(self.kafka.topic_prefix).name
        lane = ExpressLane(self.kafka, prices, rules, delay_ms, publisher)
        self.lanes.append(lane)
        lane.start()
        return lane

    def close(self) -> None:
        for lane in self.lanes:
            lane.stop()
            lane.publisher.close()


@pytest.fixture
def lanes(kafka_settings: KafkaSettings, topic_factory: Any) -> Iterator[Lanes]:
    topic_factory(PRICES)
    topic_factory(ALERTS)
    runner = Lanes(kafka_settings)
    yield runner
    runner.close()


def _read(lane: ExpressLane, kafka: KafkaSettings, trades: int) -> list[Alert]:
    eventually(lambda: lane.stats.trades >= trades, timeout=30, message=f"the lane read fewer than {trades}")
    return read_alerts(kafka)


def _market() -> list[Trade]:
    return [
        # BTC crosses +1 % at 20 s: early; it closes at +0.2 %, so no final alert (0.5 %).
        trade("BTCUSDT", 1, "100", BASE_US + 1_000_000),
        trade("BTCUSDT", 2, "101.5", BASE_US + 20_000_000),
        trade("BTCUSDT", 3, "100.2", BASE_US + 30_000_000),
        # ETH moves -0.6 %: no early alert (1 %), a final one (0.5 %) when the window closes.
        trade("ETHUSDT", 1, "100", BASE_US + 1_000_000),
        trade("ETHUSDT", 2, "99.4", BASE_US + 40_000_000),
        # Far behind ETH's newest trade: late, dropped.
        trade("ETHUSDT", 3, "50", BASE_US + 2_000_000),
        # Closers, one minute and 5 s on.
        trade("BTCUSDT", 4, "99", BASE_US + MINUTE_US + 5_000_000),
        trade("ETHUSDT", 4, "99.4", BASE_US + MINUTE_US + 5_000_000),
    ]


def test_express_lane_publishes_the_reference_alerts_as_their_trades_arrive(
    lanes: Lanes, kafka_settings: KafkaSettings
) -> None:
    rules = parse_rules(RULES)
    before = m.ALERTING_EXPRESS_ALERTS.labels(rule="final", kind="final")._value.get()
    lane = lanes.start(rules)
    market = _market()
    produce_trades(kafka_settings, market)
    alerts = _read(lane, kafka_settings, len(market))

    expected = reference_alerts([market], rules)
    assert sorted(identity(a) for a in alerts) == expected.alerts
    assert [(a.symbol, a.kind) for a in expected.alerts] == [("BTCUSDT", "early"), ("ETHUSDT", "final")]
    assert lane.stats.dropped_late == expected.dropped == 1
    by_kind = {a.kind: a for a in alerts}
    # Timed from the trade that decided each: the crossing one, the closing one.
    assert by_kind["early"].trigger_receive_time_us == market[1].receive_time_us
    assert by_kind["final"].trigger_receive_time_us == market[7].receive_time_us
    assert by_kind["final"].close == Decimal("99.4")
    assert m.ALERTING_EXPRESS_ALERTS.labels(rule="final", kind="final")._value.get() - before == 1
    assert lane.stats.alerts_published == 2


def test_express_lane_rebuilds_windows_from_the_backlog_but_publishes_only_live_decisions(
    lanes: Lanes, kafka_settings: KafkaSettings
) -> None:
    rules = parse_rules(RULES)
    backlog = [
        # Minute 0: BTC crosses 1 % and the window closes, all before the lane starts: Spark's.
        trade("BTCUSDT", 1, "100", BASE_US + 1_000_000),
        trade("BTCUSDT", 2, "102", BASE_US + 20_000_000),
        # Minute 1 opens at 100 in the backlog ...
        trade("BTCUSDT", 3, "100", BASE_US + MINUTE_US + 2_000_000),
    ]
    produce_trades(kafka_settings, backlog)
    lane = lanes.start(rules)
    live = [
        # ... and crosses live: the early alert's open is the backlog's 100.
        trade("BTCUSDT", 4, "101.2", BASE_US + MINUTE_US + 10_000_000),
        # Behind the backlog's newest BTC trade by more than the delay: late.
        trade("BTCUSDT", 5, "100", BASE_US + 30_000_000),
    ]
    produce_trades(kafka_settings, live)
    alerts = _read(lane, kafka_settings, len(backlog) + len(live))

    everything = reference_alerts([backlog + live], rules).alerts
    decided_live = [a for a in everything if a.window_start_us == BASE_US + MINUTE_US]
    assert len(everything) == 3
    assert len(decided_live) == 1
    assert sorted(identity(a) for a in alerts) == decided_live
    assert (alerts[0].open, alerts[0].close) == (Decimal(100), Decimal("101.2"))
    assert lane.stats.dropped_late == 1


def test_express_lane_raises_the_reference_book_alerts_beside_the_trade_alerts(
    kafka_settings: KafkaSettings, topic_factory: Any
) -> None:
    topic_factory(PRICES)
    topic_factory(ALERTS)
    topic_factory(BOOK_UPDATES)
    rules = parse_rules(f"{RULES};spread>5bps:10s:name=wide;mid:1m:0.5%:early:name=mid")
    publisher = AlertPublisher(kafka_settings, ALERTS.with_prefix(kafka_settings.topic_prefix).name)
    book_topic = BOOK_UPDATES.with_prefix(kafka_settings.topic_prefix).name
    prices = PRICES.with_prefix(kafka_settings.topic_prefix).name
    lane = ExpressLane(kafka_settings, prices, rules, 1000, publisher, book_topic=book_topic)
    lane.start()
    try:
        records = book_market()
        produce(kafka_settings, book_topic, ((encode_key(r.symbol), encode_book(r)) for r in records))
        produce_trades(kafka_settings, _market())
        eventually(
            lambda: lane.stats.book_records >= len(records), timeout=30, message="the lane read the book"
        )
        alerts = _read(lane, kafka_settings, len(_market()))
    finally:
        lane.stop()
        publisher.close()
    expected = sorted(reference_book_alerts(records, rules) + reference_alerts([_market()], rules).alerts)
    assert sorted(identity(a) for a in alerts) == expected
    assert {(a.rule, a.kind) for a in expected} >= {("wide", "final"), ("mid", "early")}
    wide = next(a for a in alerts if a.rule == "wide")
    assert wide.trigger_receive_time_us == records[3].receive_time_us


class _FailingHalf:
    """A publisher whose broker acknowledges the first alert of a send and refuses the rest."""

    def send(self, alerts: Sequence[Alert], on_done: Any) -> None:
        acked = [1_000_000] + [0] * (len(alerts) - 1)
        on_done(Delivery(list(alerts), acked, ["refused"] * (len(alerts) - 1)))


def test_express_lane_counts_what_the_broker_refused_and_reads_on(kafka_settings: KafkaSettings) -> None:
    lane = ExpressLane(kafka_settings, "prices", parse_rules(RULES), 1000, _FailingHalf())  # type: ignore[arg-type]
    errors = m.ERRORS.labels(component="alerting", reason="express_publish")
    before = errors._value.get()
    alert = Alert(
        rule="final",
        symbol="BTCUSDT",
        kind="final",
        side="BUY",
        window_start_us=BASE_US,
        window_end_us=BASE_US + MINUTE_US,
        open=Decimal(100),
        close=Decimal(99),
        pct_change=-0.01,
        raised_time_us=BASE_US,
    )
    lane._publish([alert, alert, alert])
    assert (lane.stats.alerts_published, lane.stats.publish_failures) == (1, 2)
    assert errors._value.get() - before == 2
