"""A real Prometheus, started by `cryptopipe up`, scrapes every component of a running pipeline;
every metric the dashboards and rules query is actually exported by it."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cryptopipe.infra.testing import eventually
from cryptopipe.observability import Scrape
from cryptopipe.observability.drift import assert_exported, queried_metrics
from cryptopipe.observability.prometheus import api_get, instant_query, target_health

pytestmark = pytest.mark.slow


def _require(binary: str) -> None:
    """Missing system programs fail the run under CI (which installs them) and skip, loudly, elsewhere."""
    if shutil.which(binary) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{binary} is not installed; .ci/run installs it with apt")
        pytest.skip(f"{binary} is not installed (apt-get install {binary})")


def test_prometheus_scrapes_every_component_of_a_running_pipeline(tmp_path: Path) -> None:
    _require("prometheus")
    env = dict(os.environ)
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "KAFKA_TOPIC_PREFIX", "REDIS_KEY_PREFIX"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cryptopipe.cli",
            "up",
            "--source",
            "replay",
            "--rate",
            "300",
            "--seed",
            "3",
            "--metrics-base-port",
            "0",
            "--no-dashboard",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        url = eventually(  # Spark's start-up dominates: minutes on a loaded 2-core machine
            lambda: next(
                (m.group(1) for line in lines if (m := re.search(r"prometheus at (\S+)", line))), None
            ),
            timeout=300,
            message="up did not start Prometheus",
        )
        health = eventually(
            lambda: (h := target_health(url)) and all(s == ["up"] for s in h.values()) and h,
            timeout=60,
            message="not every target is up",
        )
        assert {"ingest", "prices-consumer", "orchestrator"} <= set(health)

        def p99() -> float | None:
            result = instant_query(
                url, "histogram_quantile(0.99, sum by (le) (rate(cryptopipe_e2e_latency_seconds_bucket[1m])))"
            )
            return result[0][1] if result and math.isfinite(result[0][1]) else None

        assert eventually(p99, timeout=60, message="PromQL p99 returned no number") > 0

        scrape_urls = [t["scrapeUrl"] for t in api_get(url, "/api/v1/targets")["activeTargets"]]
        assert_exported(Scrape.from_urls(*scrape_urls), queried_metrics())
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=10)
            proc.stdout.close()
    assert proc.returncode == 0, "".join(lines)[-4000:]
