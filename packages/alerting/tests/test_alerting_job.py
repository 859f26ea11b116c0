"""The alerting job end to end: trades into the real broker -> Spark -> alerts topic -> Redis."""

from __future__ import annotations

import gc
import random
import threading
import time
import types
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from py4j.java_gateway import JavaObject

from cryptopipe.alerting.job import AlertingJob
from cryptopipe.alerting.plan import OBSERVATION
from cryptopipe.alerting.reference import one_per_batch, reference_alerts
from cryptopipe.alerting.rules import parse_rules
from cryptopipe.infra.testing import eventually
from cryptopipe.observability import metrics as m
from cryptopipe.runtime import end_offsets
from cryptopipe.schemas import PRICES, KafkaSettings

from .conftest import (
    BASE_US,
    MINUTE_US,
    AlertsConsumer,
    JobRunner,
    closers,
    exported,
    identity,
    produce_trades,
    read_alerts,
    trade,
    wait_for_watermark,
    wait_until_idle,
)

pytestmark = pytest.mark.slow


def _histogram_count(metric: Any, **labels: str) -> float:
    name = metric._name
    for family in metric.collect():
        for sample in family.samples:
            if sample.name == f"{name}_count" and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def _sample(metric: Any, **labels: str) -> float:
    value = metric.labels(**labels) if labels else metric
    return float(value._value.get())


def test_threshold_crossing_raises_exactly_one_alert(
    jobs: JobRunner, kafka_settings: KafkaSettings, topic_factory: Any, alerts_consumer: AlertsConsumer
) -> None:
    topic_factory(PRICES)
    trades = [
        # BTC rises 1 % within the first minute: one SELL alert. Trades 2 and 3 share a timestamp;
        # the close is trade 3 (higher id) even though it is produced first.
        trade("BTCUSDT", 1, "60000", BASE_US + 1_000_000),
        trade("BTCUSDT", 3, "60600", BASE_US + 50_000_000),
        trade("BTCUSDT", 2, "60100", BASE_US + 50_000_000),
        # ETH moves 0.4 %: no alert.
        trade("ETHUSDT", 1, "2500", BASE_US + 2_000_000),
        trade("ETHUSDT", 2, "2510", BASE_US + 40_000_000),
        # Second minute: BTC falls 0.6 %: one BUY alert.
        trade("BTCUSDT", 4, "60600", BASE_US + MINUTE_US + 1_000),
        trade("BTCUSDT", 5, "60236.4", BASE_US + MINUTE_US + 30_000_000),
        # BTC's newest trade time passes both windows' end + delay: they close.
        trade("BTCUSDT", 6, "60236.4", BASE_US + 2 * MINUTE_US + 2_000_000),
    ]
    settings = jobs.settings("1m:0.5%")
    before = {
        "alerts": _sample(m.ALERTING_ALERTS, rule="1m-0.5pct", kind="final"),
        "batches": _histogram_count(m.ALERTING_BATCH_DURATION),
        "rows": _sample(m.ALERTING_INPUT_ROWS),
        "publish": _histogram_count(m.ALERTING_PUBLISH_LATENCY, kind="final"),
    }
    job = jobs.start(settings)
    produce_trades(kafka_settings, trades)

    def two_in_redis() -> list[Any]:
        feed = alerts_consumer.feed()
        return feed if len(feed) >= 2 else []

    feed = eventually(two_in_redis, timeout=90, message="two alerts in Redis")
    wait_until_idle(job, len(trades))
    got = sorted(identity(a) for a in alerts_consumer.feed())
    expected = reference_alerts(one_per_batch(trades), settings.rules).alerts
    assert got == expected
    rise, fall = sorted(feed, key=lambda a: a.window_start_us)
    assert (rise.symbol, rise.side, rise.open, rise.close) == (
        "BTCUSDT",
        "SELL",
        Decimal(60000),
        Decimal(60600),
    )
    assert rise.pct_change == pytest.approx(0.01)
    assert (fall.side, fall.open, fall.close) == ("BUY", Decimal(60600), Decimal("60236.4"))
    assert fall.pct_change == pytest.approx(-0.006)
    assert all(a.kind == "final" and a.rule == "1m-0.5pct" for a in feed)
    # The trade that closed the second window is the last one.
    assert fall.trigger_receive_time_us == trades[-1].receive_time_us
    assert rise.trigger_receive_time_us is not None
    assert sorted(identity(a) for a in read_alerts(kafka_settings)) == expected
    # The listener fed Prometheus.
    assert _sample(m.ALERTING_ALERTS, rule="1m-0.5pct", kind="final") - before["alerts"] == 2
    assert _sample(m.ALERTING_INPUT_ROWS) - before["rows"] == len(trades)
    # One duration per micro-batch the query ran (the 8 trades may all come in one; CI saw that).
    assert job.query is not None
    ran = int(job.query.lastProgress["batchId"]) + 1
    eventually(
        lambda: _histogram_count(m.ALERTING_BATCH_DURATION) - before["batches"] == ran,
        timeout=10,
        message=f"{ran} batch durations recorded",
    )
    assert _histogram_count(m.ALERTING_PUBLISH_LATENCY, kind="final") - before["publish"] == 2
    assert _sample(m.ALERTING_STATE_ROWS) >= 1  # the windows still open (BTC's third minute)
    # It read to each partition's end, and its lag against the broker (the probe) reads 0.
    ends = end_offsets(kafka_settings, job.prices_topic)
    assert sum(ends.values()) == len(trades)
    labels = [{"topic": job.prices_topic, "partition": str(p)} for p in ends]
    assert [exported(m.ALERTING_READ_OFFSET, **x) for x in labels] == list(ends.values())
    eventually(
        lambda: [exported(m.ALERTING_LAG, **x) for x in labels] == [0] * len(ends),
        timeout=10,
        message="the alerting lag did not read 0",
    )
    # The progress history it keeps is plain Python: no py4j proxy, which would keep a Java
    # object alive in the JVM for as long as the history keeps the event.
    kept = list(job.recorder.progress)
    assert kept
    assert kept[-1].observedMetrics[OBSERVATION]["rows"] is not None
    assert not [x for x in _reachable(kept) if isinstance(x, JavaObject)]


