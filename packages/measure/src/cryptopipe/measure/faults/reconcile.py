"""After a scenario: every trade offered, counted by id in the topic and in Redis (lost, duplicated)."""

from __future__ import annotations

from collections import Counter

from cryptopipe.measure.faults.config import HISTORY_MARGIN, ScenarioResult
from cryptopipe.measure.faults.kafka import topic_trade_ids
from cryptopipe.measure.faults.monitor import offered_trades
from cryptopipe.measure.faults.run import Run
from cryptopipe.store import PriceStore, connect_redis

#: A trade ingest had received but not yet got acknowledged when it was killed was played this
#: long before the kill at most (its producer lingers for milliseconds, but a loaded machine or a
#: slow broker holds acknowledgements back for seconds).
IN_FLIGHT_MS = 10_000
#: A restarted ingest subscribes this long after it answers on its /metrics port at most.
SUBSCRIBED_WITHIN_MS = 10_000


def _redis_side(
    redis_url: str, key_prefix: str, symbols: list[str], cap: int
) -> tuple[Counter[tuple[str, int]], dict[str, int | None], list[str]]:
    """(symbol, trade id) -> copies in Redis' history, each symbol's latest trade id, problems."""
    client = connect_redis(redis_url)
    problems: list[str] = []
    counts: Counter[tuple[str, int]] = Counter()
    latest: dict[str, int | None] = {}
    try:
        store = PriceStore(client, key_prefix)
        for symbol in symbols:
            history = store.history(symbol, limit=cap)
            if len(history) >= cap:
                problems.append(f"history of {symbol} is full ({cap}): the count is not complete")
            counts.update((symbol, int(entry["trade_id"])) for entry in history)
            newest = store.latest(symbol)
            latest[symbol] = None if newest is None else int(newest["trade_id"])
    finally:
        client.close()
    return counts, latest, problems


def reconcile(
    name: str, run: Run, rest_url: str, redis_url: str, key_prefix: str, recovery: float | None
) -> ScenarioResult:
    trades = offered_trades(rest_url, run.config.symbols)
    offered = {symbol: [i for i, _ in items] for symbol, items in trades.items()}
    offered_set = {(symbol, i) for symbol, ids in offered.items() for i in ids}
    topic = topic_trade_ids(run.kafka_settings, run.prices_topic)
    cap = run.config.count + HISTORY_MARGIN
    redis_counts, latest, problems = _redis_side(redis_url, key_prefix, list(offered), cap)
    in_redis = set(redis_counts)
    excused = _lost_while_ingest_down(run, trades, in_redis)
    for symbol, ids in offered.items():
        # The last trade that could reach Redis: the last offered, but for those excused above.
        last = next((i for i in reversed(ids) if (symbol, i) not in excused), None)
        if last is not None and latest[symbol] != last:
            problems.append(
                f"latest price of {symbol} is trade {latest[symbol]}, not the last offered {last}"
            )
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
    in_outage = len(excused)
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
) -> set[tuple[str, int]]:
    """Trades missing from Redis that went with the killed ingest (received, not yet acknowledged)
    or were played while no ingest was subscribed (0 when ingest was not killed): per symbol, the
    missing ids must be one run of consecutive ids, played between shortly before the kill and the
    restarted ingest's subscription. A restarted ingest takes up each symbol from its last id in
    prices and backfills them, so there are none unless that is off (INGEST_RESUME_FROM_KAFKA) or
    the gap exceeds INGEST_BACKFILL_MAX_IDS."""
    if run.ingest_killed_us is None or run.ingest_back_us is None:
        return set()
    first_ms = run.ingest_killed_us // 1000 - IN_FLIGHT_MS
    last_ms = run.ingest_back_us // 1000 + SUBSCRIBED_WITHIN_MS
    excused: set[tuple[str, int]] = set()
    for symbol, items in trades.items():
        missing = [(i, t) for i, t in items if (symbol, i) not in in_redis]
        if not missing:
            continue
        ids = [i for i, _ in missing]
        consecutive = ids == list(range(ids[0], ids[0] + len(ids)))
        if consecutive and all(first_ms <= t <= last_ms for _, t in missing):
            excused.update((symbol, i) for i in ids)
    return excused
