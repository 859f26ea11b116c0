"""Child server processes that never outlive the process that started them.

A :class:`LocalServer` owns one child (Tansu, redis-server, the librdkafka mock host), a private
temporary directory and a log file that captures the child's stdout and stderr. ``start()`` waits
for a readiness probe with a deadline; ``stop()`` sends SIGTERM, then SIGKILL after a grace period.

Three layers keep children from leaking: ``stop()`` (normally called by an ``ExitStack``), an
``atexit`` hook for servers still running at interpreter exit, and on Linux ``PR_SET_PDEATHSIG``
so the kernel kills the child if this process dies abruptly. The death signal fires when the
*thread* that started the child exits, so start long-lived servers from the main thread (or from
one that lives as long as the server).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TypeVar

from cryptopipe.infra.errors import ServerStartError
from cryptopipe.runtime.lifecycle import StartStop
from cryptopipe.runtime.net import free_port
from cryptopipe.runtime.process import stop_process

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_RUNNING: weakref.WeakSet[LocalServer] = weakref.WeakSet()
_RUNNING_LOCK = threading.Lock()

S = TypeVar("S", bound="LocalServer")


# Resolved here, in the parent: calling dlopen() in a child forked from a threaded process can
# deadlock, so the child only makes the (already bound) foreign call.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


#: How often :func:`start_on_free_port` tries a fresh port when the server exits during start-up.
PORT_ATTEMPTS = 5


def start_on_free_port(make: Callable[[int], S], port: int = 0, *, what: str, host: str = "127.0.0.1") -> S:
    """``make(port).start()``; ``port=0`` picks a free port, and a new one if the server exits early.

    Between :func:`free_port` and the server's bind another process may take the port, and the
    server then exits during start-up: that is retried on a fresh port (up to
    :data:`PORT_ATTEMPTS` times). Any other start failure, or one on a port the caller chose,
    is raised (:class:`ServerStartError`). ``what`` names the server in the log.
    """
    attempts = PORT_ATTEMPTS if port == 0 else 1
    for attempt in range(1, attempts + 1):
        chosen = port or free_port(host)
        server = make(chosen)
        try:
            server.start()
        except ServerStartError as exc:
            if attempt == attempts or "exited" not in exc.detail:
                raise
            log.debug("%s on port %d exited during start-up (port taken?); retrying", what, chosen)
            continue
        return server
    raise AssertionError("unreachable")


@cache
def program_version(binary: str, pattern: str) -> str:
    """The first group of ``pattern`` in what ``binary --version`` prints (``"unknown"`` if it
    does not say)."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(pattern, out.stdout + out.stderr)
    return match.group(1) if match else "unknown"