def _reachable(root: Any, limit: int = 200_000) -> list[Any]:
    """Every object reachable from ``root`` through gc's referents (types and modules excluded)."""
    seen, todo, found = {id(root)}, [root], []
    while todo and len(found) < limit:
        for child in gc.get_referents(todo.pop()):
            if id(child) not in seen and not isinstance(child, type | types.ModuleType):
                seen.add(id(child))
                found.append(child)
                todo.append(child)
    return found


def test_late_trade_within_watermark_counts_and_beyond_is_dropped(
    jobs: JobRunner, kafka_settings: KafkaSettings, topic_factory: Any
) -> None:
    topic_factory(PRICES)
    settings = jobs.settings("1m:0.5%", watermark_delay_ms=1000)
    job = jobs.start(settings)
    dropped_before = _sample(m.ALERTING_DROPPED_LATE)
    first = [
        trade("BTCUSDT", 1, "100", BASE_US + 10_000_000),
        trade("BTCUSDT", 2, "100.2", BASE_US + 59_500_000),
        # Newest BTC trade time 60.4 s: the first window is still open (it closes at 61 s).
        trade("BTCUSDT", 3, "100", BASE_US + MINUTE_US + 400_000),
    ]
    produce_trades(kafka_settings, first)
    wait_for_watermark(job, BASE_US + MINUTE_US + 400_000 - 1_000_000)
    # Behind (59.8 s < newest 60.4 s) but within the delay: it is the first window's new close,
    # +0.8 %, which makes it alert.
    late_ok = trade("BTCUSDT", 4, "100.8", BASE_US + 59_800_000)
    produce_trades(kafka_settings, [late_ok])
    wait_until_idle(job, len(first) + 1)
    # Now close the first window (newest 62.5 s) ...
    closer = trade("BTCUSDT", 5, "100", BASE_US + MINUTE_US + 2_500_000)
    produce_trades(kafka_settings, [closer])
    wait_for_watermark(job, BASE_US + MINUTE_US + 1_500_000)
    wait_until_idle(job, len(first) + 2)
    # ... and send a trade for it: 2.6 s behind the newest, dropped and counted.
    too_late = trade("BTCUSDT", 6, "90", BASE_US + 59_900_000)
    produce_trades(kafka_settings, [too_late])
    wait_until_idle(job, len(first) + 3)

    got = sorted(identity(a) for a in jobs.published)
    batches = [first, [late_ok], [closer], [too_late]]
    expected = reference_alerts(batches, settings.rules)
    assert expected.dropped == 1
    assert got == expected.alerts
    assert len(got) == 1
    assert got[0].close == Decimal("100.8")
    assert job.stats.dropped_late == 1
    assert _sample(m.ALERTING_DROPPED_LATE) - dropped_before == 1


