"""Which Redis user each service of a run gets (no server needed: nothing here connects)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from cryptopipe.infra import RedisEndpoint
from cryptopipe.infra.redis_acl import service_env
from cryptopipe.infra.redis_server import KIND_CONFIGURED
from cryptopipe.pipeline.redis_users import redis_users
from cryptopipe.runtime import write_private
from cryptopipe.schemas import ConfigError, RedisSettings, settings_of

ADMIN = "rediss://:admin-secret@redis.example:6380/0?ssl_ca_certs="


def _configured(tmp_path: Path, **values: str) -> tuple[RedisEndpoint, RedisSettings]:
    ca = tmp_path / "ca.crt"
    ca.write_text("-")
    settings = settings_of(RedisSettings, url=SecretStr(ADMIN + str(ca)), key_prefix="run:", **values)
    return RedisEndpoint(settings.url, KIND_CONFIGURED, settings), settings


def test_a_configured_redis_without_a_users_file_keeps_redis_url_for_every_service(tmp_path: Path) -> None:
    endpoint, settings = _configured(tmp_path)
    assert redis_users(endpoint, settings, tmp_path / "secrets") is None
    assert service_env(None, "prices-consumer") == {}


def test_a_users_file_gives_each_service_its_user_and_password_file_never_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[RedisSettings] = []  # each user logs in before any service starts
    monkeypatch.setattr("cryptopipe.pipeline.redis_users.check_redis", checked.append)
    entries = {}
    for service in ("prices-consumer", "dashboard"):
        path = write_private(tmp_path / f"{service}.password", f"pw-of-{service}\n")
        entries[service] = {"username": f"cp-{service}", "password_file": str(path)}
    users_file = tmp_path / "users.json"
    users_file.write_text(json.dumps({"users": entries}))
    endpoint, settings = _configured(tmp_path, users_file=str(users_file))

    users = redis_users(endpoint, settings, tmp_path / "secrets")

    assert users is not None
    assert set(users) == {"prices-consumer", "dashboard"}
    assert checked == list(users.values())
    env = service_env(users, "prices-consumer")
    url = urlsplit(env["REDIS_URL"])
    assert (url.scheme, url.username, url.password, url.hostname, url.port) == (
        "rediss",
        "cp-prices-consumer",
        None,
        "redis.example",
        6380,
    )
    assert url.query == urlsplit(ADMIN).query + str(tmp_path / "ca.crt")  # its CA goes with it
    assert env["REDIS_PASSWORD_FILE"] == entries["prices-consumer"]["password_file"]
    assert "pw-of" not in json.dumps(env)
    assert "admin-secret" not in json.dumps(env)
    # What the service makes of the two variables: its own user, its password from the file.
    own = settings_of(RedisSettings, url=env["REDIS_URL"], password_file=env["REDIS_PASSWORD_FILE"])
    assert urlsplit(own.url.get_secret_value()).password == "pw-of-prices-consumer"
    assert users["dashboard"].key_prefix == "run:"
    assert service_env(users, "books-consumer") == {}  # not in the file: REDIS_URL as given


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"ingest": {"username": "x", "password_file": "/nonexistent"}}, "no such service ingest"),
        ({"dashboard": {"username": "x", "password_file": "/nonexistent"}}, "user x of dashboard"),
        ({"dashboard": {"username": "x"}}, "is not"),
    ],
)
def test_a_wrong_users_file_is_one_line_naming_redis_users_file(
    tmp_path: Path, entries: dict[str, object], message: str
) -> None:
    users_file = tmp_path / "users.json"
    users_file.write_text(json.dumps({"users": entries}))
    endpoint, settings = _configured(tmp_path, users_file=str(users_file))
    with pytest.raises(ConfigError) as refused:
        redis_users(endpoint, settings, tmp_path)
    text = str(refused.value)
    assert text.startswith("REDIS_USERS_FILE: "), text
    assert message in text
    assert "\n" not in text
    assert "admin-secret" not in text
