"""A restarted ingest takes up each symbol from its last trade id in ``prices``: the trades played
while no ingest ran are a gap, which the REST backfill fills (issue 26, "nothing lost")."""

from __future__ import annotations

import asyncio
import logging
import uuid
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import REGISTRY

from cryptopipe.infra.secure_kafka import SecureKafkaCluster
from cryptopipe.infra.testing import eventually, produce
from cryptopipe.ingest import IngestSettings
from cryptopipe.ingest.publisher import IngestStats
from cryptopipe.ingest.resume import read_resume_point
from cryptopipe.ingest.trades import TradeSequencer
from cryptopipe.schemas import PRICES, KafkaSettings, Trade, encode, encode_key, settings_of
from cryptopipe.schemas import binance as bn
from cryptopipe.schemas.topics import PARTITIONER, java_partition

from .test_ingest_faults import history_ids, ids_by_symbol

SYMBOLS = ("BTCUSDT", "ETHUSDT")


def _trade(symbol: str, trade_id: int, kind: str = "aggTrade") -> Trade:
    return Trade(
        symbol=symbol,
        trade_id=trade_id,
        price=Decimal("1.5"),
        quantity=Decimal("2"),
        buyer_is_maker=False,
        trade_time_us=1_000_000 + trade_id,
        event_time_us=1_000_000 + trade_id,
        receive_time_us=1_000_100 + trade_id,
        kind=kind,  # type: ignore[arg-type]
    )


