"""The shared settings machinery: variable names, overrides, and error messages that name them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings

from cryptopipe.schemas import (
    SETTINGS_CONFIG,
    ConfigError,
    KafkaSettings,
    RedisSettings,
    SchemaError,
    env_names,
    format_validation_error,
    load_settings,
    redact_url,
    setting,
    settings_of,
)


class ExampleSettings(BaseSettings):
    model_config = SETTINGS_CONFIG

    port: int = setting("EXAMPLE_PORT", 8000, ge=0, le=65535)
    """The port.

    On two lines."""
    name: str = setting("EXAMPLE_NAME", "x", min_length=1)
    token: SecretStr = setting("EXAMPLE_TOKEN", SecretStr("changeme"), min_length=8)
    tags: tuple[int, ...] = setting("EXAMPLE_TAGS", ())

    @model_validator(mode="after")
    def _consistent(self) -> ExampleSettings:
        if self.name == "forbidden":
            raise ValueError("EXAMPLE_NAME may not be 'forbidden'")
        return self


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "EXAMPLE_PORT",
        "EXAMPLE_NAME",
        "EXAMPLE_TOKEN",
        "EXAMPLE_TAGS",
        "EXAMPLE_PATH",
        "REDIS_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env file here


def test_env_names_map_fields_to_variables_in_order() -> None:
    assert env_names(ExampleSettings) == {
        "port": "EXAMPLE_PORT",
        "name": "EXAMPLE_NAME",
        "token": "EXAMPLE_TOKEN",
        "tags": "EXAMPLE_TAGS",
    }
    assert env_names(KafkaSettings)["bootstrap_servers"] == "KAFKA_BOOTSTRAP_SERVERS"
    assert env_names(RedisSettings) == {
        "url": "REDIS_URL",
        "key_prefix": "REDIS_KEY_PREFIX",
        "password_file": "REDIS_PASSWORD_FILE",
        "users_file": "REDIS_USERS_FILE",
        "local_tls": "REDIS_LOCAL_TLS",
    }


def test_overrides_beat_the_environment_and_none_means_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_PORT", "9000")
    monkeypatch.setenv("EXAMPLE_NAME", "from-env")
    settings = load_settings(ExampleSettings, port=None, name="flag")
    assert (settings.port, settings.name) == (9000, "flag")
    assert isinstance(settings, ExampleSettings)
    with pytest.raises(ValidationError, match="frozen"):
        settings.port = 1  # type: ignore[misc]


def test_errors_name_the_variable_whether_from_env_or_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_PORT", "lots")
    with pytest.raises(ConfigError) as caught:
        load_settings(ExampleSettings, name="")
    assert isinstance(caught.value, SchemaError)
    message = str(caught.value)
    assert message.startswith("invalid example settings:\n  ")
    assert caught.value.problems == (
        "EXAMPLE_PORT: Input should be a valid integer, unable to parse string as an integer (got 'lots')",
        "EXAMPLE_NAME: String should have at least 1 character (got '')",
    )
    assert all(problem in message for problem in caught.value.problems)


def test_a_secret_value_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_TOKEN", "hunter2")
    with pytest.raises(ConfigError) as caught:
        load_settings(ExampleSettings)
    assert "EXAMPLE_TOKEN" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    monkeypatch.setenv("REDIS_URL", "http://:hunter2@example")
    with pytest.raises(ConfigError) as caught:
        load_settings(RedisSettings)
    assert "REDIS_URL" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_item_and_class_wide_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_TAGS", '[1, "two"]')
    with pytest.raises(ValidationError) as caught:
        settings_of(ExampleSettings, name="forbidden")
    assert format_validation_error(ExampleSettings, caught.value).startswith("EXAMPLE_TAGS: item 1: ")
    monkeypatch.delenv("EXAMPLE_TAGS")
    with pytest.raises(ValidationError) as caught:
        settings_of(ExampleSettings, name="forbidden")
    # The input of a class-wide check is every value, secrets included: it is not quoted.
    assert format_validation_error(ExampleSettings, caught.value) == (
        "settings: EXAMPLE_NAME may not be 'forbidden'"
    )


class PathSettings(BaseSettings):
    """A field named like a variable that is always set ($PATH), one required, one from a factory."""

    model_config = SETTINGS_CONFIG

    path: str = setting("EXAMPLE_PATH", "default")
    """Where."""
    needed: int = setting("EXAMPLE_NEEDED")
    extra: dict[str, str] = setting("EXAMPLE_EXTRA", default_factory=dict)


def test_a_field_is_read_from_its_own_variable_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never from a variable named like the field: not $PORT for ``port``, nor $PATH for ``path``."""
    for variable, value in {
        "PORT": "1234",
        "NAME": "from-name",
        "TOKEN": "from-the-name-variable",
        "PATH": "/usr/bin:/bin",
        "NEEDED": "7",
        "URL": "redis://wrong:1/0",
        "TOPIC_PREFIX": "wrong.",
        "BOOTSTRAP_SERVERS": "wrong:9092",
    }.items():
        monkeypatch.setenv(variable, value)
    Path(".env").write_text("port=4321\nEXAMPLE_NAME=from-dotenv\n")  # the cwd is tmp_path
    settings = load_settings(ExampleSettings)
    assert (settings.port, settings.name, settings.token.get_secret_value()) == (
        8000,
        "from-dotenv",
        "changeme",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(PathSettings)  # $NEEDED does not stand in for EXAMPLE_NEEDED
    assert caught.value.problems == ("EXAMPLE_NEEDED: Field required",)
    monkeypatch.setenv("EXAMPLE_NEEDED", "3")
    assert (load_settings(PathSettings).path, load_settings(PathSettings).needed) == ("default", 3)
    redis, kafka = load_settings(RedisSettings), load_settings(KafkaSettings)
    assert (redis.url.get_secret_value(), kafka.topic_prefix, kafka.bootstrap_servers) == ("", "", "")


def test_keyword_arguments_by_field_name_are_passed_under_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXAMPLE_NEEDED", "1")
    monkeypatch.setenv("EXAMPLE_PORT", "9000")
    assert settings_of(PathSettings, path="/x", needed=2).path == "/x"
    assert settings_of(PathSettings, needed=2).needed == 2
    assert load_settings(PathSettings, path="/y", needed=None).needed == 1
    assert load_settings(ExampleSettings, port=9001).port == 9001
    assert settings_of(ExampleSettings).port == 9000
    assert settings_of(ExampleSettings, _env_file=None).port == 9000  # BaseSettings' own options pass
    assert settings_of(PathSettings, extra={"a": "1"}).extra == {"a": "1"}
    with pytest.raises(ValidationError):
        settings_of(ExampleSettings, port=None)  # settings_of passes None on, load_settings drops it
    with pytest.raises(TypeError, match="no field 'prot'"):
        load_settings(ExampleSettings, prot=1)
    with pytest.raises(TypeError, match="no field 'EXAMPLE_PORT'"):
        settings_of(ExampleSettings, EXAMPLE_PORT=1)


def test_descriptions_come_from_attribute_docstrings() -> None:
    fields: dict[str, Any] = {**ExampleSettings.model_fields, **PathSettings.model_fields}
    assert fields["port"].description == "The port.\n\nOn two lines."
    assert fields["path"].description == "Where."
    assert fields["name"].description is None
    assert fields["needed"].is_required()
    assert PathSettings.model_fields["extra"].default_factory is dict
    assert KafkaSettings.model_fields["topic_prefix"].description == "Prefix for every topic name."
    assert env_names(PathSettings) == {
        "path": "EXAMPLE_PATH",
        "needed": "EXAMPLE_NEEDED",
        "extra": "EXAMPLE_EXTRA",
    }


def test_long_values_are_shortened(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_PORT", "9" * 500)
    with pytest.raises(ConfigError) as caught:
        load_settings(ExampleSettings)
    (problem,) = caught.value.problems
    assert problem.startswith("EXAMPLE_PORT: ")
    assert problem.endswith("...)")
    assert len(problem) < 200


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@localhost:6379/0", "redis://localhost:6379/0"),
        ("rediss://user:pw@example.com:6380/2", "rediss://example.com:6380/2"),
        ("http://admin:pw@127.0.0.1:9090", "http://127.0.0.1:9090"),
        ("http://127.0.0.1:9101/metrics?token=x", "http://127.0.0.1:9101/metrics"),
        ("redis://:pw@[::1]:6379/0", "redis://[::1]:6379/0"),
        ("redis://:pw@localhost:notaport/0", "<unparsable URL>"),
    ],
)
def test_redact_url_drops_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown
