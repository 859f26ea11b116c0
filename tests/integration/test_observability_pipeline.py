"""A real Prometheus, started by `cryptopipe up`, scrapes every component of a running pipeline;
every metric the dashboards and rules query is actually exported by it."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from cryptopipe.infra.testing import eventually
from cryptopipe.observability import Scrape
from cryptopipe.observability.drift import assert_exported, queried_metrics
from cryptopipe.observability.prometheus import api_get, instant_query, target_health

pytestmark = pytest.mark.slow


def test_prometheus_scrapes_every_component_of_a_running_pipeline(run_up: Any, require_binary: Any) -> None:
    require_binary("prometheus")
    with run_up("--source", "replay", "--rate", "300", "--seed", "3", "--no-dashboard") as up:
        lines = up.lines
        url = eventually(  # Spark's start-up dominates: minutes on a loaded 2-core machine
            lambda: next(
                (m.group(1) for line in lines if (m := re.search(r"prometheus at (\S+)", line))), None
            ),
            timeout=240,
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
        assert up.interrupt() == 0, up.output[-4000:]