class _Published:
    """Stands in for the producer: what the sequencer published, in order."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def publish(self, trade: Trade) -> bool:
        self.ids.append(trade.trade_id)
        return True


def _sequencer(**settings: Any) -> tuple[TradeSequencer, _Published]:
    sequencer = TradeSequencer(settings_of(IngestSettings, **settings), IngestStats())
    published = _Published()
    sequencer.publisher = published  # type: ignore[assignment]
    return sequencer, published


def test_a_resumed_symbol_continues_from_the_topics_last_id(caplog: pytest.LogCaptureFixture) -> None:
    sequencer, published = _sequencer(mode="trade")  # no REST backfill: a gap is counted
    sequencer.resume({"BTCUSDT": 100, "ETHUSDT": 500})
    sequencer.on_live_trade(_trade("BTCUSDT", 101), 0.0)  # the next id: no gap
    sequencer.on_live_trade(_trade("BTCUSDT", 101), 0.0)  # a reconnect's overlap: a duplicate
    sequencer.on_live_trade(_trade("ETHUSDT", 505), 0.0)  # 501..504 were played while none ran
    assert published.ids == [101, 505]
    assert (sequencer.stats.duplicates, sequencer.stats.gaps, sequencer.stats.unfilled) == (1, 1, 4)
    # A first live trade at or below the topic's last id: the topic holds another tape's ids, not
    # this exchange's past. The symbol starts from it (logged), and later repeats are duplicates.
    sequencer.resume({"SOLUSDT": 9_000})
    with caplog.at_level(logging.WARNING, logger="cryptopipe.ingest.trades"):
        sequencer.on_live_trade(_trade("SOLUSDT", 7), 0.0)
    sequencer.on_live_trade(_trade("SOLUSDT", 7), 0.0)
    sequencer.on_live_trade(_trade("SOLUSDT", 8), 0.0)
    assert published.ids[2:] == [7, 8]
    assert sequencer.stats.duplicates == 2
    assert "SOLUSDT: first live trade 7 is at or below id 9000" in caplog.text


class _Exchange:
    """Stands in for the REST client: aggTrades 1..``latest`` of one symbol."""

    def __init__(self, latest: int) -> None:
        self.latest = latest

    async def agg_trades(self, symbol: str, from_id: int | None, limit: int = 1000) -> list[bn.RestAggTrade]:
        first = self.latest - limit + 1 if from_id is None else from_id
        ids = range(max(1, first), min(self.latest, first + limit - 1) + 1)
        return [
            bn.RestAggTrade(a=i, p=Decimal(1), q=Decimal(1), f=i, l=i, T=1_000_000 + i, m=False) for i in ids
        ]


def test_a_resumed_symbol_with_no_live_trade_yet_is_caught_up_from_rest() -> None:
    """A quiet symbol (or a tape that ended while no ingest ran) has no live trade to reveal the
    gap: once subscribed, ingest asks REST for the latest id and backfills up to it."""
    sequencer, published = _sequencer()
    sequencer.rest = _Exchange(latest=120)  # type: ignore[assignment]
    sequencer.resume({"BTCUSDT": 100})

    async def run() -> None:
        await sequencer.catch_up()
        sequencer.on_live_trade(_trade("BTCUSDT", 119), 0.0)  # already on its way: a duplicate
        sequencer.on_live_trade(_trade("BTCUSDT", 121), 0.0)
        for _ in range(100):  # the backfill task runs, then releases the live trade that waited
            if published.ids[-1:] == [121]:
                break
            await asyncio.sleep(0)

    asyncio.run(run())
    assert published.ids == list(range(101, 122))
    assert (sequencer.stats.gaps, sequencer.stats.backfilled, sequencer.stats.unfilled) == (1, 20, 0)
    assert sequencer.stats.duplicates == 1


@pytest.mark.slow
def test_the_tail_read_is_bounded_and_a_missing_topic_is_a_fresh_start(
    kafka_settings: KafkaSettings, topic_factory: Any
) -> None:
    missing = read_resume_point(kafka_settings, "no-such-prices", SYMBOLS, kind="aggTrade", window=10)
    assert missing.last_ids == {}
    assert set(missing.not_resumed) == set(SYMBOLS)
    topic = topic_factory(PRICES)
    partitions = PRICES.partitions
    # SOLUSDT shares ETHUSDT's partition; BNBUSDT's partition stays empty.
    assert java_partition(b"SOLUSDT", partitions) == java_partition(b"ETHUSDT", partitions)
    records = [_trade("ETHUSDT", i) for i in (5, 6, 7)] + [_trade("SOLUSDT", i) for i in (1, 2, 3)]
    records += [_trade("BTCUSDT", 40), _trade("BTCUSDT", 41, kind="trade")]
    # One record a batch: a broker that reports the last batch's base offset + 1 as the end (Tansu)
    # then reports the true end. Idempotent, so that many one-record requests in flight keep their
    # order through a retry (a partition's last record must be the last one produced).
    one_each = {
        "partitioner": PARTITIONER,
        "linger.ms": 0,
        "batch.num.messages": 1,
        "enable.idempotence": True,
    }
    produce(kafka_settings, topic, ((encode_key(t.symbol), encode(t)) for t in records), **one_each)
    symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")
    wide = read_resume_point(kafka_settings, topic, symbols, kind="aggTrade", window=100)
    assert wide.last_ids == {"ETHUSDT": 7, "SOLUSDT": 3}
    assert set(wide.not_resumed) == {"BTCUSDT", "BNBUSDT"}
    assert "of kind trade" in wide.not_resumed["BTCUSDT"]  # an @trade id is no aggTrade id
    assert "is empty" in wide.not_resumed["BNBUSDT"]
    assert wide.records == len(records)  # the two partitions that hold records, nothing else
    narrow = read_resume_point(kafka_settings, topic, symbols, kind="aggTrade", window=3)
    assert narrow.last_ids == {"SOLUSDT": 3}  # ETHUSDT's last record is 4 back: beyond the window
    assert "no record in the last 3" in narrow.not_resumed["ETHUSDT"]
    assert narrow.records == 3 + 2


@pytest.mark.slow
def test_on_a_secured_kafka_ingest_reads_the_end_of_prices_as_its_own_principal(
    secure_kafka: SecureKafkaCluster,
) -> None:
    """READ on prices is all it takes: partitions are assigned, no group is joined."""
    prefix = f"t-{uuid.uuid4().hex[:8]}-"
    secure_kafka.add_topic_prefix(prefix)
    ingest = secure_kafka.settings("ingest", topic_prefix=prefix)
    topic = PRICES.with_prefix(prefix).name
    produce(ingest, topic, [(b"BTCUSDT", encode(_trade("BTCUSDT", 42)))], partitioner=PARTITIONER)
    point = read_resume_point(ingest, topic, ["BTCUSDT"], kind="aggTrade", window=10)
    assert point.last_ids == {"BTCUSDT": 42}


def _resumed_gauge() -> float | None:
    return REGISTRY.get_sample_value("cryptopipe_ingest_resumed_symbols", {"outcome": "resumed"})


@pytest.mark.slow
def test_a_restarted_ingest_backfills_what_was_played_while_none_ran_unless_turned_off(
    kafka_settings: KafkaSettings,
    replay_exchange_factory: Any,
    run_ingest: Any,
    topic_reader: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One endless tape, three ingests one after the other: on an empty topic, with resuming
    turned off, and with it on. Only the outage before the second is missing from the topic."""
    exchange = replay_exchange_factory(symbols=SYMBOLS, rate=500, seed=26, burst=False)
    reader = topic_reader(PRICES)
    settings = {"symbols": "btcusdt,ethusdt", "clock_skew": False}

    first = run_ingest(kafka_settings, exchange, **settings)  # an empty topic: nothing to resume
    eventually(lambda: reader.poll() >= 200, message="the first ingest published nothing")
    first.stop()
    seen = reader.poll()
    second = run_ingest(kafka_settings, exchange, resume_from_kafka=False, **settings)
    eventually(lambda: reader.poll() >= seen + 200, message="the second ingest published nothing")
    second.stop()
    with caplog.at_level(logging.INFO, logger="cryptopipe.ingest.service"):
        third = run_ingest(kafka_settings, exchange, **settings)
        eventually(
            lambda: third.stats.backfilled > 0 and third.stats.published > third.stats.backfilled + 100,
            message="the third ingest did not backfill the outage and go on",
        )
        assert _resumed_gauge() == 2
        third.stop()
    reader.poll()
    trades = reader.trades()

    assert (first.stats.resumed, first.stats.gaps) == (0, 0)
    assert (second.stats.resumed, second.stats.gaps, second.stats.backfilled) == (0, 0, 0)
    stats = third.stats
    assert (stats.resumed, stats.gaps, stats.unfilled) == (2, 2, 0)
    assert stats.backfilled == sum(t.backfilled for t in trades)
    assert "resuming 2 of 2 symbols from the end of" in caplog.text
    # Up to each symbol's last id in the topic, one run of ids is missing: those played before the
    # second ingest, which did not resume. The outage before the third was backfilled.
    offered = history_ids(exchange, SYMBOLS)
    for symbol, ids in ids_by_symbol(trades).items():
        assert ids == sorted(set(ids)), f"{symbol}: in id order, each once"
        gone = sorted(set(offered[symbol]) - set(ids) - {i for i in offered[symbol] if i > ids[-1]})
        assert gone, f"{symbol}: nothing missing, though the second ingest did not resume"
        assert gone == list(range(gone[0], gone[-1] + 1)), f"{symbol}: more than one run missing"
