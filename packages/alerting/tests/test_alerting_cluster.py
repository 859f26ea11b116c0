"""The job on a Spark standalone cluster (master and worker as separate processes) raises the
reference's alerts, as local mode does; it runs as ``cryptopipe alerting --master spark://...`` in
a child process."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from cryptopipe.alerting.cluster import standalone_cluster
from cryptopipe.alerting.reference import one_per_batch, reference_alerts
from cryptopipe.infra import LocalServer
from cryptopipe.infra.testing import create_topic, eventually
from cryptopipe.schemas import ALERTS, PRICES, KafkaSettings

from .conftest import (
    BASE_US,
    MINUTE_US,
    JobRunner,
    identity,
    produce_trades,
    read_alerts,
    trade,
)

pytestmark = pytest.mark.slow

RULES = "1m:0.5%;2m:1%:early"


def _market() -> list[Any]:
    trades, prices = [], {"BTCUSDT": 60_000.0, "ETHUSDT": 2_500.0}
    for step in range(120):  # four minutes, a trade every 2 s per symbol
        for n, symbol in enumerate(prices):
            if step % 30 == 20:
                prices[symbol] *= 1.012 if (step // 30 + n) % 2 else 0.988
            trades.append(trade(symbol, step, f"{prices[symbol]:.2f}", BASE_US + step * 2_000_000 + n * 1000))
    trades.append(trade("XRPUSDT", 1, "0.5", BASE_US + 6 * MINUTE_US))
    return trades


def test_standalone_cluster_gives_the_reference_alerts(
    jobs: JobRunner, kafka: Any, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    market = _market()
    settings = jobs.settings(RULES)
    expected = reference_alerts(one_per_batch(market), settings.rules).alerts
    assert {a.kind for a in expected} == {"early", "final"}

    # Local mode gives the reference's alerts (test_alerting_job checks that at length); here the
    # same trades go through a standalone cluster, on topics of their own.
    cluster_kafka = kafka_settings.model_copy(
        update={"topic_prefix": kafka_settings.topic_prefix + "cluster-"}
    )
    for spec in (PRICES, ALERTS):
        create_topic(kafka, spec.with_prefix(cluster_kafka.topic_prefix).name, 3, settings=cluster_kafka)
    produce_trades(cluster_kafka, market)
    with standalone_cluster(cores=2, memory="1g") as cluster:
        driver = LocalServer(
            "alerting-driver",
            [
                sys.executable,
                "-m",
                "cryptopipe.alerting",
                "--master",
                cluster.master_url,
                "--source",
                "python",
                "--checkpoint-dir",
                str(tmp_path / "cluster-checkpoints"),
                "--metrics-port",
                "0",
                "--shuffle-partitions",
                "2",
                "--ready-file",
                "{workdir}/ready",
                "--stats-json",
                str(tmp_path / "driver-stats.json"),
                "--log-level",
                "WARNING",
                *(arg for rule in RULES.split(";") for arg in ("--rule", rule)),
            ],
            ready=lambda server: server.workdir is not None and (server.workdir / "ready").exists(),
            ready_timeout=180,
            stop_grace=30,
            env={
                **_env_without_kafka(),
                "KAFKA_BOOTSTRAP_SERVERS": cluster_kafka.bootstrap_servers,
                "KAFKA_TOPIC_PREFIX": cluster_kafka.topic_prefix,
            },
        )
        with driver:

            def all_alerts() -> list[Any]:
                assert driver.running(), driver.log_tail(40)
                got = read_alerts(cluster_kafka, timeout=2)
                return got if len(got) >= len(expected) else []

            on_cluster = eventually(all_alerts, timeout=180, interval=1, message="alerts from the cluster")
            apps = cluster.status().get("activeapps")
            assert isinstance(apps, list)
            assert [app["name"] for app in apps] == ["cryptopipe-alerting"]
            assert apps[0]["cores"] > 0, "the executor ran on the worker"
        assert driver.returncode() == 0, driver.log_tail(40)
    assert sorted(identity(a) for a in on_cluster) == expected
    # The driver's books at exit: every alert it published, and its final metrics beside them.
    books = json.loads((tmp_path / "driver-stats.json").read_text())
    assert books["alerts_published"] == len(on_cluster)
    assert "cryptopipe_alerting_alerts_total" in books["metrics"]


def _env_without_kafka() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "ALERTING_", "PYSPARK_"))}
