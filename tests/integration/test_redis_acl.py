"""Each service's own Redis ACL user (cryptopipe.infra.redis_acl), on the session's real Redis:
it does its whole job through the service's real code (the store's sinks, the dashboard's
readers) and is refused everything beyond it; a consumer refused by Redis stops with one line
that names the service and REDIS_URL, never a retry loop or a traceback."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from prometheus_client import REGISTRY

from cryptopipe.dashboard.books import BookHealth, load_book
from cryptopipe.dashboard.data import load_alerts
from cryptopipe.dashboard.history import MarketHistory
from cryptopipe.dashboard.prices import load_prices
from cryptopipe.infra import RedisEndpoint
from cryptopipe.infra.redis_acl import (
    ACCESS,
    SERVICES,
    create_service_users,
    password_hash,
    service_env,
    username,
)
from cryptopipe.infra.testing import eventually, produce
from cryptopipe.pipeline.preflight import check_redis
from cryptopipe.runtime import Stop
from cryptopipe.schemas import (
    PRICES,
    Alert,
    ConfigError,
    KafkaSettings,
    RedisSettings,
    Trade,
    encode,
    encode_key,
    load_settings,
    settings_of,
)
from cryptopipe.store import AlertSink, AlertStore, BookSink, BookStore, PriceSink, PriceStore, connect_redis
from cryptopipe.store.cli import run
from cryptopipe.store.settings import PricesConsumerSettings
from cryptopipe.store.sink import refused

T0 = 1_723_161_000_000_000


def trade(symbol: str, trade_id: int) -> Trade:
    t = T0 + trade_id * 1000
    return Trade(
        symbol=symbol,
        trade_id=trade_id,
        price=Decimal("100.5") + trade_id,
        quantity=Decimal("0.25"),
        buyer_is_maker=False,
        trade_time_us=t,
        event_time_us=t + 100,
        receive_time_us=t + 1000,
        kind="trade",
    )


def alert() -> Alert:
    return Alert(
        rule="pct-1m",
        symbol="BTCUSDT",
        kind="final",
        side="BUY",
        window_start_us=T0,
        window_end_us=T0 + 60_000_000,
        open=Decimal("100"),
        close=Decimal("101.5"),
        pct_change=1.5,
        raised_time_us=T0 + 60_500_000,
        trigger_receive_time_us=None,
    )


def book_records() -> list[Any]:
    from cryptopipe.schemas import BookResetRecord

    return [
        BookResetRecord(
            symbol="BTCUSDT",
            epoch=1,
            reason="initial",
            update_id=1000,
            bids=((Decimal("99.9"), Decimal("2")),),
            asks=((Decimal("100.1"), Decimal("3")),),
            event_time_us=T0,
            receive_time_us=T0 + 1000,
        )
    ]


@pytest.fixture
def users(
    redis_settings: RedisSettings, redis_client: redis.Redis, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    """Each service's settings with its own fresh ACL user (deleted after the test)."""
    namespace = f"t{uuid.uuid4().hex[:8]}-"
    made = create_service_users(redis_settings, tmp_path / "secrets", namespace=namespace)
    yield {"settings": made, "namespace": namespace, "secrets": tmp_path / "secrets"}
    redis_client.acl_deluser(*(username(s, namespace) for s in SERVICES))


@pytest.fixture
def clients(users: dict[str, Any]) -> Iterator[dict[str, redis.Redis]]:
    """A store client (``connect_redis``, as every service makes it) per service's user."""
    made = {s: connect_redis(settings.url.get_secret_value()) for s, settings in users["settings"].items()}
    yield made
    for client in made.values():
        client.close()


def test_each_password_is_in_its_own_owner_only_file(users: dict[str, Any]) -> None:
    for service, settings in users["settings"].items():
        path = users["secrets"] / f"{username(service, users['namespace'])}.password"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        url = urlsplit(settings.url.get_secret_value())
        assert (url.username, url.password) == (username(service, users["namespace"]), path.read_text())