def listening_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself listens on TCP ``port``.

    Readiness probes check this before talking to the port: a free port picked a moment ago may
    have been taken by another program, and the probe must not mistake that one for ours.
    """
    import psutil

    try:
        connections = psutil.Process(pid).net_connections("tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections)


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class LocalServer(StartStop):
    """One child server process with its own temp dir and log file.

    ``ready`` is called repeatedly (with this server) until it returns True or the deadline
    passes; raising ServerStartError reports a definite failure, other exceptions only mean "not
    yet". ``argv`` may contain ``{workdir}``, replaced with the private directory's path;
    ``prepare(workdir)`` runs before the spawn (e.g. to write a config file). ``stop_signal`` is
    sent first on stop (Tansu, for one, ignores SIGTERM and exits on SIGINT).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        ready: Callable[[LocalServer], bool],
        ready_timeout: float = 30.0,
        stop_grace: float = 5.0,
        env: Mapping[str, str] | None = None,
        prepare: Callable[[Path], None] | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.name = name
        self._argv_template = list(argv)
        self._ready = ready
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self._env = dict(env) if env is not None else None
        self._prepare = prepare
        self.stop_signal = stop_signal
        self.workdir: Path | None = None
        self.log_path: Path | None = None
        self.startup_seconds: float | None = None
        self._started_at = 0.0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def _started(self) -> bool:
        return self._proc is not None

    @property
    def argv(self) -> list[str]:
        workdir = str(self.workdir) if self.workdir is not None else "{workdir}"
        return [part.replace("{workdir}", workdir) for part in self._argv_template]

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text("utf-8", errors="replace")

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def start(self: S, *, wait: bool = True) -> S:
        """Spawn the child and wait until it is ready; raise ServerStartError otherwise.

        ``wait=False`` returns right after the spawn; call :meth:`wait_ready` later (servers that
        need each other to become ready, like a KRaft quorum, start together that way).
        """
        if self._proc is not None:
            raise RuntimeError(f"{self.name} already started")
        self.workdir = Path(tempfile.mkdtemp(prefix=f"cryptopipe-{self.name}-"))
        self.log_path = self.workdir / f"{self.name}.log"
        if self._prepare is not None:
            try:
                self._prepare(self.workdir)
            except BaseException:
                self._cleanup_dir()
                raise
        self._spawn(wait=wait)
        return self

    def restart(self: S) -> S:
        """Stop the child (gracefully) and start it again in the same directory, keeping its files."""
        if self.workdir is None:
            raise RuntimeError(f"{self.name} was never started")
        self.terminate()
        self._spawn()
        return self

    def kill(self) -> None:
        """SIGKILL the child at once, as a crash would; its directory stays (see :meth:`restart`)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()

    def _spawn(self, *, wait: bool = True) -> None:
        assert self.log_path is not None
        self._started_at = time.monotonic()
        with open(self.log_path, "ab") as log_file:
            try:
                self._proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    env=self._env,
                    # Own process group: a Ctrl-C aimed at the parent's group must not kill servers
                    # mid-teardown. Not an own session: with autogroup a session is a CPU scheduling
                    # group of its own, and priorities inside a run (pipeline/priority.py) act only
                    # between processes of one group.
                    process_group=0,
                    preexec_fn=_die_with_parent if _prctl is not None else None,
                )
            except OSError as exc:
                self._proc = None
                self._cleanup_dir()
                raise ServerStartError(self.name, f"cannot execute {self.argv[0]!r}: {exc}") from exc
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Wait for the readiness probe (after ``start(wait=False)``); stop the child on failure."""
        try:
            self._wait_ready(self._started_at)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - self._started_at
        log.debug("%s (pid %s) ready in %.3f s", self.name, self.pid, self.startup_seconds)

    def _wait_ready(self, started: float) -> None:
        deadline = started + self.ready_timeout
        delay = 0.002
        last_error = ""
        while True:
            code = self.returncode()
            if code is not None:
                raise ServerStartError(self.name, f"exited with code {code} during start-up", self.log_tail())
            try:
                if self._ready(self):
                    return
            except ServerStartError:
                raise
            except Exception as exc:  # the probe's own failure is only the latest reason to keep waiting
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                detail = f"not ready after {self.ready_timeout:.0f} s"
                if last_error:
                    detail += f" (last probe error: {last_error})"
                raise ServerStartError(self.name, detail, self.log_tail())
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def request_stop(self) -> None:
        """Send ``stop_signal`` without waiting (to stop several servers at once; then :meth:`stop`)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(self.stop_signal)

    def terminate(self) -> None:
        """Send ``stop_signal``, wait ``stop_grace`` seconds, then SIGKILL. Keeps the temp dir (and log).

        Idempotent.
        """
        proc = self._proc
        if proc is not None and stop_process(proc, self.stop_signal, self.stop_grace):
            log.warning(
                "%s (pid %s) ignored %s for %.1f s; killed it",
                self.name,
                proc.pid,
                self.stop_signal.name,
                self.stop_grace,
            )

    def stop(self) -> None:
        """:meth:`terminate`, then remove the temp dir. Idempotent."""
        self.terminate()
        with _RUNNING_LOCK:
            _RUNNING.discard(self)
        self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"LocalServer({self.name!r}, pid={self.pid})"


@atexit.register
def _stop_all() -> None:
    with _RUNNING_LOCK:
        servers = list(_RUNNING)
    for server in servers:
        server.stop()
