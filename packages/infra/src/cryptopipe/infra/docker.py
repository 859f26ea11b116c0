"""A quick, bounded check for a Docker engine (testcontainers needs one)."""

from __future__ import annotations

import logging
import os
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

_DEFAULT_SOCKET = Path("/var/run/docker.sock")


@cache
def docker_available(timeout: float = 2.0) -> bool:
    """Whether a Docker engine answers a ping within ``timeout`` seconds (cached per process).

    Without ``DOCKER_HOST`` and without the default socket this answers False at once, without
    importing the docker client.
    """
    if not os.environ.get("DOCKER_HOST") and not _DEFAULT_SOCKET.exists():
        log.debug("no DOCKER_HOST and no %s: no Docker engine", _DEFAULT_SOCKET)
        return False
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        log.debug("docker client library not installed")
        return False
    try:
        client = docker.from_env(timeout=max(1, round(timeout)))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (DockerException, OSError) as exc:
        log.debug("Docker engine did not answer: %s", exc)
        return False
