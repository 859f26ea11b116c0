"""What the consumer loop needs from a destination: the :class:`Sink` protocol.

A sink turns record values into messages (``decode``) and writes a batch of them to Redis
(``write``). Writes must be idempotent, because the loop delivers at least once: it commits
Kafka offsets only after ``write`` returned, so a crash in between replays the batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one ``Sink.write`` did.

    ``written`` records changed Redis state (or were already there); ``stale`` records were
    older than what Redis held and left it unchanged. ``written_time_us`` is the wall clock
    right after Redis answered; ``redis_seconds`` the duration of the pipelined round trip.
    ``latencies_us`` are system-latency samples (written minus local receive time) of the live
    records written, for exact benchmark percentiles; ``e2e_latencies_us`` (written minus trade
    time), when given, are the same records' E2E latencies, index for index.
    """

    written: int
    stale: int = 0
    written_time_us: int = 0
    redis_seconds: float = 0.0
    latencies_us: Sequence[int] = ()
    e2e_latencies_us: Sequence[int] = ()


class Sink(Protocol[T]):
    """A Redis destination the :class:`~cryptopipe.store.loop.ConsumerLoop` writes to.

    ``name`` labels metrics (``consumer="prices"``). ``decode`` raises
    :class:`cryptopipe.schemas.DecodeError` for a bad record (the loop dead-letters it);
    ``write`` raises :class:`redis.RedisError` when Redis is unavailable (the loop retries the
    same batch without committing).
    """

    name: str

    def decode(self, value: bytes) -> T: ...

    def write(self, batch: list[T]) -> WriteResult: ...


class LuaScript:
    """A Lua script run with EVALSHA inside a pipeline, loaded on demand.

    redis-py's own ``Script`` checks ``SCRIPT EXISTS`` before every pipeline, one extra round
    trip per batch; this one sends EVALSHA blind and, on NOSCRIPT (first use, or Redis
    restarted and lost its script cache), loads the script and lets the caller re-run the
    whole pipeline, which is safe because every script here is idempotent.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    def queue(self, pipe: Any, keys: Sequence[str], args: Sequence[Any]) -> None:
        pipe.evalsha(self.sha, len(keys), *keys, *args)


def execute_with_scripts(client: redis.Redis, pipe: Any, scripts: Sequence[LuaScript]) -> list[Any]:
    """Execute ``pipe``; if a script was missing, load ``scripts`` and execute the same commands again."""
    stack = list(pipe.command_stack)
    results: list[Any] = pipe.execute(raise_on_error=False)
    if any(isinstance(r, redis.exceptions.NoScriptError) for r in results):
        for script in scripts:
            client.script_load(script.source)
        pipe.command_stack = stack
        results = pipe.execute(raise_on_error=False)
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def connect_redis(url: str, *, socket_timeout: float = 5.0) -> redis.Redis:
    """A client for the store: bounded timeouts, no hidden retries (the loop owns retrying).

    One immediate retry stays, so a pooled connection that Redis closed while idle (restart,
    timeout) is replaced without surfacing an error.
    """
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=min(socket_timeout, 2.0),
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


def refused(exc: redis.RedisError) -> str | None:
    """Why Redis refused outright, for an error no retry can fix: "credentials" (a wrong user or
    password), "permission" (a command or key outside the ACL user's rules), else None."""
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.AuthenticationWrongNumberOfArgsError):
        return "credentials"
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return "permission"
    if isinstance(exc, redis.ResponseError) and "user executing the script can't" in str(exc):
        return "permission"  # a command or key inside a Lua script, refused by the caller's ACL
    return None


def delete_prefixed(client: redis.Redis, key_prefix: str) -> None:
    """Delete every key that starts with ``key_prefix`` (a run's or a benchmark's scratch keys)."""
    keys = list(client.scan_iter(match=key_prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