def test_each_service_user_does_its_whole_job_with_the_services_own_code(
    clients: dict[str, redis.Redis], redis_settings: RedisSettings
) -> None:
    prefix = redis_settings.key_prefix
    prices = PriceSink(clients["prices-consumer"], key_prefix=prefix, history_cap=2)
    assert prices.write([trade("BTCUSDT", i) for i in range(1, 4)]).written == 3
    assert prices.write([trade("BTCUSDT", 1)]).stale == 1
    assert BookSink(clients["books-consumer"], key_prefix=prefix).write(book_records()).written == 1
    assert AlertSink(clients["alerts-consumer"], key_prefix=prefix).write([alert(), alert()]).written == 1

    dashboard = clients["dashboard"]
    cards = load_prices(
        PriceStore(dashboard, prefix),
        [],
        now_us=T0,
        stale_seconds=5,
        history_points=10,
        history=MarketHistory(),
    )
    assert [(c.symbol, c.price) for c in cards] == [("BTCUSDT", Decimal("103.5"))]
    assert [row["trade_id"] for row in PriceStore(dashboard, prefix).history("BTCUSDT")] == [2, 3]
    panel = load_book(
        BookStore(dashboard, prefix),
        "BTCUSDT",
        now_us=T0,
        spreads=MarketHistory(),
        health=BookHealth(None, None),
    )
    assert panel is not None
    assert panel.view.update_id == 1000
    assert BookStore(dashboard, prefix).symbols() == ["BTCUSDT"]
    assert load_alerts(AlertStore(dashboard, prefix), 10) == [alert()]


def _script(client: redis.Redis, prefix: str) -> None:
    """A script the user loads itself, deleting a key it owns: DEL is not its command."""
    sha = client.script_load("return redis.call('DEL', KEYS[1])")
    client.evalsha(sha, 1, f"{prefix}price:BTCUSDT")


