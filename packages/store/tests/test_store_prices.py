"""PriceSink and PriceStore against a real Redis: ordering, idempotency, cap, read API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import msgspec
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from cryptopipe.schemas import RedisSettings
from cryptopipe.store import PriceSink, PriceStore, connect_redis, history_member, price_keys

from .conftest import recorded_trades, redis_state, reference_latest, trade


@pytest.fixture
def client(redis_settings: RedisSettings) -> Iterator[redis.Redis]:
    client: redis.Redis = connect_redis(redis_settings.url.get_secret_value())
    yield client
    keys = list(client.scan_iter(match=redis_settings.key_prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _latest_key(store: PriceStore, symbol: str) -> tuple[int, int] | None:
    latest = store.latest(symbol)
    return None if latest is None else (latest["trade_time_us"], latest["trade_id"])


# Trades of two symbols whose (time, id) keys collide often: ties on time, duplicates, reorders.
_events = st.lists(
    st.tuples(st.sampled_from(["AAAUSDT", "BBBUSDT"]), st.integers(0, 6), st.integers(0, 4)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=_events, data=st.data())
def test_latest_never_moves_backwards(
    client: redis.Redis,
    redis_settings: RedisSettings,
    events: list[tuple[str, int, int]],
    data: st.DataObject,
) -> None:
    prefix = f"{redis_settings.key_prefix}{uuid.uuid4().hex[:6]}:"
    sink = PriceSink(client, key_prefix=prefix)
    store = PriceStore(client, prefix)
    trades = [trade(s, trade_id, 1_700_000_000_000_000 + t) for s, t, trade_id in events]
    # Replay in any order, with duplicates, split into arbitrary batches.
    order = data.draw(st.permutations(trades + data.draw(st.lists(st.sampled_from(trades), max_size=10))))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(order)), max_size=5)))
    batches = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True)]
    try:
        running: dict[str, tuple[int, int]] = {}
        stale_expected = stale_seen = 0
        for batch in batches:
            for t in batch:
                key = (t.trade_time_us, t.trade_id)
                if t.symbol in running and key <= running[t.symbol]:
                    stale_expected += 1
                else:
                    running[t.symbol] = key
            if batch:
                stale_seen += sink.write(batch).stale
            for symbol, best in running.items():
                assert _latest_key(store, symbol) == best  # never behind, never ahead
        assert stale_seen == stale_expected
        for symbol, best_trade in reference_latest(trades).items():
            latest = store.latest(symbol)
            assert latest is not None
            assert (latest["trade_time_us"], latest["trade_id"]) == (
                best_trade.trade_time_us,
                best_trade.trade_id,
            )
            history = client.zrange(price_keys(prefix, symbol)[1], 0, -1)
            assert sorted(history) == sorted({history_member(t) for t in trades if t.symbol == symbol})
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)


def test_replaying_the_same_trades_leaves_redis_unchanged(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    trades = recorded_trades(1500)
    sink = PriceSink(client, key_prefix=redis_settings.key_prefix)
    for i in range(0, len(trades), 200):
        sink.write(trades[i : i + 200])
    before = redis_state(client, redis_settings.key_prefix)

    replay = sink.write(trades[700:]), sink.write(list(reversed(trades[:700])))

    assert redis_state(client, redis_settings.key_prefix) == before
    assert sum(r.written for r in replay) == 0
    assert sum(r.stale for r in replay) == len(trades)
    assert all(not r.latencies_us for r in replay)  # replays stay out of the latency samples


def test_real_trades_latest_matches_reference_and_history_is_complete(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    trades = recorded_trades(3000)
    sink = PriceSink(client, key_prefix=redis_settings.key_prefix, history_cap=5000)
    result = sink.write(trades)
    store = PriceStore(client, redis_settings.key_prefix)

    assert result.written == len(trades)
    assert store.symbols() == ["BTCUSDT", "ETHUSDT"]
    for symbol, best in reference_latest(trades).items():
        latest = store.latest(symbol)
        assert latest is not None
        assert latest["price"] == best.price
        assert latest["quantity"] == best.quantity
        assert latest["trade_id"] == best.trade_id
        assert latest["trade_time_us"] == best.trade_time_us
        assert latest["event_time_us"] == best.event_time_us
        assert latest["receive_time_us"] == best.receive_time_us
        assert latest["kind"] == "trade"
        assert latest["written_time_us"] >= best.receive_time_us
        history = store.history(symbol, limit=10_000)
        mine = [t for t in trades if t.symbol == symbol]
        assert [h["trade_id"] for h in history] == [
            t.trade_id for t in sorted(mine, key=lambda t: (t.trade_time_us, t.trade_id))
        ]


def test_history_is_capped_to_the_newest_trades(client: redis.Redis, redis_settings: RedisSettings) -> None:
    sink = PriceSink(client, key_prefix=redis_settings.key_prefix, history_cap=50)
    trades = [trade("CAPUSDT", i, 1_000_000 + i * 10) for i in range(200)]
    for i in range(0, 200, 30):
        sink.write(trades[i : i + 30])
    store = PriceStore(client, redis_settings.key_prefix)

    history = store.history("CAPUSDT", limit=1000)
    assert [h["trade_id"] for h in history] == list(range(150, 200))
    assert [h["trade_id"] for h in store.history("CAPUSDT", limit=3)] == [197, 198, 199]
    assert store.history("CAPUSDT", limit=0) == []
    assert client.zcard(price_keys(redis_settings.key_prefix, "CAPUSDT")[1]) == 50


def test_history_member_is_compact_json_of_intrinsic_fields() -> None:
    a = trade("XUSDT", 7, 123, price="0.00000001")
    b = msgspec.structs.replace(a, receive_time_us=999, event_time_us=998, backfilled=True)
    assert history_member(a) == history_member(b)  # a re-received duplicate is the same member
    assert history_member(a) == (
        b'{"trade_id":7,"price":"0.00000001","quantity":"0.25","trade_time_us":123,'
        b'"buyer_is_maker":false,"kind":"trade"}'
    )


def test_read_api_on_unknown_symbol(client: redis.Redis, redis_settings: RedisSettings) -> None:
    store = PriceStore(client, redis_settings.key_prefix)
    assert store.latest("NOPEUSDT") is None
    assert store.history("NOPEUSDT", 10) == []
    assert store.symbols() == []


def test_read_api_with_decoded_responses(redis_settings: RedisSettings) -> None:
    url = redis_settings.url.get_secret_value()
    PriceSink(connect_redis(url), key_prefix=redis_settings.key_prefix).write([trade("STRUSDT", 1, 5)])
    text_client = redis.Redis.from_url(url, decode_responses=True)
    store = PriceStore(text_client, redis_settings.key_prefix)
    latest = store.latest("STRUSDT")
    assert latest is not None
    assert latest["price"] == Decimal("100.5")
    assert store.history("STRUSDT", 5)[0]["trade_id"] == 1
    assert store.symbols() == ["STRUSDT"]
    client = connect_redis(url)
    client.delete(*client.scan_iter(match=redis_settings.key_prefix + "*"))


def test_script_reloaded_after_redis_forgot_it(client: redis.Redis, redis_settings: RedisSettings) -> None:
    sink = PriceSink(client, key_prefix=redis_settings.key_prefix)
    sink.write([trade("FLUSHUSDT", 1, 10)])
    client.script_flush()  # what a Redis restart does to the script cache
    result = sink.write([trade("FLUSHUSDT", 2, 20), trade("FLUSHUSDT", 1, 10)])
    assert (result.written, result.stale) == (1, 1)
    assert _latest_key(PriceStore(client, redis_settings.key_prefix), "FLUSHUSDT") == (20, 2)


def test_metrics_and_latency_samples(client: redis.Redis, redis_settings: RedisSettings) -> None:
    symbol = "M" + uuid.uuid4().hex[:6].upper()

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"symbol": symbol}) or 0.0

    sink = PriceSink(client, key_prefix=redis_settings.key_prefix)
    live = trade(symbol, 2, 2_000)
    backfilled = trade(symbol, 1, 1_000, backfilled=True)
    result = sink.write([backfilled, live])
    again = sink.write([live])

    assert (result.written, result.stale, again.written, again.stale) == (2, 0, 0, 1)
    assert sample("cryptopipe_prices_written_total") == 2
    assert sample("cryptopipe_prices_stale_total") == 1
    # Backfilled and stale trades are written but kept out of the latency histograms.
    assert list(result.latencies_us) == [result.written_time_us - live.receive_time_us]
    assert sample("cryptopipe_system_latency_seconds_count") == 1
    assert sample("cryptopipe_e2e_latency_seconds_count") == 1
    assert sample("cryptopipe_e2e_latency_seconds_sum") == pytest.approx(
        (result.written_time_us - live.trade_time_us) / 1e6
    )
    share = (result.written_time_us - live.receive_time_us) / (result.written_time_us - live.trade_time_us)
    assert sample("cryptopipe_system_latency_share") == pytest.approx(share)


def test_per_trade_mode_writes_the_same_state(client: redis.Redis, redis_settings: RedisSettings) -> None:
    trades = recorded_trades(400)
    a, b = redis_settings.key_prefix + "a:", redis_settings.key_prefix + "b:"
    PriceSink(client, key_prefix=a).write(trades)
    PriceSink(client, key_prefix=b, per_trade=True).write(trades)

    def strip(state: dict[bytes, Any], prefix: str) -> dict[bytes, Any]:
        out = {}
        for key, value in state.items():
            if isinstance(value, dict):
                value = {k: v for k, v in value.items() if k != b"written_time_us"}
            out[key[len(prefix) :]] = value
        return out

    assert strip(redis_state(client, a), a) == strip(redis_state(client, b), b)


def test_history_cap_must_be_positive(client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="history_cap"):
        PriceSink(client, history_cap=0)
