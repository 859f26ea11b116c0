"""Redis ACL users, one per service, each allowed only the commands it runs on the keys it owns.

:data:`ACCESS` is the one table. Key patterns are relative to ``RedisSettings.key_prefix`` (the
layout lives in ``cryptopipe.store``: ``prices.py``, ``alerts.py``, ``book_store.py``). Commands a
Lua script runs through ``redis.call`` are checked against the caller's ACL too, so they are listed.

- ``prices-consumer``: keys ``price:*``, ``history:*``, ``symbols``; EVALSHA and SCRIPT LOAD,
  and in its script HMGET, ZADD, HSET, ZREMRANGEBYRANK, SADD, TIME.
- ``books-consumer``: keys ``book:*``, ``book-symbols``; EVALSHA, SCRIPT LOAD, HMGET, HSET, SADD, TIME.
- ``alerts-consumer``: keys ``alerts``, ``alert-seen:*``; EVALSHA, SCRIPT LOAD, SET, LPUSH, LTRIM.
- ``dashboard``: the price, book and alert-feed keys (not the alert markers); HGETALL, ZRANGE,
  ZCARD, SMEMBERS, LRANGE. Nothing that writes.

Every user may also PING (redis-py's health check). No user gets ``+@all``, KEYS, FLUSHALL,
CONFIG or any other command. The dashboard user is the reader for people too: ``cryptopipe book``,
the fault runs' reconciliation and the run's summary read only what it may read. Benches and
test clean-up (SET/DEL on scratch keys, SCAN) use the admin user, Redis' ``default``, which keeps
``+@all`` and a random password.

Use on any Redis where you hold admin rights::

    users = create_service_users(admin_settings, secrets_dir)   # ACL SETUSER, then ACL SAVE
    env |= service_env(users, "prices-consumer")    # REDIS_URL naming its user, REDIS_PASSWORD_FILE

(``RedisEndpoint.service_users(key_prefix, secrets_dir)`` does the first line for whatever
``resolve_redis`` found: a local server keeps the passwords in its own directory.)

Each password is random, written to ``secrets_dir/<user>.password`` (mode 0600) and sent to
Redis only as its SHA-256 (``#<hash>``), so neither the command log nor ``ACL LIST`` shows it.
:func:`acl_file` renders the same users as an ACL file (compose mounts one as a secret);
:func:`users_from_file` reads users someone else made (``REDIS_USERS_FILE``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import redis
from pydantic import SecretStr

from cryptopipe.runtime import write_private
from cryptopipe.schemas import ConfigError, RedisSettings, settings_of

#: Run by every user: redis-py's health check. (redis-py's CLIENT SETINFO on connect is left out:
#: Redis < 7.2 rejects the rule, and redis-py ignores the refusal.)
CLIENT_COMMANDS = ("ping",)
#: Run by every writer: its Lua script by hash, loaded on NOSCRIPT (first use, Redis restarted).
SCRIPT_COMMANDS = ("evalsha", "script|load")


@dataclass(frozen=True)
class RedisAccess:
    """What one service may do: ``commands`` on keys matching ``keys`` (each after the prefix)."""

    commands: tuple[str, ...]
    keys: tuple[str, ...]

    def rules(self, key_prefix: str) -> list[str]:
        """The ACL rules: ``~pattern`` per key pattern (prefixed), ``+command`` per command."""
        prefix = glob_escape(key_prefix)
        return [
            *(f"~{prefix}{pattern}" for pattern in self.keys),
            *(f"+{command}" for command in (*CLIENT_COMMANDS, *self.commands)),
        ]


PRICE_KEYS = ("price:*", "history:*", "symbols")
BOOK_KEYS = ("book:*", "book-symbols")
ALERT_FEED_KEYS = ("alerts",)

ACCESS: Mapping[str, RedisAccess] = {
    "prices-consumer": RedisAccess(
        (*SCRIPT_COMMANDS, "hmget", "zadd", "hset", "zremrangebyrank", "sadd", "time"), PRICE_KEYS
    ),
    "books-consumer": RedisAccess((*SCRIPT_COMMANDS, "hmget", "hset", "sadd", "time"), BOOK_KEYS),
    "alerts-consumer": RedisAccess(
        (*SCRIPT_COMMANDS, "set", "lpush", "ltrim"), (*ALERT_FEED_KEYS, "alert-seen:*")
    ),
    "dashboard": RedisAccess(
        ("hgetall", "zrange", "zcard", "smembers", "lrange"), (*PRICE_KEYS, *BOOK_KEYS, *ALERT_FEED_KEYS)
    ),
}
SERVICES = tuple(ACCESS)


def glob_escape(text: str) -> str:
    """``text`` with Redis' glob characters escaped, so a key prefix matches only itself."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def password_hash(password: str) -> str:
    """The ``#<sha256 hex>`` form Redis accepts in ``ACL SETUSER`` and ACL files."""
    return "#" + hashlib.sha256(password.encode("utf-8")).hexdigest()


def user_rules(service: str, key_prefix: str, password: str) -> list[str]:
    """``ACL SETUSER <user>`` arguments for ``service``: reset, on, its password's hash, its rules."""
    return ["reset", "on", password_hash(password), "resetchannels", *ACCESS[service].rules(key_prefix)]


def admin_rules(password: str) -> list[str]:
    """The admin (``default``) user: everything, behind a password."""
    return ["reset", "on", password_hash(password), "~*", "allchannels", "+@all"]


