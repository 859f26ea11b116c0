"""The shared settings machinery: variable names, overrides, and error messages that name them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings

from cryptopipe.schemas import (
    SETTINGS_CONFIG,
    ConfigError,
    KafkaSettings,
    RedisSettings,
    SchemaError,
    env,
    env_names,
    format_validation_error,
    load_settings,
    redact_url,
)


class ExampleSettings(BaseSettings):
    model_config = SETTINGS_CONFIG

    port: int = Field(8000, ge=0, le=65535, validation_alias=env("EXAMPLE_PORT"))
    name: str = Field("x", min_length=1, validation_alias=env("EXAMPLE_NAME"))
    token: SecretStr = Field(SecretStr("changeme"), min_length=8, validation_alias=env("EXAMPLE_TOKEN"))
    tags: tuple[int, ...] = Field((), validation_alias=env("EXAMPLE_TAGS"))

    @model_validator(mode="after")
    def _consistent(self) -> ExampleSettings:
        if self.name == "forbidden":
            raise ValueError("EXAMPLE_NAME may not be 'forbidden'")
        return self


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("EXAMPLE_PORT", "EXAMPLE_NAME", "EXAMPLE_TOKEN", "EXAMPLE_TAGS", "REDIS_URL"):
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
    assert env_names(RedisSettings) == {"url": "REDIS_URL", "key_prefix": "REDIS_KEY_PREFIX"}


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
        ExampleSettings(name="forbidden")
    assert format_validation_error(ExampleSettings, caught.value).startswith("EXAMPLE_TAGS: item 1: ")
    monkeypatch.delenv("EXAMPLE_TAGS")
    with pytest.raises(ValidationError) as caught:
        ExampleSettings(name="forbidden")
    # The input of a class-wide check is every value, secrets included: it is not quoted.
    assert format_validation_error(ExampleSettings, caught.value) == (
        "settings: EXAMPLE_NAME may not be 'forbidden'"
    )


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
