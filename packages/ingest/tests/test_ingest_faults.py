"""Ingest under faults: dropped connections, gaps, stale streams, serverShutdown, broker outages."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from cryptopipe.infra.testing import eventually
from cryptopipe.observability import metrics as m
from cryptopipe.schemas import PRICES, KafkaSettings, Trade

pytestmark = pytest.mark.slow


def counter(metric: Any, **labels: str) -> float:
    return float(metric.labels(**labels)._value.get())


def ids_by_symbol(trades: list[Trade]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for trade in trades:
        out.setdefault(trade.symbol, []).append(trade.trade_id)
    return out


def history_ids(exchange: Any, symbols: tuple[str, ...], kind: str = "aggTrade") -> dict[str, list[int]]:
    key = "a" if kind == "aggTrade" else "t"
    return {s: [getattr(e, key) for e in exchange.history(s, kind)] for s in symbols}


def read_all(reader: Any, total: int) -> list[Trade]:
    eventually(lambda: reader.poll() >= total, timeout=60, message=f"expected {total} records on the topic")
    return list(reader.trades())


def play_out(exchange: Any, ingest: Any, reader: Any, total: int) -> list[Trade]:
    """The tape ends, all ``total`` trades reach the topic and are acknowledged, ingest stops:
    every trade on the topic then (duplicates included)."""
    assert exchange.wait_finished(60)
    read_all(reader, total)
    eventually(lambda: ingest.stats.published == total, message="every trade acknowledged")
    ingest.stop()
    reader.poll()
    return list(reader.trades())


def play_out_with_a_gap(
    exchange: Any, ingest: Any, reader: Any, kind: str = "aggTrade"
) -> tuple[list[int], list[int]]:
    """The BTCUSDT tape ends and every trade it offered is published or counted unfilled, ingest
    stops: (the ids offered, the ids on the topic)."""
    assert exchange.wait_finished(60)
    expected = history_ids(exchange, ("BTCUSDT",), kind)["BTCUSDT"]
    eventually(lambda: ingest.stats.published + ingest.stats.unfilled == len(expected), timeout=30)
    ingest.stop()
    reader.poll()
    return expected, [t.trade_id for t in reader.trades()]


def test_dropped_connections_are_backfilled_in_order(
    kafka_settings: KafkaSettings, replay_exchange_factory: Any, run_ingest: Any, topic_reader: Any
) -> None:
    """The exchange drops the connection after 1300 frames; REST backfill closes the gap.

    One drop, well before the tape ends: a gap is only visible once a trade after it arrives, so
    a reconnect that (on a loaded machine) lands after the last trade would leave it unseen.
    """
    symbols = ("BTCUSDT", "ETHUSDT")
    exchange = replay_exchange_factory(
        symbols=symbols, count=2400, rate=600, seed=3, burst=False, drop_after=1300
    )
    gaps_before = counter(m.GAPS, symbol="BTCUSDT") + counter(m.GAPS, symbol="ETHUSDT")
    ingest = run_ingest(kafka_settings, exchange, symbols="btcusdt,ethusdt", backoff_initial_s=0.2)
    reader = topic_reader(PRICES)
    trades = play_out(exchange, ingest, reader, 2400)
    expected = history_ids(exchange, symbols)
    assert ids_by_symbol(trades) == expected, "every id exactly once, in order, per symbol"
    stats = ingest.stats
    assert stats.reconnects >= 1
    assert stats.gaps >= 1
    assert stats.backfilled == sum(t.backfilled for t in trades) > 0
    assert stats.unfilled == 0
    assert stats.received + stats.backfilled - stats.duplicates == 2400
    assert counter(m.GAPS, symbol="BTCUSDT") + counter(m.GAPS, symbol="ETHUSDT") - gaps_before == stats.gaps
    prices = {a.a: a.p for s in symbols for a in exchange.history(s)}
    assert all(t.price == prices[t.trade_id] for t in trades)


def test_trade_mode_gaps_are_counted_unfilled(
    kafka_settings: KafkaSettings, replay_exchange_factory: Any, run_ingest: Any, topic_reader: Any
) -> None:
    """@trade ids cannot be backfilled (REST aggTrades has aggTrade ids): the gap is counted."""
    exchange = replay_exchange_factory(
        symbols=("BTCUSDT",), count=1500, rate=600, seed=4, burst=False, drop_after=800
    )
    ingest = run_ingest(kafka_settings, exchange, symbols="btcusdt", mode="trade", backoff_initial_s=0.2)
    expected, got = play_out_with_a_gap(exchange, ingest, topic_reader(PRICES), "trade")
    assert got == sorted(set(got)), "in order, no duplicates"
    assert set(got) <= set(expected)
    assert ingest.stats.gaps >= 1
    assert ingest.stats.unfilled == len(expected) - len(got) > 0
    assert ingest.stats.backfilled == 0


def test_rest_failure_counts_the_gap_as_unfilled_and_goes_on(
    kafka_settings: KafkaSettings, replay_exchange_factory: Any, run_ingest: Any, topic_reader: Any
) -> None:
    exchange = replay_exchange_factory(
        symbols=("BTCUSDT",), count=2000, rate=600, seed=6, burst=False, drop_after=1100
    )
    ingest = run_ingest(
        kafka_settings,
        exchange,
        rest_url="http://127.0.0.1:9",
        symbols="btcusdt",
        rest_retries=1,
        backoff_initial_s=0.2,
    )
    expected, got = play_out_with_a_gap(exchange, ingest, topic_reader(PRICES))
    assert got == sorted(set(got))
    assert ingest.stats.unfilled == len(expected) - len(got) > 0


def test_stale_stream_triggers_a_reconnect(
    kafka_settings: KafkaSettings, replay_exchange_factory: Any, run_ingest: Any
) -> None:
    """The replay sends 50 trades and falls silent: the watchdog reconnects (reason "stale")."""
    exchange = replay_exchange_factory(symbols=("BTCUSDT",), count=50, speed="max", seed=1)
    stale_before = counter(m.RECONNECTS, reason="stale")
    ingest = run_ingest(kafka_settings, exchange, symbols="btcusdt", stale_after_s=0.5)
    eventually(
        lambda: counter(m.RECONNECTS, reason="stale") > stale_before, timeout=30, message="stale reconnect"
    )
    eventually(lambda: exchange.stats.connections >= 2, message="a new connection after the stale one")
    eventually(lambda: ingest.stats.published == 50)
    ingest.stop()
    assert ingest.stats.reconnects >= 1
    assert ingest.stats.duplicates == 0


def test_a_flowing_stream_outlives_many_stale_windows_on_one_connection(
    kafka_settings: KafkaSettings, replay_exchange_factory: Any, run_ingest: Any, topic_reader: Any
) -> None:
    """The read loop's one timeout fires every stale_after_s while frames keep coming: each time it
    re-arms (no reconnect), and the receive it cancelled loses no frame."""
    exchange = replay_exchange_factory(symbols=("BTCUSDT",), count=3500, rate=500, seed=5, burst=False)
    stale_before = counter(m.RECONNECTS, reason="stale")
    # ~7 windows over the 7 s tape; long enough that a loaded CI machine's pauses (0.3 s was seen
    # once) are not real silences.
    ingest = run_ingest(kafka_settings, exchange, symbols="btcusdt", stale_after_s=1.0)
    reader = topic_reader(PRICES)
    # Checked while the tape still plays (>= 5 s in): once it ends, silence is stale for real.
    eventually(lambda: ingest.stats.published >= 2500, timeout=60, message="5 s of trades")
    assert exchange.stats.connections == 1
    assert counter(m.RECONNECTS, reason="stale") == stale_before
    assert exchange.wait_finished(60)
    expected = history_ids(exchange, ("BTCUSDT",))["BTCUSDT"]
    got = [t.trade_id for t in read_all(reader, len(expected))]
    ingest.stop()
    assert got == expected
    assert ingest.stats.gaps == 0


def test_pings_are_answered(
    kafka_settings: KafkaSettings, replay_exchange_factory: Any, run_ingest: Any
) -> None:
    """The replay pings every 0.3 s (pongs count in the 5 messages/s) and wants a pong within 0.6 s."""
    exchange = replay_exchange_factory(
        symbols=("BTCUSDT",),
        count=1200,
        rate=600,
        seed=13,
        burst=False,
        ping_interval_s=0.3,
        pong_timeout_s=0.6,
    )
    ingest = run_ingest(kafka_settings, exchange, symbols="btcusdt")
    assert exchange.wait_finished(60)
    eventually(lambda: ingest.stats.published == 1200)
    ingest.stop()
    assert exchange.stats.connections == 1
    assert ingest.stats.reconnects == 0


def test_server_shutdown_rolls_over_without_loss(
    kafka_settings: KafkaSettings, replay_exchange_factory: Any, run_ingest: Any, topic_reader: Any
) -> None:
    symbols = ("BTCUSDT", "ETHUSDT")
    exchange = replay_exchange_factory(symbols=symbols, count=2000, rate=800, seed=8, burst=False)
    before = counter(m.RECONNECTS, reason="server_shutdown")
    ingest = run_ingest(kafka_settings, exchange, symbols="btcusdt,ethusdt")
    reader = topic_reader(PRICES)
    eventually(lambda: ingest.stats.published > 400, message="trades flowing")
    exchange.server_shutdown()
    eventually(
        lambda: counter(m.RECONNECTS, reason="server_shutdown") > before, message="serverShutdown reconnect"
    )
    assert ids_by_symbol(play_out(exchange, ingest, reader, 2000)) == history_ids(exchange, symbols)
    assert exchange.stats.connections >= 2


def test_connections_roll_over_before_their_maximum_age(
    kafka_settings: KafkaSettings, replay_exchange_factory: Any, run_ingest: Any, topic_reader: Any
) -> None:
    """Proactive reconnects (Binance closes at 24 h; here every 0.8 s): successor first, no gap."""
    exchange = replay_exchange_factory(symbols=("BTCUSDT",), count=2000, rate=800, seed=12, burst=False)
    before = counter(m.RECONNECTS, reason="max_age")
    open_before = m.CONNECTIONS._value.get()
    ingest = run_ingest(kafka_settings, exchange, symbols="btcusdt", max_connection_age_s=0.8)
    trades = play_out(exchange, ingest, topic_reader(PRICES), 2000)
    assert ids_by_symbol(trades) == history_ids(exchange, ("BTCUSDT",))
    assert counter(m.RECONNECTS, reason="max_age") - before >= 1
    assert ingest.stats.gaps == 0, "the successor was subscribed before the old connection was dropped"
    assert ingest.stats.duplicates > 0, "the overlap was deduplicated"
    assert m.CONNECTIONS._value.get() == open_before, "every connection closed and uncounted"


def test_exchange_unreachable_logs_one_clear_line(
    kafka_settings: KafkaSettings, run_ingest: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cryptopipe.ingest")
    before = counter(m.RECONNECTS, reason="connect_failed")
    ingest = run_ingest(
        kafka_settings, ws_url="ws://127.0.0.1:9", rest_url="http://127.0.0.1:9", symbols="btcusdt"
    )
    eventually(lambda: counter(m.RECONNECTS, reason="connect_failed") >= before + 3, message="retrying")
    ingest.stop()
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING and "cannot connect" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].exc_info is None, "a clear line, not a stack trace"
    assert "ws://127.0.0.1:9" in lines[0].getMessage()


# --- the broker goes away ---------------------------------------------------------------------------


def test_broker_outage_loses_and_duplicates_nothing(
    proxied_kafka: Any, replay_exchange_factory: Any, run_ingest: Any, topic_reader: Any
) -> None:
    """Producer buffering across an unreachable broker (not a broker restart).

    Tansu keeps its data in memory only, so the broker process keeps running and the proxy in
    front of it cuts every client connection for a few seconds; the trades received meanwhile
    wait in the producer's buffer and arrive after the outage, each exactly once, in order.
    """
    kafka = proxied_kafka.settings
    exchange = replay_exchange_factory(symbols=("BTCUSDT",), count=2400, rate=400, seed=9, burst=False)
    ingest = run_ingest(kafka, exchange, symbols="btcusdt")
    eventually(lambda: ingest.stats.published > 300, message="trades flowing")
    proxied_kafka.proxy.pause()
    paused_at = ingest.stats.received
    eventually(lambda: ingest.stats.received > paused_at + 600, message="trades keep arriving while paused")
    assert ingest.ingest._publisher.outstanding_trades > 300, "they wait in the producer buffer"
    assert m.PRODUCER_BUFFERED._value.get() > 0
    proxied_kafka.proxy.resume()
    assert exchange.wait_finished(60)
    eventually(
        lambda: ingest.stats.published == 2400, timeout=60, message="everything delivered after the outage"
    )
    ingest.stop()
    reader = topic_reader(PRICES, kafka)
    trades = read_all(reader, 2400)
    assert ids_by_symbol(trades) == history_ids(exchange, ("BTCUSDT",))
    assert ingest.stats.lost == 0


def test_buffer_bound_loss_is_counted_and_logged(
    proxied_kafka: Any, replay_exchange_factory: Any, run_ingest: Any, caplog: pytest.LogCaptureFixture
) -> None:
    kafka = proxied_kafka.settings
    exchange = replay_exchange_factory(symbols=("BTCUSDT",), count=100_000, rate=1000, seed=2, burst=False)
    full_before = counter(m.TRADES_LOST, reason="buffer_full")
    shutdown_before = counter(m.TRADES_LOST, reason="shutdown")
    ingest = run_ingest(kafka, exchange, symbols="btcusdt", buffer_max_messages=200, flush_timeout_s=0.5)
    eventually(lambda: ingest.stats.published > 100, message="trades flowing")
    proxied_kafka.proxy.pause()
    eventually(lambda: ingest.stats.lost > 50, message="the buffer bound is hit")
    ingest.stop()  # broker still away: what is left is lost at shutdown, and counted
    stats = ingest.stats
    lost_full = counter(m.TRADES_LOST, reason="buffer_full") - full_before
    lost_shutdown = counter(m.TRADES_LOST, reason="shutdown") - shutdown_before
    assert lost_full > 50
    assert lost_shutdown > 0
    assert stats.lost == lost_full + lost_shutdown
    assert stats.received == stats.published + stats.lost, "every received trade is accounted for"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "DROPPING" in r.getMessage()]
    assert errors, "the loss is logged at ERROR"
    assert len(errors) < lost_full, "rate-limited, not one line per trade"
