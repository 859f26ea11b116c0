"""After a scenario: every trade offered, counted by id in the topic and in Redis (lost, duplicated)."""

from __future__ import annotations

from collections import Counter

from cryptopipe.measure.faults.config import HISTORY_MARGIN, ScenarioResult
from cryptopipe.measure.faults.kafka import topic_trade_ids
from cryptopipe.measure.faults.monitor import offered_trades
from cryptopipe.measure.faults.run import Run
from cryptopipe.store import PriceStore, connect_redis

#: A trade ingest had received but not yet got acknowledged when it was killed was played this
#: long before the kill at most (its producer lingers for milliseconds).
IN_FLIGHT_MS = 1000
#: A restarted ingest subscribes this long after it answers on its /metrics port at most.
SUBSCRIBED_WITHIN_MS = 10_000


def reconcile(
    name: str, run: Run, rest_url: str, redis_url: str, key_prefix: str, recovery: float | None
) -> ScenarioResult:
    trades = offered_trades(rest_url, run.config.symbols)
    offered = {symbol: [i for i, _ in items] for symbol, items in trades.items()}
    offered_set = {(symbol, i) for symbol, ids in offered.items() for i in ids}
    topic = topic_trade_ids(run.kafka_settings, run.prices_topic)
    client = connect_redis(redis_url)
    problems: list[str] = []
    redis_counts: Counter[tuple[str, int]] = Counter()
    try:
        store = PriceStore(client, key_prefix)
        cap = run.config.count + HISTORY_MARGIN
        for symbol, ids in offered.items():
            history = store.history(symbol, limit=cap)
            if len(history) >= cap:
                problems.append(f"history of {symbol} is full ({cap}): the count is not complete")
            redis_counts.update((symbol, int(entry["trade_id"])) for entry in history)
            latest = store.latest(symbol)
            if ids and (latest is None or latest["trade_id"] != ids[-1]):
                got = None if latest is None else latest["trade_id"]
                problems.append(f"latest price of {symbol} is trade {got}, not the last offered {ids[-1]}")
    finally:
        client.close()
    in_redis = set(redis_counts)
    in_topic = set(topic)
    written = len(offered_set & in_redis)
    topic_duplicates = sum(n - 1 for n in topic.values() if n > 1)
    redis_duplicates = sum(n - 1 for n in redis_counts.values() if n > 1)
    stray_redis = len(in_redis - offered_set)
    stray_topic = len(in_topic - offered_set)
    if stray_redis:
        problems.append(f"{stray_redis} trades in Redis were never offered")
    if stray_topic:
        problems.append(f"{stray_topic} records in the prices topic are not offered trades")
    never_published = len(offered_set - in_topic)
    lost = len(offered_set) - written
    in_outage = _lost_while_ingest_down(run, trades, in_redis)
    if lost > in_outage:
        problems.append(
            f"{lost - in_outage} offered trades missing from Redis ({never_published} of them never "
            "reached Kafka)" + (f", besides {in_outage} played while ingest was down" if in_outage else "")
        )
    return ScenarioResult(
        fault=name,
        offered=len(offered_set),
        written=written,
        lost=lost,
        duplicated=topic_duplicates + redis_duplicates,
        recovery_s=recovery,
        lost_in_outage=in_outage,
        published=len(offered_set & in_topic),
        topic_duplicates=topic_duplicates,
        redis_duplicates=redis_duplicates,
        problems=problems,
    )


def _lost_while_ingest_down(
    run: Run, trades: dict[str, list[tuple[int, int]]], in_redis: set[tuple[str, int]]
) -> int:
    """Trades missing from Redis that the exchange played while no ingest was subscribed (0 when
    ingest was not killed): per symbol, the missing ids must be one run of consecutive ids, played
    between just before the kill and the restarted ingest's subscription. A client receives only
    what is played while it is subscribed, and a restarted ingest does not know the last id its
    predecessor published, so it has no gap to backfill."""
    if run.ingest_killed_us is None or run.ingest_back_us is None:
        return 0
    first_ms = run.ingest_killed_us // 1000 - IN_FLIGHT_MS
    last_ms = run.ingest_back_us // 1000 + SUBSCRIBED_WITHIN_MS
    excused = 0
    for symbol, items in trades.items():
        missing = [(i, t) for i, t in items if (symbol, i) not in in_redis]
        if not missing:
            continue
        ids = [i for i, _ in missing]
        consecutive = ids == list(range(ids[0], ids[0] + len(ids)))
        if consecutive and all(first_ms <= t <= last_ms for _, t in missing):
            excused += len(missing)
    return excused