REFUSED: dict[str, tuple[str, Callable[[redis.Redis, str], Any]]] = {
    "dashboard writes a price": ("dashboard", lambda c, p: PriceSink(c, key_prefix=p).write([trade("X", 1)])),
    "dashboard sets a price field": ("dashboard", lambda c, p: c.hset(f"{p}price:BTCUSDT", "price", "1")),
    "dashboard reads the alert markers": ("dashboard", lambda c, p: c.get(f"{p}alert-seen:x")),
    "prices consumer reads alerts": ("prices-consumer", lambda c, p: AlertStore(c, p).recent()),
    "prices consumer writes an alert": (
        "prices-consumer",
        lambda c, p: AlertSink(c, key_prefix=p).write([alert()]),
    ),
    "prices consumer writes outside its prefix": (
        "prices-consumer",
        lambda c, p: PriceSink(c, key_prefix="other:").write([trade("X", 1)]),
    ),
    "prices consumer FLUSHALL": ("prices-consumer", lambda c, p: c.flushall()),
    "prices consumer KEYS": ("prices-consumer", lambda c, p: c.keys("*")),
    "prices consumer CONFIG GET": ("prices-consumer", lambda c, p: c.config_get("requirepass")),
    "prices consumer's own script deletes a key": ("prices-consumer", _script),
    "books consumer writes a price": (
        "books-consumer",
        lambda c, p: PriceSink(c, key_prefix=p).write([trade("X", 1)]),
    ),
    "alerts consumer writes a book": (
        "alerts-consumer",
        lambda c, p: BookSink(c, key_prefix=p).write(book_records()),
    ),
    "alerts consumer ACL SETUSER": ("alerts-consumer", lambda c, p: c.acl_setuser("x", enabled=True)),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_each_service_user_is_refused_beyond_its_job(
    case: str, clients: dict[str, redis.Redis], redis_settings: RedisSettings, redis_client: redis.Redis
) -> None:
    service, action = REFUSED[case]
    prefix = redis_settings.key_prefix
    redis_client.hset(f"{prefix}price:BTCUSDT", "price", "7")
    with pytest.raises(redis.ResponseError) as refusal:
        action(clients[service], prefix)
    assert refused(refusal.value) == "permission"
    assert redis_client.hget(f"{prefix}price:BTCUSDT", "price") == b"7"
    assert not redis_client.exists(
        "other:price:X", f"{prefix}price:X", f"{prefix}book:BTCUSDT", f"{prefix}alerts"
    )


def test_no_user_gets_every_command_or_a_key_outside_the_prefix() -> None:
    for access in ACCESS.values():
        rules = access.rules("cryptopipe:")
        assert all(r.startswith("~cryptopipe:") for r in rules if r.startswith("~")), rules
        assert not {"+@all", "+flushall", "+flushdb", "+keys", "+config", "+eval", "+acl"} & set(rules)
    assert ACCESS["dashboard"].rules("a*b:")[0] == "~a\\*b:price:*"


def _counted(component: str, reason: str) -> float:
    return (
        REGISTRY.get_sample_value("cryptopipe_errors_total", {"component": component, "reason": reason})
        or 0.0
    )


def test_a_consumer_refused_by_its_acl_stops_with_one_line_naming_the_service_and_redis_url(
    users: dict[str, Any],
    kafka_settings: KafkaSettings,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The prices consumer given the dashboard's user: its first write is refused, and it stops."""
    topic = PRICES.with_prefix(kafka_settings.topic_prefix).name
    settings = settings_of(PricesConsumerSettings, group=f"g-{uuid.uuid4().hex[:8]}", from_beginning=True)
    stop = Stop()
    books: dict[str, Any] = {}
    before = _counted("prices-consumer", "redis_refused_permission")

    def consume() -> None:
        books.update(run(settings, stop, kafka=kafka_settings, redis_settings=users["settings"]["dashboard"]))

    thread = threading.Thread(target=consume, name="refused-consumer", daemon=True)
    thread.start()
    try:
        eventually(lambda: _topic_exists(kafka_settings, topic), timeout=20)
        produce(kafka_settings, topic, [(encode_key("BTCUSDT"), encode(trade("BTCUSDT", 1)))])
        thread.join(30)
        assert not thread.is_alive(), "the refused consumer kept running"
    finally:
        stop.set()
        thread.join(10)
    assert books["error"].startswith("Redis refused a command to the ACL user in REDIS_URL (")
    assert "evalsha" in books["error"].lower()
    assert books.get("redis_failures", 0) == 0  # refused once, not retried
    assert _counted("prices-consumer", "redis_refused_permission") == before + 1
    failed = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in failed] == [f"prices-consumer failed: {books['error']}"]
    assert failed[0].exc_info is None


def test_the_prices_consumer_service_runs_on_its_own_user(
    users: dict[str, Any],
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
) -> None:
    """The real consumer service, Kafka to Redis, with nothing but its own ACL user."""
    topic = PRICES.with_prefix(kafka_settings.topic_prefix).name
    settings = settings_of(PricesConsumerSettings, group=f"g-{uuid.uuid4().hex[:8]}", from_beginning=True)
    stop = Stop()
    books: dict[str, Any] = {}

    def consume() -> None:
        own = users["settings"]["prices-consumer"]
        books.update(run(settings, stop, kafka=kafka_settings, redis_settings=own))

    thread = threading.Thread(target=consume, name="own-user-consumer", daemon=True)
    thread.start()
    try:
        eventually(lambda: _topic_exists(kafka_settings, topic), timeout=20)
        produce(
            kafka_settings, topic, [(encode_key("BTCUSDT"), encode(trade("BTCUSDT", i))) for i in (1, 2, 3)]
        )
        admin = PriceStore(redis_client, redis_settings.key_prefix)
        eventually(lambda: (admin.latest("BTCUSDT") or {}).get("trade_id") == 3, timeout=30)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert "error" not in books
    assert books["written"] == 3


def test_a_password_rotated_mid_run_stops_the_consumer_with_one_line_naming_the_file(
    users: dict[str, Any],
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The prices consumer runs on its own user, its password from REDIS_PASSWORD_FILE (as `up`
    starts it); an operator sets a new password (ACL SETUSER) and drops its connections (CLIENT
    KILL). Its next write logs in with the old one: one ERROR line naming REDIS_PASSWORD_FILE,
    counted, and the consumer stops."""
    user = username("prices-consumer", users["namespace"])
    url = urlsplit(users["settings"]["prices-consumer"].url.get_secret_value())
    own = settings_of(
        RedisSettings,
        url=f"redis://{user}@{url.hostname}:{url.port}/0",
        password_file=str(users["secrets"] / f"{user}.password"),
        key_prefix=redis_settings.key_prefix,
    )
    topic = PRICES.with_prefix(kafka_settings.topic_prefix).name
    settings = settings_of(PricesConsumerSettings, group=f"g-{uuid.uuid4().hex[:8]}", from_beginning=True)
    stop = Stop()
    books: dict[str, Any] = {}
    before = _counted("prices-consumer", "redis_refused_credentials")
    thread = threading.Thread(
        target=lambda: books.update(run(settings, stop, kafka=kafka_settings, redis_settings=own)),
        name="rotated-consumer",
        daemon=True,
    )
    thread.start()
    try:
        eventually(lambda: _topic_exists(kafka_settings, topic), timeout=20)
        produce(kafka_settings, topic, [(encode_key("BTCUSDT"), encode(trade("BTCUSDT", 1)))])
        admin = PriceStore(redis_client, redis_settings.key_prefix)
        eventually(lambda: (admin.latest("BTCUSDT") or {}).get("trade_id") == 1, timeout=30)
        redis_client.execute_command("ACL", "SETUSER", user, "resetpass", password_hash("rotated"))
        redis_client.execute_command("CLIENT", "KILL", "USER", user)
        produce(kafka_settings, topic, [(encode_key("BTCUSDT"), encode(trade("BTCUSDT", 2)))])
        thread.join(30)
        assert not thread.is_alive(), "the refused consumer kept running"
    finally:
        stop.set()
        thread.join(10)
    assert books["error"].startswith("Redis refused the credentials in REDIS_PASSWORD_FILE ("), books
    assert _counted("prices-consumer", "redis_refused_credentials") == before + 1
    failed = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in failed] == [f"prices-consumer failed: {books['error']}"]
    assert (users["secrets"] / f"{user}.password").read_text() not in books["error"]


def _topic_exists(settings: KafkaSettings, topic: str) -> bool:
    from confluent_kafka.admin import AdminClient

    config: dict[str, Any] = dict(settings.client_config())
    return topic in AdminClient(config).list_topics(timeout=5).topics


def _wrong_password(settings: RedisSettings) -> str:
    url = settings.url.get_secret_value()
    password = urlsplit(url).password or ""
    return url.replace(password, "not-" + password[:8])


def test_a_wrong_password_is_one_line_naming_redis_url(
    users: dict[str, Any], kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """``cryptopipe prices-consumer`` with a wrong password exits at once with one line; so does
    ``up``'s preflight. Neither shows the password."""
    wrong = _wrong_password(users["settings"]["prices-consumer"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REDIS_", "PRICES_CONSUMER_"))}
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "REDIS_URL": wrong,
        "PRICES_CONSUMER_METRICS_PORT": "0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "cryptopipe.cli", "prices-consumer"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "ERROR" in line]
    assert len(errors) == 1, output
    assert "prices-consumer failed: Redis refused the credentials in REDIS_URL (" in errors[0]
    password = urlsplit(wrong).password or ""
    assert password not in output

    with pytest.raises(ConfigError) as preflight:
        check_redis(users["settings"]["prices-consumer"].model_copy(update={"url": _secret(wrong)}))
    message = str(preflight.value)
    assert message.startswith("REDIS_URL=redis://")
    assert "refused the credentials" in message
    assert password not in message
    assert "\n" not in message


def _secret(url: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(url)


def test_the_endpoint_up_resolved_gives_each_service_its_own_redis_url(
    redis_server: RedisEndpoint, redis_settings: RedisSettings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    users = redis_server.service_users(redis_settings.key_prefix, tmp_path)
    try:
        env = service_env(users, "dashboard")
        assert urlsplit(env["REDIS_URL"]).username == "dashboard"
        assert urlsplit(env["REDIS_URL"]).password is None  # only in the owner-only file
        assert stat.S_IMODE(os.stat(env["REDIS_PASSWORD_FILE"]).st_mode) == 0o600
        assert service_env(users, "ingest") == {}
        assert service_env(None, "dashboard") == {}
        own = settings_of(RedisSettings, url=env["REDIS_URL"], password_file=env["REDIS_PASSWORD_FILE"])
        client = connect_redis(own.url.get_secret_value())
        try:
            assert PriceStore(client, redis_settings.key_prefix).symbols() == []
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.set(f"{redis_settings.key_prefix}symbols", "x")
        finally:
            client.close()
    finally:
        redis_client.acl_deluser(*SERVICES)


def test_a_service_reads_its_password_from_a_file_so_the_environment_holds_none(
    users: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Compose's way: REDIS_URL names the user, REDIS_PASSWORD_FILE is the mounted secret."""
    url = urlsplit(users["settings"]["dashboard"].url.get_secret_value())
    user = username("dashboard", users["namespace"])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", f"redis://{user}@{url.hostname}:{url.port}/0")
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(users["secrets"] / f"{user}.password"))
    settings = load_settings(RedisSettings)
    client = connect_redis(settings.url.get_secret_value())
    try:
        assert client.ping()
    finally:
        client.close()
    monkeypatch.setenv("REDIS_URL", f"redis://{user}:inline@{url.hostname}:{url.port}/0")
    with pytest.raises(ConfigError, match="REDIS_PASSWORD_FILE: needs REDIS_URL"):
        load_settings(RedisSettings)
