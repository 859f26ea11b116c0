"""Per-component CPU, memory, disk and network use, sampled from the processes themselves.

In the embedded mode every component is a process tree on this machine: a service, the Spark
driver with its JVM and Python workers, the broker and Redis the orchestrator started. A
:class:`ProcessMonitor` samples each tree with psutil every few seconds and exports the
``cryptopipe_process_*`` metrics with a ``component`` label. In compose, cAdvisor measures the
containers instead; the recording rules ``component:*`` in compose/prometheus/rules/recording.yml
turn either source into the same series, so dashboards never care which mode runs.

Counters accumulate per-process deltas, so a child that exits does not make a counter go down
(its work since the previous sample is lost; with a 5 s interval that is at most 5 s of one
short-lived child). Network bytes per component come from the kernel's per-socket TCP counters
(see :mod:`cryptopipe.observability._sockdiag`); UDP and Unix sockets are not counted. Where that
interface is missing (not Linux), only the host-wide counters (``component="host"``) exist.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType

import psutil
from prometheus_client import Counter

from cryptopipe.observability import _sockdiag
from cryptopipe.observability import metrics as m

logger = logging.getLogger(__name__)

#: Component label of the host-wide network counters.
HOST = "host"


@dataclass(frozen=True, slots=True)
class _Seen:
    cpu_s: float
    read_bytes: int
    write_bytes: int


@dataclass(slots=True)
class _Component:
    root: psutil.Process | None
    processes: dict[tuple[int, float], _Seen]
    sockets: dict[int, tuple[int, int]]


class ProcessMonitor:
    """Samples named process trees every ``interval`` seconds and exports their resource use.

    ``components`` maps a component name (``ingest``, ``broker``, ...) to the pid of its root
    process; descendants are included when ``include_children`` is true. ``host_network`` adds the
    host's interface counters as ``component="host"`` (let one monitor per machine do that).
    Use :meth:`sample` for one pass, or :meth:`start` / :meth:`stop` (or ``with``) for a thread.
    """

    def __init__(
        self,
        components: Mapping[str, int] | None = None,
        *,
        interval: float = 5.0,
        include_children: bool = True,
        host_network: bool = False,
        socket_network: bool = True,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self.include_children = include_children
        self.host_network = host_network
        self._socket_network = socket_network and _sockdiag.supported()
        self._components: dict[str, _Component] = {}
        self._host_last: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for component, pid in (components or {}).items():
            self.add(component, pid)

    @property
    def components(self) -> list[str]:
        with self._lock:
            return list(self._components)

    def add(self, component: str, pid: int) -> None:
        """Start watching ``pid`` (and its descendants) as ``component``."""
        try:
            root: psutil.Process | None = psutil.Process(pid)
        except psutil.NoSuchProcess:
            logger.warning("process %d for component %s is gone; exporting zeros", pid, component)
            root = None
        with self._lock:
            self._components[component] = _Component(root, {}, {})
        for metric in (m.PROCESS_CPU, m.PROCESS_DISK_READ, m.PROCESS_DISK_WRITE):
            metric.labels(component=component)
        if self._socket_network:
            m.PROCESS_NETWORK_RECEIVE.labels(component=component)
            m.PROCESS_NETWORK_TRANSMIT.labels(component=component)

    def remove(self, component: str) -> None:
        """Stop watching a component; its series keep their last values."""
        with self._lock:
            self._components.pop(component, None)

    # --- sampling ------------------------------------------------------------------------------
    def sample(self) -> None:
        """One pass over every component (thread-safe)."""
        with self._lock:
            sockets = self._socket_bytes()
            children = _children_by_parent() if self.include_children and self._components else {}
            for name, component in self._components.items():
                self._sample_component(name, component, sockets, children)
            if self.host_network:
                self._sample_host()

    def _socket_bytes(self) -> dict[int, tuple[int, int]] | None:
        if not self._socket_network:
            return None
        try:
            return _sockdiag.tcp_bytes_by_inode()
        except OSError as exc:
            logger.warning(
                "per-socket TCP counters unavailable (%s); per-component network bytes disabled", exc
            )
            m.ERRORS.labels(component="observability", reason="sock_diag").inc()
            self._socket_network = False
            return None

    @staticmethod
    def _tree(root: psutil.Process, children: Mapping[int, list[int]]) -> Iterator[psutil.Process]:
        yield root
        pending = list(children.get(root.pid, ()))
        while pending:
            pid = pending.pop()
            pending.extend(children.get(pid, ()))
            try:
                yield psutil.Process(pid)
            except psutil.Error:
                continue

    def _sample_component(
        self,
        name: str,
        component: _Component,
        sockets: dict[int, tuple[int, int]] | None,
        children: Mapping[int, list[int]],
    ) -> None:
        seen: dict[tuple[int, float], _Seen] = {}
        rss = 0
        inodes: set[int] = set()
        root = component.root
        if root is not None and _alive(root):
            for process in self._tree(root, children):
                try:
                    with process.oneshot():
                        key = (process.pid, process.create_time())
                        times = process.cpu_times()
                        memory = process.memory_info().rss
                        read_bytes, write_bytes = _io_bytes(process)
                except psutil.Error:
                    continue  # exited (or turned zombie) between listing and reading
                now = _Seen(times.user + times.system, read_bytes, write_bytes)
                before = component.processes.get(key, _Seen(0.0, 0, 0))
                _add(m.PROCESS_CPU, name, now.cpu_s - before.cpu_s)
                _add(m.PROCESS_DISK_READ, name, now.read_bytes - before.read_bytes)
                _add(m.PROCESS_DISK_WRITE, name, now.write_bytes - before.write_bytes)
                seen[key] = now
                rss += memory
                if sockets is not None:
                    inodes |= _sockdiag.socket_inodes(process.pid)
        component.processes = seen
        m.PROCESS_MEMORY.labels(component=name).set(rss)
        m.PROCESS_COUNT.labels(component=name).set(len(seen))
        if sockets is not None:
            component.sockets = self._sample_sockets(name, component.sockets, inodes, sockets)

    @staticmethod
    def _sample_sockets(
        name: str,
        before: dict[int, tuple[int, int]],
        inodes: set[int],
        sockets: dict[int, tuple[int, int]],
    ) -> dict[int, tuple[int, int]]:
        now: dict[int, tuple[int, int]] = {}
        for inode in inodes:
            counts = sockets.get(inode)
            if counts is None:
                continue
            received, sent = counts
            last_received, last_sent = before.get(inode, (0, 0))
            if received < last_received or sent < last_sent:
                last_received, last_sent = 0, 0  # inode reused by a new socket
            _add(m.PROCESS_NETWORK_RECEIVE, name, received - last_received)
            _add(m.PROCESS_NETWORK_TRANSMIT, name, sent - last_sent)
            now[inode] = counts
        return now

    def _sample_host(self) -> None:
        counters = psutil.net_io_counters()
        if counters is None:
            return
        now = (int(counters.bytes_recv), int(counters.bytes_sent))
        last = self._host_last or (0, 0)
        if now[0] >= last[0] and now[1] >= last[1]:
            _add(m.PROCESS_NETWORK_RECEIVE, HOST, now[0] - last[0])
            _add(m.PROCESS_NETWORK_TRANSMIT, HOST, now[1] - last[1])
        self._host_last = now

    # --- background thread ---------------------------------------------------------------------
    def start(self) -> ProcessMonitor:
        """Sample now, then every ``interval`` seconds on a daemon thread."""
        if self._thread is not None:
            return self
        self.sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="process-monitor", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
            self._thread = None

    def __enter__(self) -> ProcessMonitor:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _children_by_parent() -> dict[int, list[int]]:
    """Parent pid -> child pids, read once per sample (psutil's children() rescans /proc per call)."""
    children: dict[int, list[int]] = {}
    for process in psutil.process_iter(["ppid"]):
        ppid = process.info.get("ppid")
        if ppid:
            children.setdefault(ppid, []).append(process.pid)
    return children


def _alive(process: psutil.Process) -> bool:
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _io_bytes(process: psutil.Process) -> tuple[int, int]:
    try:
        io = process.io_counters()  # absent on macOS: AttributeError
    except (AttributeError, psutil.AccessDenied, NotImplementedError):
        return 0, 0
    return int(io.read_bytes), int(io.write_bytes)


def _add(counter: Counter, component: str, delta: float) -> None:
    if delta > 0:
        counter.labels(component=component).inc(delta)


_SELF_MONITORS: dict[str, ProcessMonitor] = {}
_SELF_LOCK = threading.Lock()


def monitor_self(component: str, *, interval: float = 5.0, include_children: bool = True) -> ProcessMonitor:
    """Export this process's (and its descendants') resource use as ``component``; idempotent.

    Call it next to ``serve_metrics(component, ...)`` in a service's main. Returns the running
    monitor; ``stop()`` it on shutdown (it is a daemon thread, so forgetting does not hang exit).
    """
    with _SELF_LOCK:
        monitor = _SELF_MONITORS.get(component)
        if monitor is None:
            monitor = ProcessMonitor(
                {component: os.getpid()}, interval=interval, include_children=include_children
            )
            _SELF_MONITORS[component] = monitor
        return monitor.start()
