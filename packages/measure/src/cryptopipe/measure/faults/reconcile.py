"""After a scenario: every trade offered, counted by id in the topic and in Redis (lost, duplicated)."""

from __future__ import annotations

from collections import Counter

from cryptopipe.measure.faults.config import HISTORY_MARGIN, ScenarioResult
from cryptopipe.measure.faults.kafka import topic_trade_ids
from cryptopipe.measure.faults.monitor import offered_ids
from cryptopipe.measure.faults.run import Run
from cryptopipe.store import PriceStore, connect_redis


def reconcile(
    name: str, run: Run, rest_url: str, redis_url: str, key_prefix: str, recovery: float | None
) -> ScenarioResult:
    offered = offered_ids(rest_url, run.config.symbols)
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
    if lost:
        problems.append(
            f"{lost} offered trades missing from Redis ({never_published} of them never reached Kafka)"
        )
    return ScenarioResult(
        fault=name,
        offered=len(offered_set),
        written=written,
        lost=lost,
        duplicated=topic_duplicates + redis_duplicates,
        recovery_s=recovery,
        published=len(offered_set & in_topic),
        topic_duplicates=topic_duplicates,
        redis_duplicates=redis_duplicates,
        problems=problems,
    )
