"""One /metrics endpoint per service."""

from __future__ import annotations

import logging
from importlib import metadata

from prometheus_client import start_http_server

from cryptopipe.observability.metrics import BUILD_INFO, SYMBOL_LABELS

logger = logging.getLogger(__name__)

#: Components whose distribution is not simply ``cryptopipe-<component>``.
_PACKAGE_OF = {
    "prices-consumer": "cryptopipe-store",
    "alerts-consumer": "cryptopipe-store",
    "skew-monitor": "cryptopipe-skew",
    "orchestrator": "cryptopipe-cli",
}


def serve_metrics(component: str, port: int, host: str = "127.0.0.1", *, monitor_process: bool = True) -> int:
    """Expose the default registry on ``http://host:port/metrics``; returns the bound port.

    Port 0 picks a free port. Binds loopback unless told otherwise. Unless ``monitor_process`` is
    false, the process's own CPU, memory, disk and network use are exported too (as ``component``),
    so every service that has an endpoint reports its resources without further code. How many
    symbols it labelled and folded (``cryptopipe_metrics_symbols``) is exported in any case.
    """
    try:
        version = metadata.version(_PACKAGE_OF.get(component, f"cryptopipe-{component}"))
    except metadata.PackageNotFoundError:
        version = "unknown"
    BUILD_INFO.labels(component=component, version=version).set(1)
    SYMBOL_LABELS.export(component)
    server, _thread = start_http_server(port, addr=host)
    bound = int(server.server_address[1])
    if monitor_process:
        from cryptopipe.observability.process import monitor_self

        monitor_self(component)
    logger.info("metrics for %s on http://%s:%d/metrics", component, host, bound)
    return bound
