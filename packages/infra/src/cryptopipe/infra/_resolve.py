"""The candidate loop shared by ``resolve_kafka`` and ``resolve_redis``."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from cryptopipe.infra.errors import START_ERRORS, ResolutionError

log = logging.getLogger("cryptopipe.infra")

E = TypeVar("E")


def first_available(
    server: str,
    what: str,
    order: Sequence[str],
    starters: Mapping[str, Callable[[Any, contextlib.ExitStack], E]],
    settings: Any,
    stack: contextlib.ExitStack,
    *,
    quiet_docker: bool,
) -> E:
    """The first candidate in ``order`` that starts; ResolutionError listing why each failed.

    ``quiet_docker``: a missing Docker engine is expected when nothing was forced, so it is
    logged at DEBUG rather than WARNING.
    """
    attempts: list[str] = []
    for candidate in order:
        started = time.monotonic()
        try:
            endpoint = starters[candidate](settings, stack)
        except START_ERRORS as exc:
            attempts.append(f"{candidate}: {exc}")
            level = logging.DEBUG if candidate == "docker" and quiet_docker else logging.WARNING
            log.log(level, "%s: %s unavailable: %s", server, candidate, exc)
            continue
        log.info("%s: using %s (ready in %.2f s)", server, endpoint, time.monotonic() - started)
        return endpoint
    raise ResolutionError(what, attempts)
