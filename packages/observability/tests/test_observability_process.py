"""ProcessMonitor against real processes: counters rise with real work, never fall."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from prometheus_client import REGISTRY

from cryptopipe.infra.testing import eventually
from cryptopipe.observability import _sockdiag
from cryptopipe.observability.process import HOST, ProcessMonitor, monitor_self

CPU = "cryptopipe_process_cpu_seconds_total"
RSS = "cryptopipe_process_resident_memory_bytes"
COUNT = "cryptopipe_process_count"
WRITE = "cryptopipe_process_disk_write_bytes_total"
RECEIVED = "cryptopipe_process_network_receive_bytes_total"
SENT = "cryptopipe_process_network_transmit_bytes_total"


def value(name: str, component: str) -> float:
    return REGISTRY.get_sample_value(name, {"component": component}) or 0.0


def unique(prefix: str) -> str:
    return f"test-{prefix}-{uuid.uuid4().hex[:8]}"


def python(code: str, **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], **kwargs)  # type: ignore[call-overload, no-any-return]


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()
        if process.stdin is not None:
            process.stdin.close()


def test_busy_child_raises_cpu_and_tree_is_aggregated(processes: list[subprocess.Popen[bytes]]) -> None:
    # The root only waits; all CPU is burnt by its child, as with the Spark driver's JVM.
    root = python(
        """
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        sys.stdin.read()
        child.kill()
        """,
        stdin=subprocess.PIPE,
    )
    processes.append(root)
    component = unique("busy")
    monitor = ProcessMonitor({component: root.pid})

    def both_running() -> bool:
        monitor.sample()
        return value(COUNT, component) == 2

    eventually(both_running, message="child never appeared")
    first = value(CPU, component)
    assert value(RSS, component) > 0
    readings = [first]

    def risen() -> bool:
        monitor.sample()
        readings.append(value(CPU, component))
        return readings[-1] > first + 0.05

    eventually(risen, timeout=30, message="CPU of the busy child was not counted")
    assert readings == sorted(readings), "a CPU counter went down"

    assert root.stdin is not None
    root.stdin.close()
    root.wait()
    before = value(CPU, component)
    monitor.sample()
    assert value(COUNT, component) == 0
    assert value(RSS, component) == 0
    assert value(CPU, component) >= before


def _on_storage(path: Path) -> bool:
    """Whether writes under ``path`` reach a block device (not tmpfs, where write_bytes stays 0)."""
    resolved = str(path.resolve())
    mounts = [p for p in psutil.disk_partitions(all=True) if resolved.startswith(p.mountpoint)]
    if not mounts:
        return True
    return max(mounts, key=lambda p: len(p.mountpoint)).fstype not in {"tmpfs", "ramfs"}


def test_file_writes_count_as_disk_write_bytes(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(dir=tmp_path if _on_storage(tmp_path) else Path.cwd()) as directory:
        component = unique("writer")
        monitor = ProcessMonitor({component: os.getpid()}, include_children=False, socket_network=False)
        monitor.sample()
        first = value(WRITE, component)
        size = 4 << 20
        with open(Path(directory) / "blob", "wb") as handle:
            handle.write(os.urandom(size))
            handle.flush()
            os.fsync(handle.fileno())
        monitor.sample()
        assert value(WRITE, component) >= first + size


@pytest.mark.skipif(not _sockdiag.supported(), reason="per-socket TCP counters need Linux sock_diag")
def test_tcp_bytes_are_counted_per_process(processes: list[subprocess.Popen[bytes]]) -> None:
    size = 300_000
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        echo = python(
            f"""
            import socket, sys
            conn = socket.create_connection(("127.0.0.1", {port}))
            got = 0
            while got < {size}:
                chunk = conn.recv(65536)
                conn.sendall(chunk)
                got += len(chunk)
            sys.stdin.read()
            """,
            stdin=subprocess.PIPE,
        )
        processes.append(echo)
        component = unique("echo")
        monitor = ProcessMonitor({component: echo.pid}, host_network=True)
        monitor.sample()
        host_before = value(RECEIVED, HOST)
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"x" * size)
            received = 0
            while received < size:
                received += len(conn.recv(65536))

            def counted() -> bool:
                monitor.sample()
                return value(RECEIVED, component) >= size and value(SENT, component) >= size

            eventually(counted, timeout=10, message="echo's socket bytes were not counted")
    assert value(RECEIVED, HOST) >= host_before + 2 * size  # loopback carries both directions


def test_vanished_process_exports_zeros() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    component = unique("gone")
    monitor = ProcessMonitor({component: process.pid})
    monitor.sample()
    assert value(COUNT, component) == 0
    assert REGISTRY.get_sample_value(CPU, {"component": component}) == 0.0


def test_monitor_self_runs_in_the_background_and_is_idempotent() -> None:
    component = unique("self")
    monitor = monitor_self(component, interval=0.05)
    try:
        assert monitor_self(component) is monitor
        assert monitor.components == [component]
        eventually(lambda: value(RSS, component) > 0 and value(CPU, component) > 0, timeout=10)
        first = value(CPU, component)
        sum(i * i for i in range(2_000_000))  # burn a little CPU in this very process
        eventually(lambda: value(CPU, component) > first, timeout=10)
    finally:
        monitor.stop()


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval"):
        ProcessMonitor(interval=0)