def acl_file(passwords: Mapping[str, str], key_prefix: str, *, admin_password: str | None) -> str:
    """An ACL file: ``default`` (admin with ``admin_password``, or off) and each service's user."""
    default = admin_rules(admin_password) if admin_password else ["reset"]
    lines = [f"user default {' '.join(default)}"]
    lines += [
        f"user {username(service)} {' '.join(user_rules(service, key_prefix, password))}"
        for service, password in passwords.items()
    ]
    return "\n".join(lines) + "\n"


def username(service: str, namespace: str = "") -> str:
    """The ACL user name of ``service`` (``namespace`` keeps several runs on one Redis apart)."""
    if service not in ACCESS:
        raise KeyError(f"no Redis user for {service!r}; services: {', '.join(SERVICES)}")
    return f"{namespace}{service}"


def url_for_user(url: str, user: str, password: str | None) -> str:
    """``url`` (``redis://``/``rediss://``, query kept) with ``user:password`` as its user info
    (only ``user`` when ``password`` is None: the password then comes from REDIS_PASSWORD_FILE)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    secret = "" if password is None else f":{quote(password, safe='')}"
    netloc = f"{quote(user, safe='')}{secret}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def create_service_users(
    admin: RedisSettings,
    secrets_dir: Path,
    *,
    services: tuple[str, ...] = SERVICES,
    namespace: str = "",
) -> dict[str, RedisSettings]:
    """Create (or reset) each service's ACL user on the Redis ``admin`` points at, with a fresh
    random password; its settings (same Redis, same key prefix, its own user) by service name.

    ``admin.url`` must carry a user allowed ``ACL SETUSER``. Each password goes to
    ``secrets_dir/<user>.password`` (0600). When the server has an ACL file (a local
    :class:`~cryptopipe.infra.redis_server.RedisServer` does) the users are saved to it, so a
    restart keeps them. Raises :class:`redis.RedisError` when Redis refuses.
    """
    admin_url = admin.url.get_secret_value()
    out: dict[str, RedisSettings] = {}
    client = redis.Redis.from_url(admin_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        for service in services:
            user = username(service, namespace)
            password = secrets.token_urlsafe(24)
            rules = user_rules(service, admin.key_prefix, password)
            client.execute_command("ACL", "SETUSER", user, *rules)  # type: ignore[no-untyped-call]
            path = write_private(secrets_dir / f"{user}.password", password)
            url = SecretStr(url_for_user(admin_url, user, password))
            out[service] = admin.model_copy(update={"url": url, "password_file": str(path)})
        _save_acl(client)
    finally:
        client.close()
    return out


def service_env(users: Mapping[str, RedisSettings] | None, component: str) -> dict[str, str]:
    """The Redis variables of one service process: ``REDIS_URL`` naming its own user (no password)
    and ``REDIS_PASSWORD_FILE``, when ``users`` (from :func:`create_service_users` or
    :func:`users_from_file`) has one for ``component``; nothing otherwise, so the run's own
    settings stand (a process that never talks to Redis should not be given them)."""
    settings = (users or {}).get(component)
    if settings is None:
        return {}
    if not settings.password_file:
        raise ValueError(f"the Redis user of {component} has no password file")
    url = urlsplit(settings.url.get_secret_value())
    user = unquote(url.username or "")
    return {
        "REDIS_URL": url_for_user(settings.url.get_secret_value(), user, None),
        "REDIS_PASSWORD_FILE": settings.password_file,
    }


def users_from_file(path: str, base: RedisSettings) -> dict[str, RedisSettings]:
    """The service users a ``REDIS_USERS_FILE`` names, on the Redis of ``base`` (its URL, any
    user or password in it replaced): each service's settings by name.

    The file is JSON, ``{"users": {"prices-consumer": {"username": "...", "password_file":
    "..."}, ...}}``, the Redis twin of ``KAFKA_PRINCIPALS_FILE``: it names files, never a
    password. Raises :class:`ConfigError` naming REDIS_USERS_FILE for a file that does not read,
    an unknown service, or a password file that cannot be read.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            entries = json.load(handle)["users"]
        users = {str(k): (str(v["username"]), str(v["password_file"])) for k, v in entries.items()}
    except OSError as exc:
        raise ConfigError(f"REDIS_USERS_FILE: cannot read {path} ({exc.strerror or exc})") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f'REDIS_USERS_FILE: {path} is not {{"users": {{service: {{username, password_file}}}}}} ({exc})'
        ) from None
    unknown = sorted(set(users) - set(SERVICES))
    if unknown:
        raise ConfigError(
            f"REDIS_USERS_FILE: no such service {', '.join(unknown)}; services: {', '.join(SERVICES)}"
        )
    url = base.url.get_secret_value()
    out: dict[str, RedisSettings] = {}
    for service, (user, password_file) in users.items():
        try:
            out[service] = settings_of(
                RedisSettings,
                url=url_for_user(url, user, None),
                password_file=password_file,
                key_prefix=base.key_prefix,
                users_file="",
            )
        except ConfigError as exc:
            raise ConfigError(f"REDIS_USERS_FILE: user {user} of {service}: {exc}") from None
    return out


def _save_acl(client: redis.Redis) -> None:
    """``ACL SAVE`` when the server has an ACL file; nothing when it has none (a configured Redis)."""
    try:
        client.acl_save()
    except redis.ResponseError as exc:
        if "aclfile" not in str(exc).lower() and "acl file" not in str(exc).lower():
            raise
