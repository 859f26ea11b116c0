"""Ingest end to end: the replay exchange in, a real Kafka-protocol broker (Tansu here) out."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]
from prometheus_client import REGISTRY

from cryptopipe.infra.testing import eventually
from cryptopipe.ingest import Ingest, IngestSettings
from cryptopipe.ingest.publisher import IngestStats, Publisher, producer_config
from cryptopipe.observability import metrics as m
from cryptopipe.runtime import RateLimitedLog, ensure_topics
from cryptopipe.schemas import ALERTS, DEAD_LETTERS, PRICES, KafkaSettings, Trade, encode_key, settings_of
from cryptopipe.schemas.topics import PARTITIONER, java_partition, murmur2

pytestmark = pytest.mark.slow


def expected_trades(exchange: Any, symbols: tuple[str, ...]) -> dict[str, list[tuple[int, str]]]:
    return {s: [(a.a, str(a.p)) for a in exchange.history(s)] for s in symbols}


def by_symbol(trades: list[Trade]) -> dict[str, list[tuple[int, str]]]:
    out: dict[str, list[tuple[int, str]]] = {}
    for trade in trades:
        out.setdefault(trade.symbol, []).append((trade.trade_id, str(trade.price)))
    return out


def test_replayed_trades_are_published_exactly_once_in_order(
    kafka_settings: KafkaSettings, replay_exchange_factory: Any, run_ingest: Any, topic_reader: Any
) -> None:
    symbols = ("BTCUSDT", "ETHUSDT")
    exchange = replay_exchange_factory(symbols=symbols, count=3000, seed=11, speed="max")
    ingest = run_ingest(
        kafka_settings, ws_url=exchange.ws_url, rest_url=exchange.rest_url, symbols="btcusdt,ethusdt"
    )
    reader = topic_reader(PRICES.with_prefix(kafka_settings.topic_prefix).name)
    assert exchange.wait_finished(60), "replay did not finish"
    expected = expected_trades(exchange, symbols)
    total = sum(len(v) for v in expected.values())
    assert total == 3000
    eventually(lambda: reader.poll() >= total, timeout=60, message="not every trade reached the topic")
    eventually(lambda: ingest.stats.published == total, message="delivery reports missing")
    ingest.stop()
    reader.poll()
    trades = reader.trades()
    assert by_symbol(trades) == expected, "every id exactly once, in id order per symbol, same prices"
    assert all(key == t.symbol.encode() for (key, _v, _p), t in zip(reader.records, trades, strict=True))
    partitions = {
        t.symbol: {p for (_k, _v, p), u in zip(reader.records, trades, strict=True) if u.symbol == t.symbol}
        for t in trades
    }
    assert all(len(p) == 1 for p in partitions.values()), "one symbol, one partition"
    count = IngestSettings().topic_partitions
    assert {s: p.pop() for s, p in partitions.items()} == {
        s: java_partition(s.encode(), count) for s in symbols
    }, "the Java client's partition for each key (murmur2)"
    assert not any(t.backfilled for t in trades)
    assert all(t.receive_time_us > 0 and t.kind == "aggTrade" for t in trades)
    stats = ingest.stats
    assert (stats.received, stats.published, stats.lost, stats.dead_lettered) == (total, total, 0, 0)
    assert (stats.gaps, stats.unfilled, stats.duplicates) == (0, 0, 0)


def test_topics_are_created_with_retention(kafka_settings: KafkaSettings, kafka: Any) -> None:
    ingest = Ingest(settings_of(IngestSettings, topic_retention_ms=600_000), kafka_settings)
    specs = ingest.topic_specs()
    names = [s.name for s in specs]
    prefix = kafka_settings.topic_prefix
    assert names == [prefix + "prices", prefix + "alerts", prefix + "dead-letters"]
    assert ensure_topics(kafka_settings, specs) == names
    assert ensure_topics(kafka_settings, specs) == [], "existing topics are left alone"
    admin = AdminClient(kafka_settings.client_config())
    metadata = admin.list_topics(timeout=10).topics
    assert len(metadata[prefix + "prices"].partitions) == IngestSettings().topic_partitions
    assert len(metadata[prefix + "dead-letters"].partitions) == DEAD_LETTERS.partitions
    resource = ConfigResource(ConfigResource.Type.TOPIC, prefix + "prices")
    try:
        configs = admin.describe_configs([resource])[resource].result(timeout=10)
    except Exception as exc:
        pytest.xfail(f"{kafka.kind} cannot describe topic configs: {exc}")
    assert configs["retention.ms"].value == "600000"


# --- partitioning: the Java client's rule -----------------------------------------------------------

#: Kafka's own test vectors for ``org.apache.kafka.common.utils.Utils.murmur2`` (UtilsTest).
KAFKA_MURMUR2 = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]

COMMON_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT")


@pytest.mark.parametrize(("key", "expected"), KAFKA_MURMUR2)
def test_murmur2_matches_the_java_client(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_java_partition_is_positive_murmur2_modulo_partitions() -> None:
    for key, hashed in KAFKA_MURMUR2:
        for partitions in (1, 3, 8, 12):
            assert java_partition(key, partitions) == (hashed & 0x7FFFFFFF) % partitions
    with pytest.raises(ValueError, match="partitions"):
        java_partition(b"BTCUSDT", 0)
    assert (
        producer_config(KafkaSettings(), IngestSettings())["partitioner"] == PARTITIONER == "murmur2_random"
    )


def test_default_symbols_spread_over_the_partitions() -> None:
    """Keys are the upper-case symbol; the default pair gets two partitions, four of the common five too."""
    assert encode_key("BTCUSDT") == b"BTCUSDT"
    assert ALERTS.partitions == PRICES.partitions, "trades and alerts co-partitioned"
    placed = {s: java_partition(encode_key(s), PRICES.partitions) for s in COMMON_SYMBOLS}
    assert placed == {"BTCUSDT": 2, "ETHUSDT": 1, "BNBUSDT": 3, "SOLUSDT": 1, "XRPUSDT": 0}
    assert placed["BTCUSDT"] != placed["ETHUSDT"]
    assert len(set(placed.values())) == PRICES.partitions == 4
    # With 8 (a scale-out count) each of the five gets its own partition.
    assert len({java_partition(encode_key(s), 8) for s in COMMON_SYMBOLS}) == len(COMMON_SYMBOLS)
    # The old count, 3, put both default symbols on one partition.
    assert java_partition(b"BTCUSDT", 3) == java_partition(b"ETHUSDT", 3) == 2


def test_published_trades_land_where_java_would_put_them(
    kafka_settings: KafkaSettings, topic_reader: Any
) -> None:
    """A real broker: each symbol's trades are on the partition :func:`java_partition` predicts."""
    spec = PRICES.with_prefix(kafka_settings.topic_prefix)
    ensure_topics(kafka_settings, [spec])
    topic = spec.name
    admin = AdminClient(kafka_settings.client_config())
    partitions = eventually(
        lambda: len(admin.list_topics(topic, timeout=10).topics[topic].partitions),
        message="the topic's partitions",
    )
    symbols = [*COMMON_SYMBOLS, *(f"S{i:03d}USDT" for i in range(40))]
    stats = IngestStats()
    publisher = Publisher(
        kafka_settings,
        IngestSettings(),
        stats,
        prices_topic=topic,
        dead_letter_topic=DEAD_LETTERS.with_prefix(kafka_settings.topic_prefix).name,
    )
    now = time.time_ns() // 1000
    try:
        for i, symbol in enumerate(symbols * 2):
            assert publisher.publish(_trade_now(symbol, i, now))
        assert publisher.flush(30) == 0
    finally:
        publisher.close()
    assert stats.published == 2 * len(symbols)
    reader = topic_reader(topic)
    eventually(lambda: reader.poll() >= 2 * len(symbols), message="every trade read back")
    landed: dict[str, set[int]] = {}
    for key, _value, partition in reader.records:
        assert key is not None
        landed.setdefault(key.decode(), set()).add(partition)
    assert landed == {s: {java_partition(s.encode(), partitions)} for s in symbols}
    assert len({p for found in landed.values() for p in found}) == partitions, "keys spread over all"


