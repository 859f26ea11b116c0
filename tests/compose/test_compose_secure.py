"""The secured compose stack (docker-compose.secure.yml on the base, and with the replay override)
as Compose would see it, plus the secrets its generator makes: every secret is a file mounted with
compose ``secrets:``, none is in an image, an environment variable or a command line; Grafana logs
in with a password from a file and lets nobody in anonymously; Prometheus is not published; Kafka
is SASL_SSL everywhere with one principal per service; Redis has one ACL user per service, and the
generated ACL file runs on a real redis-server."""

from __future__ import annotations

import re
import stat
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from cryptopipe.infra import find_redis_server, free_port
from cryptopipe.infra.compose_secrets import KAFKA_SERVICES, REDIS_ADMIN, write
from cryptopipe.infra.redis_acl import SERVICES as REDIS_SERVICES
from cryptopipe.schemas import Trade
from cryptopipe.store import PriceSink, PriceStore, connect_redis

from .conftest import TEST_ENV
from .test_compose_services import NEEDS_KAFKA, NEEDS_REDIS

SECURE_STACKS = ("secure", "replay+secure")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)AUTH$|JAAS", re.IGNORECASE)


@pytest.fixture(scope="module", params=SECURE_STACKS)
def secure(request: pytest.FixtureRequest, stack_factory: Any) -> Any:
    return stack_factory(request.param, TEST_ENV)


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("compose") / "secrets"
    write(directory)
    return directory


def _mounted(spec: dict[str, Any]) -> set[str]:
    return {item if isinstance(item, str) else item["source"] for item in spec.get("secrets", [])}


def _texts(spec: dict[str, Any], env: dict[str, str]) -> list[str]:
    command = spec.get("command") or []
    health = (spec.get("healthcheck") or {}).get("test") or []
    parts = [command] if isinstance(command, str) else [str(part) for part in command]
    return [*parts, *map(str, health), *env.values()]


def test_no_secret_is_in_an_environment_or_a_command_line(secure: Any) -> None:
    """The base file's two required passwords are set, and neither reaches any container."""
    for name, spec in secure.services.items():
        env = secure.environment(name)
        for text in _texts(spec, env):
            assert not any(value in text for value in TEST_ENV.values()), f"{name}: a secret in {text!r}"
        for variable, value in env.items():
            if SECRET_NAME.search(variable) and value:
                assert variable.endswith("_FILE"), f"{name}: {variable} holds a value, not a file"
                assert value.startswith("/run/secrets/"), f"{name}: {variable}={value}"


def test_every_secret_is_a_declared_file_the_service_mounts(secure: Any) -> None:
    declared = secure.document["secrets"]
    for source in declared.values():
        assert source["file"].startswith("./secrets/"), source
    for name, spec in secure.services.items():
        mounted = _mounted(spec)
        assert mounted <= set(declared), f"{name} mounts undeclared secrets"
        for text in _texts(spec, secure.environment(name)):
            for used in re.findall(r"/run/secrets/([\w.-]+)", text):
                assert used in mounted, f"{name} uses {used} without mounting it"


def test_the_generator_makes_exactly_the_declared_files_owner_only(secure: Any, secrets_dir: Path) -> None:
    declared = {Path(source["file"]).name for source in secure.document["secrets"].values()}
    assert {path.name for path in secrets_dir.iterdir()} == declared
    public = {"ca.crt", "kafka-setup.sh"}
    for path in secrets_dir.iterdir():
        if path.name not in public:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    setup = (secrets_dir / "kafka-setup.sh").read_text()
    for path in secrets_dir.glob("*.password"):
        password = path.read_text().strip()
        assert password not in setup
        assert password not in (secrets_dir / "redis-users.acl").read_text()


def test_grafana_needs_a_login_whose_password_is_a_file(secure: Any) -> None:
    env = secure.environment("grafana")
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == ""
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana-admin.password"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"


def test_prometheus_is_not_published(secure: Any) -> None:
    assert secure.services["prometheus"].get("ports", []) == []


def test_redis_users_come_from_an_acl_file_and_each_service_is_its_own_user(secure: Any) -> None:
    services = secure.services
    command = [str(part) for part in services["redis"]["command"]]
    assert command[command.index("--aclfile") + 1] == "/run/secrets/redis-users.acl"
    assert "--requirepass" not in command
    assert secure.environment("redis")["REDISCLI_AUTH"] == ""
    for name in NEEDS_REDIS:
        env = secure.environment(name)
        url = urlsplit(env["REDIS_URL"])
        assert (url.username, url.password, url.hostname) == (name, None, "redis"), name
        assert env["REDIS_PASSWORD_FILE"] == f"/run/secrets/redis-{name}.password"
    for name in set(secure.ours()) - NEEDS_REDIS:
        assert "REDIS_URL" not in secure.environment(name), f"{name} needs no Redis"


