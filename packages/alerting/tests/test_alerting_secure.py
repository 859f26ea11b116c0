"""The alerting job on a secured Apache Kafka (SASL_SSL, SCRAM-SHA-512, ACLs) as principal
``alerting``, with the Python Data Source (``client_config``): it reads ``prices`` and publishes
alerts the broker acknowledges; Spark's logs show no password.

Spark's own connector (``java_client_config``) with the express lane runs on the same secured
cluster inside the whole pipeline (tests/integration/test_secure_kafka.py), where its alerts reach
Redis and no secret is in any output, so it is not started a second time here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cryptopipe.infra.secure_kafka import SecureKafkaCluster
from cryptopipe.infra.testing import eventually

from .conftest import BASE_US, MINUTE_US, JobRunner, closers, produce_trades, trade

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
]  # Spark and a secured broker start slowly on a loaded machine


@pytest.mark.parametrize(("source", "express"), [("python", False)])
def test_the_job_reads_and_publishes_as_the_alerting_principal(
    source: str,
    express: bool,
    spark: Any,
    secure_kafka: SecureKafkaCluster,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    symbol = f"{source.upper()}USDT"
    runner = JobRunner(spark, secure_kafka.settings("alerting"), tmp_path / "checkpoints")
    try:
        job = runner.start(runner.settings("1m:0.5%", source=source, express=express))
        assert job.source_kind == source
        produce_trades(
            secure_kafka.settings("ingest"),  # ingest's principal writes prices; alerting may not
            [
                trade(symbol, 1, "100", BASE_US + 1_000_000),
                trade(symbol, 2, "101", BASE_US + 30_000_000),  # +1 % in the first minute
                *closers([symbol], BASE_US + 2 * MINUTE_US),
            ],
        )

        def published() -> list[Any]:
            assert not job.await_termination(0.001), "query stopped"
            return [a for a in runner.published if a.symbol == symbol]

        alerts = eventually(published, timeout=180, interval=0.2, message=f"no alert for {symbol}")
        assert {a.rule for a in alerts} == {"1m-0.5pct"}
    finally:
        runner.close()
    password = secure_kafka.principals["alerting"][1].read_text().strip()
    out, err = capfd.readouterr()  # Spark's JVM and the Python workers write here
    assert password not in out + err
    assert all(password not in record.getMessage() for record in caplog.records)