def test_shards_over_two_connections_and_subscribes_within_rate_limit(
    kafka_settings: KafkaSettings, replay_exchange_factory: Any, run_ingest: Any, topic_reader: Any
) -> None:
    """1030 streams -> 2 connections; the first SUBSCRIBEs most of its 1024 streams.

    The replay exchange closes a connection that sends more than 5 messages per second, and
    refuses more than 1024 streams per connection; a clean run proves both limits are kept.
    """
    symbols = tuple(f"S{i:04d}USDT" for i in range(1030))
    exchange = replay_exchange_factory(
        symbols=symbols[-3:], count=300, seed=5, speed="max", start_on_subscribe=False
    )
    ingest = run_ingest(
        kafka_settings,
        ws_url=exchange.ws_url,
        rest_url=exchange.rest_url,
        symbols=",".join(s.lower() for s in symbols),
        subscribe_batch=100,
    )
    assert len(ingest.ingest.shards) == 2
    assert [len(s) for s in ingest.ingest.shards] == [1024, 6]
    eventually(lambda: exchange.stats.open_connections == 2, timeout=30, message="two connections")
    # the 1024-stream connection needs ~ (1024 - in URL) / 100 SUBSCRIBEs at 3/s: a few seconds
    eventually(
        lambda: sum(len(c.streams) for c in exchange.exchange._connections) == 1030,
        timeout=30,
        message="every stream subscribed",
    )
    assert exchange.stats.connections == 2, "no connection was closed for exceeding a limit"
    assert ingest.stats.reconnects == 0
    assert ingest.stats.dead_lettered == 0