def test_early_alert_fires_once_per_window_and_not_again_at_close(
    jobs: JobRunner, kafka_settings: KafkaSettings, topic_factory: Any, alerts_consumer: AlertsConsumer
) -> None:
    topic_factory(PRICES)
    settings = jobs.settings("1m:1%:early")
    job = jobs.start(settings)
    inside = [
        # BTC crosses +1 % at 20 s (early alert), keeps rising, then falls back: still one alert.
        trade("BTCUSDT", 1, "100", BASE_US + 1_000_000),
        trade("BTCUSDT", 2, "100.5", BASE_US + 10_000_000),
        trade("BTCUSDT", 3, "101.5", BASE_US + 20_000_000),
        trade("BTCUSDT", 4, "103", BASE_US + 30_000_000),
        trade("BTCUSDT", 5, "100", BASE_US + 50_000_000),
        # ETH crosses at 40 s and stays there: the early alert, and no final one at the close.
        trade("ETHUSDT", 1, "100", BASE_US + 1_000_000),
        trade("ETHUSDT", 2, "102", BASE_US + 40_000_000),
        # SOL stays within 1 %: nothing.
        trade("SOLUSDT", 1, "100", BASE_US + 1_000_000),
        trade("SOLUSDT", 2, "100.9", BASE_US + 45_000_000),
    ]
    produce_trades(kafka_settings, inside)

    def two_early() -> list[Any]:
        feed = alerts_consumer.feed()
        return feed if len(feed) >= 2 else []

    feed = eventually(two_early, timeout=90, message="two early alerts in Redis")
    # Raised while the window is still open: no trade has reached its end yet.
    assert all(a.kind == "early" for a in feed)
    early = {a.symbol: a for a in feed}
    assert (early["BTCUSDT"].close, early["BTCUSDT"].side) == (Decimal("101.5"), "SELL")
    assert early["BTCUSDT"].pct_change == pytest.approx(0.015)
    assert early["ETHUSDT"].close == Decimal(102)
    # Early alerts are timed from the trade that crossed.
    assert early["ETHUSDT"].trigger_receive_time_us == inside[6].receive_time_us

    closer = [trade("SOLUSDT", 3, "100", BASE_US + MINUTE_US + 5_000_000)]
    produce_trades(kafka_settings, closer)
    wait_for_watermark(job, BASE_US + MINUTE_US)
    wait_until_idle(job, len(inside) + 1)
    expected = reference_alerts(one_per_batch(inside + closer), settings.rules).alerts
    assert sorted(identity(a) for a in jobs.published) == expected
    assert sorted(identity(a) for a in alerts_consumer.feed()) == expected
    assert len(expected) == 2


