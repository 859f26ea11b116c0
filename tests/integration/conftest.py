"""Helpers shared by the end-to-end tests that run `cryptopipe up` as a user would."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cryptopipe.runtime import stop_process
from cryptopipe.schemas import KafkaSettings, RedisSettings


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without server settings: `up` must find or start its own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "KAFKA_TOPIC_PREFIX", "REDIS_KEY_PREFIX")
    }
    return env | extra


def replay_file_args(*paths: Path) -> list[str]:
    """``--replay-file PATH`` for each of ``paths`` (`up` replays them, one symbol each)."""
    return [arg for path in paths for arg in ("--replay-file", str(path))]


def pipeline_env(kafka_settings: KafkaSettings, redis_settings: RedisSettings) -> dict[str, str]:
    """:func:`clean_env` pointed at the session's broker and Redis, with this test's prefixes."""
    return clean_env(
        KAFKA_BOOTSTRAP_SERVERS=kafka_settings.bootstrap_servers,
        KAFKA_TOPIC_PREFIX=kafka_settings.topic_prefix,
        REDIS_URL=redis_settings.url.get_secret_value(),
        REDIS_KEY_PREFIX=redis_settings.key_prefix,
    )


@dataclass
class UpProcess:
    """A running `cryptopipe up`; ``lines`` fills with its combined output as it is written."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def log_text(self) -> str:
        """The run's full log: every service's every line (the terminal shows warnings only)."""
        return full_log(self.output)

    def interrupt(self, timeout: float = 90) -> int:
        """Ctrl-C, as a user would; returns the exit code."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=timeout)


def full_log(output: str) -> str:
    """The text of the log file whose path `up` printed in ``output`` ("" when it printed none)."""
    match = re.search(r"the full log is in (\S+)", output)
    return Path(match.group(1)).read_text("utf-8") if match else ""


def require_binary(binary: str) -> None:
    """A missing system program fails the run under CI (which installs it) and skips, with the
    reason, elsewhere."""
    import shutil

    if shutil.which(binary) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{binary} is not installed; .ci/run installs it with apt")
        pytest.skip(f"{binary} is not installed (apt-get install {binary})")


@contextmanager
def running_up(*args: str, env: dict[str, str] | None = None) -> Iterator[UpProcess]:
    """`cryptopipe up ARGS` in the background; interrupted (then killed) and reaped on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cryptopipe.cli", "up", "--metrics-base-port", "0", *args],
        env=env if env is not None else clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    up = UpProcess(proc)
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: up.lines.extend(iter(stdout.readline, "")), daemon=True)
    reader.start()
    try:
        yield up
    finally:
        stop_process(proc, signal.SIGINT, grace=90.0)
        reader.join(timeout=10)
        stdout.close()


@pytest.fixture
def run_up() -> object:
    """``run_up(*args, env=None)``: a context manager running `cryptopipe up` (see :func:`running_up`)."""
    return running_up


@pytest.fixture(name="require_binary")
def require_binary_fixture() -> object:
    """``require_binary(name)``: see :func:`require_binary`."""
    return require_binary


@pytest.fixture(name="pipeline_env")
def pipeline_env_fixture() -> object:
    """``pipeline_env(kafka_settings, redis_settings)``: see :func:`pipeline_env`."""
    return pipeline_env


@pytest.fixture(name="clean_env")
def clean_env_fixture() -> object:
    """``clean_env(**extra)``: see :func:`clean_env`."""
    return clean_env