def test_each_service_mounts_its_own_secrets_and_no_other(secure: Any) -> None:
    """Least privilege on disk too: a service sees its own Kafka and Redis passwords and the CA."""
    for name in NEEDS_KAFKA | NEEDS_REDIS:
        expected = {f"kafka-{name}.password", "ca.crt"} if name in NEEDS_KAFKA else set()
        if name in NEEDS_REDIS:
            expected.add(f"redis-{name}.password")
        assert _mounted(secure.services[name]) == expected, name


def test_kafka_is_sasl_ssl_everywhere_with_one_principal_per_service(secure: Any, secrets_dir: Path) -> None:
    broker = secure.environment("broker")
    protocols = dict(item.split(":") for item in broker["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(protocols.values()) == {"SASL_SSL"}
    assert broker["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert broker["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert broker["KAFKA_SUPER_USERS"] == "User:admin"
    assert set(KAFKA_SERVICES) == NEEDS_KAFKA
    jaas = (secrets_dir / "kafka-jaas.conf").read_text()
    setup = (secrets_dir / "kafka-setup.sh").read_text()
    for name in NEEDS_KAFKA:
        env = secure.environment(name)
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["KAFKA_SASL_MECHANISM"] == "PLAIN"
        assert env["KAFKA_SASL_USERNAME"] == name
        assert "KAFKA_SASL_PASSWORD" not in env  # only its file
        # SASL, not mTLS, authenticates the services here: no client certificate is handed out.
        assert not {"KAFKA_SSL_CERTIFICATE_LOCATION", "KAFKA_SSL_KEY_LOCATION"} & set(env), name
        assert env["KAFKA_SASL_PASSWORD_FILE"] == f"/run/secrets/kafka-{name}.password"
        assert env["KAFKA_SSL_CA_LOCATION"] == "/run/secrets/ca.crt"
        assert (
            secure.services[name]["depends_on"]["kafka-setup"]["condition"]
            == "service_completed_successfully"
        )
        password = (secrets_dir / f"kafka-{name}.password").read_text().strip()
        assert f'user_{name}="{password}"' in jaas
        assert f"User:{name} " in setup
    assert "--operation All" not in setup


@pytest.fixture(scope="module")
def acl_redis(secrets_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real redis-server running the generated ACL file, as the compose Redis does."""
    workdir = tmp_path_factory.mktemp("redis")
    port = free_port()
    config = workdir / "redis.conf"
    config.write_text(f'bind 127.0.0.1\nport {port}\nsave ""\naclfile "{secrets_dir / "redis-users.acl"}"\n')
    with open(workdir / "redis.log", "wb") as log:
        proc = subprocess.Popen([find_redis_server(), str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        admin = (secrets_dir / "redis-admin.password").read_text().strip()
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(port=port, username=REDIS_ADMIN, password=admin).ping()
                break
            except redis.ConnectionError:
                assert proc.poll() is None, (workdir / "redis.log").read_text()
                assert time.monotonic() < deadline, "the generated ACL file's redis-server did not answer"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_generated_acl_file_runs_on_a_real_redis(acl_redis: int, secrets_dir: Path) -> None:
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=acl_redis).ping()  # `default` is off
    clients = {
        service: connect_redis(
            f"redis://{service}:{(secrets_dir / f'redis-{service}.password').read_text().strip()}"
            f"@127.0.0.1:{acl_redis}/0"
        )
        for service in REDIS_SERVICES
    }
    try:
        assert all(client.ping() for client in clients.values())
        trade = Trade(
            symbol="BTCUSDT",
            trade_id=1,
            price=Decimal("1"),
            quantity=Decimal("1"),
            buyer_is_maker=True,
            trade_time_us=1,
            event_time_us=1,
            receive_time_us=1,
            kind="trade",
        )
        assert PriceSink(clients["prices-consumer"], key_prefix="cryptopipe:").write([trade]).written == 1
        assert PriceStore(clients["dashboard"], "cryptopipe:").symbols() == ["BTCUSDT"]
        with pytest.raises(redis.exceptions.NoPermissionError):
            PriceSink(clients["dashboard"], key_prefix="cryptopipe:").write([trade])
    finally:
        for client in clients.values():
            client.close()