def test_express_lane_and_spark_raise_the_same_alerts_and_redis_keeps_one_copy(
    jobs: JobRunner, kafka_settings: KafkaSettings, topic_factory: Any, alerts_consumer: AlertsConsumer
) -> None:
    topic_factory(PRICES)
    settings = jobs.settings("1m:1%:early:name=early;1m:0.5%:name=final", express=True)
    job = jobs.start(settings)
    assert job.express is not None
    market = [
        trade("BTCUSDT", 1, "100", BASE_US + 1_000_000),
        trade("BTCUSDT", 2, "101.5", BASE_US + 20_000_000),
        trade("ETHUSDT", 1, "100", BASE_US + 1_000_000),
        trade("ETHUSDT", 2, "99.4", BASE_US + 40_000_000),
        *closers(["BTCUSDT", "ETHUSDT"], BASE_US + MINUTE_US + 5_000_000),
    ]
    produce_trades(kafka_settings, market)
    wait_for_watermark(job, BASE_US + MINUTE_US)
    wait_until_idle(job, len(market))
    expected = reference_alerts(one_per_batch(market), settings.rules).alerts
    assert len(expected) == 3  # BTC early, BTC final (+1.5 % at the close), ETH final
    # Each alert is on the topic twice, once from each lane, and in Redis once.
    assert sorted(identity(a) for a in jobs.published) == expected
    assert job.express.stats.alerts_published == len(expected)
    assert sorted(identity(a) for a in read_alerts(kafka_settings)) == sorted(expected * 2)
    eventually(lambda: alerts_consumer.loop.stats.consumed >= 6, timeout=30, message="both copies consumed")
    assert sorted(identity(a) for a in alerts_consumer.feed()) == expected
    assert (alerts_consumer.loop.stats.written, alerts_consumer.loop.stats.stale) == (3, 3)


def test_restart_from_checkpoint_neither_loses_nor_duplicates(
    jobs: JobRunner, kafka_settings: KafkaSettings, topic_factory: Any, alerts_consumer: AlertsConsumer
) -> None:
    topic_factory(PRICES)
    settings = jobs.settings("1m:0.5%;2m:0.5%:early")
    trades: list[Any] = []
    prices = {"BTCUSDT": 60_000.0, "ETHUSDT": 2_500.0, "SOLUSDT": 150.0}
    # Six minutes of trades every 2 s per symbol; every symbol jumps 1 % at minutes 1, 3 and 4.
    for step in range(180):
        for n, (symbol, price) in enumerate(prices.items()):
            jump = 1.01 if step % 30 == 15 and step // 30 in (1, 3, 4) else 1.0
            prices[symbol] = round(price * jump, 2)
            trades.append(trade(symbol, step, f"{prices[symbol]:.2f}", BASE_US + step * 2_000_000 + n * 1000))
    closing = closers(prices, BASE_US + 8 * MINUTE_US)
    closer = closing[-1]
    chunks = [trades[:150], trades[150:400], trades[400:], closing]
    expected = reference_alerts(one_per_batch([*trades, *closing]), settings.rules).alerts
    assert len(expected) >= 6

    # Run 1: stopped after its first chunk.
    job = jobs.start(settings)
    produce_trades(kafka_settings, chunks[0])
    wait_until_idle(job, len(chunks[0]))
    job.stop()

    # Run 2: crashes right after publishing its first alerts, before Spark commits the batch.
    def crash(alerts: Any, _acked: Any) -> None:
        raise RuntimeError("simulated crash after publishing")

    job = jobs.start(settings, on_alerts=crash)
    produce_trades(kafka_settings, chunks[1])
    with pytest.raises(Exception, match="simulated crash"):
        job.await_termination(90)

    # Run 3: replays the failed batch from the checkpoint and carries on.
    job = jobs.start(settings)
    produce_trades(kafka_settings, chunks[2] + chunks[3])
    wait_for_watermark(job, closer.trade_time_us - 1_000_000)
    wait_until_idle(job, len(chunks[2]) + len(chunks[3]))

    def all_in_redis() -> list[Any]:
        feed = alerts_consumer.feed()
        return feed if len(feed) >= len(expected) else []

    eventually(all_in_redis, timeout=60, message="every alert in Redis")
    feed = alerts_consumer.feed()
    assert sorted(identity(a) for a in feed) == expected
    on_topic = [identity(a) for a in read_alerts(kafka_settings)]
    assert sorted(set(on_topic)) == expected
    # The crashed batch was published twice (at least once on the topic), yet Redis has it once.
    assert len(on_topic) > len(expected)


