"""The measure package's tests: run a ``cryptopipe bench`` against the session's broker and Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cryptopipe.schemas import KafkaSettings, RedisSettings


@pytest.fixture
def run_bench(
    tmp_path: Path, kafka_settings: KafkaSettings, redis_settings: RedisSettings
) -> Callable[..., tuple[subprocess.CompletedProcess[str], dict[str, Any]]]:
    """``run_bench(*args, timeout=s, extra_env=None)``: ``cryptopipe bench *args --json F`` in a
    child process on the test servers; it must exit 0. Returns the process (its output) and F's
    figures."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "REDIS_URL": redis_settings.url.get_secret_value(),
    }

    def run(
        *args: str, timeout: float, extra_env: dict[str, str] | None = None
    ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        out = tmp_path / "bench.json"
        argv = [sys.executable, "-m", "cryptopipe.cli", "bench", *args, "--json", str(out)]
        child_env = {**env, **(extra_env or {})}
        result = subprocess.run(
            argv, env=child_env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert result.returncode == 0, result.stderr[-4000:]
        return result, json.loads(out.read_text())

    return run