# --- hostile exchange -----------------------------------------------------------------------------


def agg_frame(symbol: str, trade_id: int) -> str:
    data = {
        "e": "aggTrade",
        "E": 1_723_161_255_343_012,
        "s": symbol.upper(),
        "a": trade_id,
        "p": "100.5",
        "q": "1",
        "f": trade_id,
        "l": trade_id,
        "T": 1_723_161_255_342_871,
        "m": False,
        "M": True,
    }
    return json.dumps({"stream": f"{symbol.lower()}@aggTrade", "data": data})


HOSTILE: list[tuple[str, str | bytes]] = [
    ("malformed_json", "{not json"),
    ("binary", b"\x00\xff\xfe binary"),
    ("invalid_utf8", b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","s":"\xff"}}'),
    ("frame_too_large", json.dumps({"stream": "btcusdt@aggTrade", "data": {"pad": "x" * 200_000}})),
    ("invalid_aggTrade", json.dumps({"stream": "btcusdt@aggTrade", "data": {"e": "aggTrade", "a": "x"}})),
    ("unknown_stream", agg_frame("solusdt", 1)),
    ("unexpected_event", json.dumps({"stream": "btcusdt@aggTrade", "data": {"e": "depthUpdate"}})),
    ("invalid_value", agg_frame("btcusdt", 7).replace('"100.5"', '"NaN"')),
    ("not_a_stream_frame", "[1, 2, 3]"),
]


@pytest.fixture
def hostile_exchange() -> Iterator[str]:
    """A WebSocket server that sends trades 1..3, every hostile frame, then trades 4..6."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 22)
        await ws.prepare(request)
        for i in (1, 2, 3):
            await ws.send_str(agg_frame("btcusdt", i))
        for kind, payload in HOSTILE:
            if kind == "binary":
                await ws.send_bytes(payload)  # type: ignore[arg-type]
            elif isinstance(payload, bytes):
                assert ws._writer is not None
                await ws._writer.send_frame(payload, 0x1)  # a TEXT frame that is not UTF-8
            else:
                await ws.send_str(payload)
        for i in (4, 5, 6):
            await ws.send_str(agg_frame("btcusdt", i))
        async for _ in ws:
            pass
        return ws

    ready = threading.Event()
    state: dict[str, Any] = {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        state["loop"] = loop
        app = web.Application()
        app.router.add_get("/stream", handler)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        state["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        state["runner"] = runner
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield f"ws://127.0.0.1:{state['port']}"
    state["loop"].call_soon_threadsafe(state["loop"].stop)
    thread.join(10)


def test_hostile_frames_are_counted_and_dead_lettered(
    kafka_settings: KafkaSettings, hostile_exchange: str, run_ingest: Any, topic_reader: Any
) -> None:
    kinds = ["binary_frame" if k == "binary" else k for k, _ in HOSTILE]
    before = {kind: m.DEAD_LETTERS.labels(component="ingest", reason=kind)._value.get() for kind in kinds}
    ingest = run_ingest(
        kafka_settings, ws_url=hostile_exchange, rest_url="http://127.0.0.1:9", symbols="btcusdt"
    )
    prices = topic_reader(PRICES.with_prefix(kafka_settings.topic_prefix).name)
    letters = topic_reader(DEAD_LETTERS.with_prefix(kafka_settings.topic_prefix).name)
    eventually(lambda: prices.poll() >= 6, message="the valid trades around the hostile frames")
    eventually(lambda: letters.poll() >= len(HOSTILE), message="one dead letter per hostile frame")
    ingest.stop()
    assert [t.trade_id for t in prices.trades()] == [1, 2, 3, 4, 5, 6]
    reasons = sorted(d.reason for d in letters.dead_letters())
    assert reasons == sorted(kinds)
    assert all(d.source == "ingest" and len(d.payload) <= 1024 for d in letters.dead_letters())
    assert ingest.stats.dead_lettered == len(HOSTILE)
    after = {kind: m.DEAD_LETTERS.labels(component="ingest", reason=kind)._value.get() for kind in kinds}
    assert {kind: after[kind] - before[kind] for kind in kinds} == dict.fromkeys(kinds, 1.0)


def test_cli_streams_until_sigterm(
    kafka_settings: KafkaSettings, replay_exchange_factory: Any, topic_reader: Any, tmp_path: Any
) -> None:
    """``cryptopipe ingest`` as its own process: flags override env; SIGTERM flushes and exits 0."""
    exchange = replay_exchange_factory(symbols=("BTCUSDT",), count=200, speed="max", seed=2)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "INGEST_SYMBOLS": "ethusdt",
        "BINANCE_WS_URL": "ws://127.0.0.1:9",
    }
    args = ["--symbols", "btcusdt", "--ws-url", exchange.ws_url, "--rest-url", exchange.rest_url]
    process = subprocess.Popen(
        [sys.executable, "-m", "cryptopipe.ingest.cli", *args, "--metrics-port", "0"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        reader = topic_reader(PRICES.with_prefix(kafka_settings.topic_prefix).name)
        eventually(lambda: reader.poll() >= 200, timeout=60, message="the CLI published the trades")
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "200 published" in err
    assert [t.trade_id for t in reader.trades()] == [a.a for a in exchange.history("BTCUSDT")]


def _trade_now(symbol: str, trade_id: int, now_us: int) -> Trade:
    """A trade made, received and sent at ``now_us``."""
    return Trade(
        symbol=symbol,
        trade_id=trade_id,
        price=Decimal("1.5"),
        quantity=Decimal("2"),
        buyer_is_maker=False,
        trade_time_us=now_us,
        event_time_us=now_us,
        receive_time_us=now_us,
    )


def _producer_latency(broker: str, stage: str, quantile: str) -> float | None:
    labels = {"broker": broker, "stage": stage, "quantile": quantile}
    return REGISTRY.get_sample_value("cryptopipe_kafka_producer_latency_seconds", labels)


def test_librdkafka_statistics_become_the_producer_latency_gauges(kafka_settings: KafkaSettings) -> None:
    """A real producer at a 100 ms statistics interval: its request round trip and queue time show."""
    settings = settings_of(IngestSettings, statistics_interval_ms=100)
    topic = PRICES.with_prefix(kafka_settings.topic_prefix).name
    ensure_topics(kafka_settings, [PRICES.with_prefix(kafka_settings.topic_prefix)])
    publisher = Publisher(
        kafka_settings,
        settings,
        IngestStats(),
        prices_topic=topic,
        dead_letter_topic=DEAD_LETTERS.with_prefix(kafka_settings.topic_prefix).name,
    )
    broker = kafka_settings.bootstrap_servers.split(",")[0].strip()
    now = time.time_ns() // 1000
    try:

        def both_seen() -> bool:
            for i in range(20):
                assert publisher.publish(_trade_now("BTCUSDT", i, now))
            publisher.flush(10)  # serves the delivery reports and the statistics
            queued = _producer_latency(broker, "queue", "p50")
            return queued is not None and (_producer_latency(broker, "rtt", "p50") or 0) > 0

        eventually(both_seen, timeout=30, message="no queue time or round trip from librdkafka's statistics")
    finally:
        publisher.close()
    for stage in ("queue", "outbuf", "rtt"):
        p50, p99, top = (_producer_latency(broker, stage, q) for q in ("p50", "p99", "max"))
        assert p50 is not None, stage
        assert p99 is not None, stage
        assert top is not None, stage
        # librdkafka's percentiles come from an HDR histogram (about 1 % buckets), its max is
        # exact: a percentile may pass the max by a bucket, so only percentiles are ordered.
        assert 0 <= p50 <= p99, stage
        assert top >= 0, stage


def test_unreadable_or_empty_statistics_change_no_gauge() -> None:
    publisher = Publisher.__new__(Publisher)  # only the statistics callback, no producer
    publisher._log = RateLimitedLog(5.0)
    errors = m.ERRORS.labels(component="ingest", reason="producer_stats_unreadable")
    before = errors._value.get()
    publisher._on_stats("{not json")
    publisher._on_stats('{"brokers": 3}')
    assert errors._value.get() - before == 2
    window = {"cnt": 4, "p50": 1500, "p99": 9000, "max": 12000}
    stats = {
        "brokers": {
            # The bootstrap broker has no node id; a window without samples says nothing.
            "h:1/bootstrap": {"nodeid": -1, "nodename": "boot:1", "rtt": window},
            "h:1/1": {
                "nodeid": 1,
                "nodename": "stats-test:9092",
                "rtt": window,
                "int_latency": {"cnt": 0, "p50": 0, "p99": 0, "max": 0},
                "outbuf_latency": window,
            },
        }
    }
    publisher._on_stats(json.dumps(stats))
    assert _producer_latency("stats-test:9092", "rtt", "p50") == 0.0015
    assert _producer_latency("stats-test:9092", "rtt", "p99") == 0.009
    assert _producer_latency("stats-test:9092", "outbuf", "max") == 0.012
    assert _producer_latency("stats-test:9092", "queue", "p50") is None
    assert _producer_latency("boot:1", "rtt", "p50") is None
