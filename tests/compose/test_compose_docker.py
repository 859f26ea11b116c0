"""Opt-in: the real stack in Docker, offline on the replay exchange.

Runs only with ``CRYPTOPIPE_DOCKER_TESTS=1`` and a Docker engine with the compose plugin (a
laptop, a CI runner with Docker); otherwise it is skipped with the reason. It builds the images,
brings the stack up with the replay override, and checks that prices and at least one alert reach
Redis and that Prometheus scrapes every target; then it removes everything (``down -v``).

    CRYPTOPIPE_DOCKER_TESTS=1 uv run pytest tests/compose -m docker

Needs Docker Hub / GHCR / gcr.io for the images and Maven Central for Spark's Kafka connector
(set ``ALERTING_SPARK_CONF=`` in the environment to use the Python Data Source reader instead).
The published host ports (8501, 3000, 9090, 6379, 9094 on 127.0.0.1) must be free.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptopipe.infra.testing import eventually

REPO = Path(__file__).resolve().parents[2]
FILES = ["-f", "compose/docker-compose.yml", "-f", "compose/docker-compose.replay.yml"]

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _docker_unavailable() -> str | None:
    if os.environ.get("CRYPTOPIPE_DOCKER_TESTS") != "1":
        return "opt-in: set CRYPTOPIPE_DOCKER_TESTS=1 to bring the compose stack up in Docker"
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    for probe in (["docker", "info"], ["docker", "compose", "version"]):
        try:
            result = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"`{' '.join(probe)}` failed: {exc}"
        if result.returncode != 0:
            return f"`{' '.join(probe)}` failed: {result.stderr.strip()[:200]}"
    return None


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    reason = _docker_unavailable()
    if reason:
        pytest.skip(reason)
    env_file = tmp_path_factory.mktemp("compose") / "test.env"
    env_file.write_text(
        f"REDIS_PASSWORD={secrets.token_hex(16)}\nGRAFANA_ADMIN_PASSWORD={secrets.token_hex(16)}\n"
    )
    base = ["docker", "compose", "-p", f"cryptopipe-test-{uuid.uuid4().hex[:8]}", "--env-file", str(env_file)]
    base += FILES

    def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
        )

    config = run("config", "--quiet", timeout=60)
    assert config.returncode == 0, f"docker compose config rejects the files:\n{config.stderr}"
    try:
        build = run("build", timeout=3000)
        assert build.returncode == 0, f"build failed:\n{build.stderr[-4000:]}"
        up = run("up", "-d", "--wait", "--wait-timeout", "600", timeout=900)
        if up.returncode != 0:
            logs = run("logs", "--no-color", "--tail", "60", timeout=120).stdout
            pytest.fail(f"the stack did not become healthy:\n{up.stderr[-3000:]}\n{logs[-6000:]}")
        yield base
    finally:
        run("down", "-v", "--remove-orphans", timeout=300)


def _exec(compose: list[str], service: str, *command: str) -> str:
    result = subprocess.run(
        [*compose, "exec", "-T", service, *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{service}: {' '.join(command)}: {result.stderr.strip()}"
    return result.stdout


@pytest.mark.timeout(3600)
def test_prices_and_alerts_reach_redis_and_prometheus_scrapes_everything(compose: list[str]) -> None:
    def prices() -> list[str]:
        return _exec(compose, "redis", "redis-cli", "--scan", "--pattern", "cryptopipe:price:*").split()

    symbols = eventually(prices, timeout=180, interval=2, message="no price reached Redis")
    assert {"cryptopipe:price:BTCUSDT", "cryptopipe:price:ETHUSDT"} & set(symbols)

    def alerts() -> int:
        return int(_exec(compose, "redis", "redis-cli", "LLEN", "cryptopipe:alerts").strip() or 0)

    eventually(alerts, timeout=420, interval=5, message="no alert reached Redis")

    def targets_up() -> bool:
        body = _exec(
            compose, "prometheus", "wget", "-qO-", "http://127.0.0.1:9090/api/v1/targets?state=active"
        )
        active = json.loads(body)["data"]["activeTargets"]
        health = {target["labels"]["job"]: target["health"] for target in active}
        assert health, "no active target"
        assert all(state == "up" for state in health.values()), health
        return True

    eventually(targets_up, timeout=180, interval=5, message="Prometheus does not scrape every target")