# --- property: Spark equals the reference on generated trade sequences -----------------------

_FINAL_SYMBOLS = ("F1USDT", "F2USDT", "F3USDT")
_EARLY_SYMBOLS = ("E1USDT", "E2USDT")
#: Final rules only, and final and early rules together: both meet the same reference.
_NATIVE_RULES = "1m:0.5%:name=f1m:symbols=F1USDT,F2USDT,F3USDT:override=F3USDT=0.2%;2m:1%:name=all2m"
_STATEFUL_RULES = _NATIVE_RULES + ";1m:0.4%:early:name=e1m:symbols=E1USDT,E2USDT"


@st.composite
def _market(draw: st.DrawFn) -> list[Any]:
    """Trades of five symbols over four minutes, as produced (in arrival order).

    Final-rule symbols arrive out of order by up to 900 ms (less than the 1 s watermark delay,
    so nothing is dropped whatever the batching), with equal timestamps in any order; early-rule
    symbols arrive in (time, id) order, the order early alerts are defined on.
    """
    produced: list[tuple[int, Any]] = []
    for symbol in _FINAL_SYMBOLS + _EARLY_SYMBOLS:
        steps = draw(
            st.lists(
                st.tuples(st.sampled_from([0, 0, 1, 7, 250, 3_000, 20_000]), st.integers(-120, 120)),
                min_size=10,
                max_size=60,
            )
        )
        # One jump of 1.5 % somewhere, so that most symbols raise an alert.
        jump_at, jump = draw(st.integers(0, len(steps) - 1)), draw(st.sampled_from([-150, 150]))
        time_ms, cents = draw(st.integers(0, 5_000)), 10_000
        batch = []
        for trade_id, (gap_ms, move) in enumerate(steps, start=1):
            time_ms = time_ms + gap_ms
            cents = max(100, cents + move + (jump if trade_id - 1 == jump_at else 0))
            if time_ms >= 4 * 60_000:
                break
            batch.append(trade(symbol, trade_id, f"{cents / 100:.2f}", BASE_US + time_ms * 1000))
        for item in batch:
            jitter = draw(st.integers(0, 900)) if symbol in _FINAL_SYMBOLS else 0
            produced.append((item.trade_time_us + jitter * 1000, item))
    produced.sort(key=lambda pair: pair[0])
    return [item for _arrival, item in produced]


