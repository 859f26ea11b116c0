"""A local Prometheus server for the embedded mode: where its binary is, and the process itself.

Its configuration and rules come from ``cryptopipe.observability.prometheus`` (generated from the
metrics catalogue); this module only writes them to a directory and runs ``prometheus`` on it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from cryptopipe.infra.errors import ServerStartError
from cryptopipe.infra.process import LocalServer, start_on_free_port
from cryptopipe.observability.prometheus import (
    AlertBounds,
    PrometheusError,
    duration,
    instant_query,
    write_config_dir,
)

log = logging.getLogger(__name__)


def resolve_prometheus_binary() -> str | None:
    """Path of ``prometheus`` on PATH (``apt-get install prometheus``), or None when absent."""
    path = shutil.which("prometheus")
    log.debug("prometheus binary: %s", path or "not found")
    return path


def _ready(url: str) -> Callable[[LocalServer], bool]:
    def probe(_server: LocalServer) -> bool:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1.0) as response:
                return int(response.status) == 200
        except OSError:
            return False

    return probe


def start_prometheus(
    config_path: Path,
    port: int = 0,
    data_dir: Path | None = None,
    *,
    retention: str = "1d",
    retention_size: str = "512MB",
    ready_timeout: float = 30.0,
) -> PrometheusServer:
    """Start ``prometheus`` on 127.0.0.1 and wait until ``/-/ready`` answers 200.

    ``port=0`` picks a free port (retrying if another process takes it first); ``data_dir``
    defaults to a directory inside the server's private temp dir (removed on stop). Raises
    :class:`PrometheusError` when no binary is installed (``apt-get install prometheus``).
    """
    binary = resolve_prometheus_binary()
    if binary is None:
        raise PrometheusError(
            "no prometheus binary on PATH; install it (Debian/Ubuntu: apt-get install prometheus)"
        )
    try:
        server = start_on_free_port(
            lambda chosen: PrometheusServer(
                binary, Path(config_path), chosen, data_dir, (retention, retention_size), ready_timeout
            ),
            port,
            what="prometheus",
        )
    except ServerStartError as exc:
        raise PrometheusError(f"prometheus did not start: {exc}") from exc
    log.info("prometheus on %s (pid %s)", server.url, server.pid)
    return server


class PrometheusServer(LocalServer):
    """A Prometheus child process bound to loopback (an infra ``LocalServer``)."""

    def __init__(
        self,
        binary: str,
        config_path: Path,
        port: int,
        data_dir: Path | None,
        retention: tuple[str, str],
        ready_timeout: float,
    ) -> None:
        """``retention`` is (time, size): samples older than the time go, and the oldest blocks go
        once the TSDB holds more than the size."""
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.config_path = config_path
        argv = [
            binary,
            f"--config.file={config_path}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={data_dir if data_dir is not None else '{workdir}/data'}",
            f"--storage.tsdb.retention.time={duration(retention[0], 'retention')}",
            f"--storage.tsdb.retention.size={retention[1]}",
            "--web.enable-lifecycle",
        ]
        super().__init__("prometheus", argv, ready=_ready(self.url), ready_timeout=ready_timeout)

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        return instant_query(self.url, expr)

    def reload(self) -> None:
        """Re-read the config file (after the orchestrator rewrote it with new targets)."""
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            if int(response.status) != 200:
                raise PrometheusError(f"reload failed: HTTP {response.status}")


def start_embedded_prometheus(
    targets: Mapping[str, Sequence[str]],
    *,
    port: int = 0,
    directory: Path | None = None,
    scrape_interval: str = "2s",
    bounds: AlertBounds | None = None,
    retention: str = "1d",
    retention_size: str = "512MB",
) -> PrometheusServer | None:
    """What ``cryptopipe up`` calls: config + rules from ``targets``, then Prometheus, if installed.

    Returns None (and logs how to get it) when no ``prometheus`` binary exists; the pipeline runs
    without it. ``directory`` defaults to a fresh temp dir holding config, rules and the TSDB.
    """
    if resolve_prometheus_binary() is None:
        log.info("prometheus not installed (apt-get install prometheus); running without it")
        return None
    base = directory or Path(tempfile.mkdtemp(prefix="cryptopipe-prometheus-"))
    config = write_config_dir(base, targets, scrape_interval, bounds)
    return start_prometheus(config, port, base / "data", retention=retention, retention_size=retention_size)
