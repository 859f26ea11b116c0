"""One /metrics endpoint per service."""

from __future__ import annotations

import logging
from importlib import metadata

from prometheus_client import start_http_server

from cryptopipe.observability.metrics import BUILD_INFO

logger = logging.getLogger(__name__)


def serve_metrics(component: str, port: int, host: str = "127.0.0.1") -> int:
    """Expose the default registry on ``http://host:port/metrics``; returns the bound port.

    Port 0 picks a free port. Binds loopback unless told otherwise.
    """
    try:
        version = metadata.version(f"cryptopipe-{component.split('-')[0]}")
    except metadata.PackageNotFoundError:
        version = "unknown"
    BUILD_INFO.labels(component=component, version=version).set(1)
    server, _thread = start_http_server(port, addr=host)
    bound = int(server.server_address[1])
    logger.info("metrics for %s on http://%s:%d/metrics", component, host, bound)
    return bound