@settings(
    max_examples=2,
    deadline=None,
    derandomize=True,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@given(market=_market())
@pytest.mark.parametrize("rules", [_NATIVE_RULES, _STATEFUL_RULES], ids=["final", "final+early"])
def test_spark_matches_reference_on_generated_markets(
    rules: str, market: list[Any], jobs: JobRunner, kafka_settings: KafkaSettings, kafka: Any
) -> None:
    from cryptopipe.infra.testing import create_topic

    prefix = f"{kafka_settings.topic_prefix}{uuid.uuid4().hex[:6]}-"
    own = kafka_settings.model_copy(update={"topic_prefix": prefix})
    create_topic(kafka, PRICES.with_prefix(prefix).name, 3, settings=own)
    runner = JobRunner(jobs.spark, own, jobs.checkpoint_root / prefix)
    try:
        settings_ = runner.settings(rules)
        job = runner.start(settings_)
        closing = closers((t.symbol for t in market), BASE_US + 6 * MINUTE_US)
        produced = produce_trades(own, [*market, *closing])
        wait_for_watermark(job, closing[-1].trade_time_us - 1_000_000)
        wait_until_idle(job, produced)
        expected = reference_alerts(one_per_batch([*market, *closing]), settings_.rules)
        assert expected.dropped == 0
        assert sorted(identity(a) for a in runner.published) == expected.alerts
    finally:
        runner.close()


def test_run_restarts_a_failed_query_from_its_checkpoint(
    jobs: JobRunner, kafka_settings: KafkaSettings, topic_factory: Any
) -> None:
    topic_factory(PRICES)
    trades = [
        trade("BTCUSDT", 1, "100", BASE_US + 1_000_000),
        trade("BTCUSDT", 2, "101", BASE_US + 30_000_000),
        trade("BTCUSDT", 3, "101", BASE_US + MINUTE_US + 5_000_000),
    ]
    settings = jobs.settings("1m:0.5%", restart_backoff_max_s=1.0)
    calls: list[int] = []

    def fail_once(alerts: Any, _acked: Any) -> None:
        calls.append(len(alerts))
        if len(calls) == 1:
            raise RuntimeError("broker hiccup")

    restarts_before = _sample(m.ALERTING_QUERY_RESTARTS)
    job = AlertingJob(settings, kafka_settings, spark=jobs.spark, on_alerts=fail_once)
    jobs.jobs.append(job)
    stop = threading.Event()
    runner = threading.Thread(target=job.run, args=(stop,), daemon=True)
    runner.start()
    try:
        produce_trades(kafka_settings, trades)
        eventually(lambda: len(calls) >= 2, timeout=90, message="the batch was replayed after the restart")
    finally:
        stop.set()
        runner.join(60)
    assert not runner.is_alive()
    assert job.stats.restarts == 1
    assert _sample(m.ALERTING_QUERY_RESTARTS) - restarts_before == 1
    on_topic = [identity(a) for a in read_alerts(kafka_settings)]
    expected = reference_alerts(one_per_batch(trades), settings.rules).alerts
    assert len(expected) == 1
    assert on_topic == expected * 2  # at least once on the topic: published, failed, replayed


def test_native_and_python_sources_raise_identical_alerts(
    jobs: JobRunner, kafka_settings: KafkaSettings, topic_factory: Any
) -> None:
    """Spark's own Kafka source and the Python Data Source read the same topic: same alerts."""
    topic_factory(PRICES)
    rules = _STATEFUL_RULES
    market = [
        trade(symbol, i, f"{100 + (i % 7) * (0.4 if symbol[0] == 'E' else 0.3):.2f}", BASE_US + i * 1_700_000)
        for i in range(1, 150)
        for symbol in (*_FINAL_SYMBOLS, *_EARLY_SYMBOLS)
    ]
    closing = closers((t.symbol for t in market), BASE_US + 6 * MINUTE_US)
    closer = closing[-1]
    produced = produce_trades(kafka_settings, [*market, *closing])
    published: dict[str, list[Any]] = {}
    for source in ("native", "python"):
        runner = JobRunner(jobs.spark, kafka_settings, jobs.checkpoint_root / source)
        try:
            job = runner.start(runner.settings(rules, source=source))
            assert job.source_kind == source
            wait_for_watermark(job, closer.trade_time_us - 1_000_000)
            wait_until_idle(job, produced)
            published[source] = sorted(identity(a) for a in runner.published)
        finally:
            runner.close()
    expected = reference_alerts(one_per_batch([*market, *closing]), parse_rules(rules)).alerts
    assert len(expected) > 10
    assert published["native"] == published["python"] == expected


def _late_market() -> list[Any]:
    """Trades of three symbols in arrival order, with stragglers up to 4 s behind (some of them
    more than the 1 s delay behind their symbol's newest trade: late whatever the batching)."""
    rng = random.Random(11)
    arrivals: list[tuple[int, Any]] = []
    for n, symbol in enumerate(("AUSDT", "BUSDT", "CUSDT")):
        cents = 10_000
        for i in range(1, 120):
            cents = max(100, cents + rng.choice([-40, -10, 0, 10, 40, 90]))
            time_us = BASE_US + i * 1_500_000 + n * 1000
            lag_us = rng.choice([0, 0, 0, 300_000, 900_000, 2_500_000, 4_000_000])
            arrivals.append((time_us + lag_us, trade(symbol, i, f"{cents / 100:.2f}", time_us)))
    arrivals.sort(key=lambda pair: pair[0])
    return [item for _arrival, item in arrivals]


def test_replay_speed_and_batch_size_do_not_change_the_alerts(
    jobs: JobRunner, kafka_settings: KafkaSettings, topic_factory: Any
) -> None:
    """Late is decided per symbol in arrival order: a slow paced replay, tiny micro-batches and
    one big micro-batch (Python and native sources) raise the same alerts and drop the same trades."""
    topic_factory(PRICES)
    market = _late_market()
    closing = closers((t.symbol for t in market), BASE_US + 5 * MINUTE_US)
    rules = "30s:0.5%;1m:0.8%:early:name=e1m"
    expected = reference_alerts(one_per_batch([*market, *closing]), parse_rules(rules))
    assert expected.dropped > 10
    assert len(expected.alerts) > 5
    results: dict[str, tuple[list[Any], int]] = {}

    def run(name: str, produce: Any = None, **overrides: Any) -> None:
        runner = JobRunner(jobs.spark, kafka_settings, jobs.checkpoint_root / name)
        try:
            job = runner.start(runner.settings(rules, **overrides))
            if produce is not None:
                produce()
            wait_until_idle(job, len(market) + len(closing))
            results[name] = (sorted(identity(a) for a in runner.published), job.stats.dropped_late)
        finally:
            runner.close()

    def paced() -> None:  # a slow replay: small chunks while the job runs
        for start in range(0, len(market), 25):
            produce_trades(kafka_settings, market[start : start + 25], linger_ms=0)
            time.sleep(0.2)
        produce_trades(kafka_settings, closing)

    run("paced", paced)
    run("tiny-batches", max_records_per_trigger=5)
    run("one-batch-python")
    run("one-batch-native", source="native")
    for name, (alerts, dropped) in results.items():
        assert alerts == expected.alerts, name
        assert dropped == expected.dropped, name


def test_spark_real_time_mode_refuses_the_alert_operator(
    jobs: JobRunner, kafka_settings: KafkaSettings, topic_factory: Any
) -> None:
    """The evidence for the express lane: real-time mode does not run the Python stateful operator
    the lateness rule needs. (Should a Spark release accept it, this fails: then move early alerts
    into Spark.)"""
    from pyspark.errors import StreamingQueryException
    from pyspark.sql.streaming.state import GroupStateTimeout

    from cryptopipe.alerting.job import native_kafka_options
    from cryptopipe.alerting.plan import _STATE_SCHEMA, WINDOW_SCHEMA, SymbolWindows, native_trades
    from cryptopipe.schemas import ALERTS

    prices, alerts = topic_factory(PRICES), topic_factory(ALERTS)
    settings = jobs.settings(_STATEFUL_RULES, source="native")
    trades = native_trades(jobs.spark, native_kafka_options(kafka_settings, prices, settings))
    # The operator as the job runs it, but in update mode, the one real-time mode has.
    windows = trades.groupBy("symbol").applyInPandasWithState(
        SymbolWindows(settings.rules, settings.watermark_delay_ms),
        WINDOW_SCHEMA,
        _STATE_SCHEMA,
        "update",
        GroupStateTimeout.NoTimeout,
    )
    out = windows.selectExpr("symbol AS key", "to_json(struct(*)) AS value")
    writer = (
        out.writeStream.format("kafka")
        .option("kafka.bootstrap.servers", kafka_settings.bootstrap_servers)
        .option("topic", alerts)
        .option("checkpointLocation", str(jobs.checkpoint_root / "real-time"))
        .outputMode("update")
        .trigger(realTime="5 seconds")
    )
    query = writer.start()
    try:
        with pytest.raises(StreamingQueryException, match=r"REAL_TIME_MODE\.OPERATOR_OR_SINK_NOT_IN") as no:
            query.awaitTermination(60)
    finally:
        query.stop()
    assert "FlatMapGroupsInPandasWithStateExec" in str(no.value)
