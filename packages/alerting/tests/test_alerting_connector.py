"""Spark's Kafka connector from the cache: offline with a warm cache, the jars Spark ships left out."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from cryptopipe.alerting.settings import AlertingSettings
from cryptopipe.alerting.spark import CONNECTOR_CONF, connector_conf
from cryptopipe.runtime import jvm as jars
from cryptopipe.schemas import settings_of


def _fake_cache(root: Path, version: str, names: list[str]) -> Path:
    libs = root / "spark-sql-kafka" / version / "libs"
    libs.mkdir(parents=True)
    lines = []
    for name in names:
        (libs / name).write_bytes(name.encode())
        lines.append(f"{hashlib.sha256(name.encode()).hexdigest()}  {name}\n")
    (libs.parent / jars.MANIFEST).write_text("".join(lines), "utf-8")
    return libs


def _no_network(*_args: Any, **_kwargs: Any) -> Any:
    raise jars.ArtifactResolutionError("offline (test)")


def test_a_warm_cache_needs_no_network_and_leaves_out_what_spark_ships(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(jars.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(jars, "ensure_artifacts", _no_network)
    _fake_cache(
        tmp_path / "cache",
        "4.2.0",
        ["spark-sql-kafka-0-10_2.13-4.2.0.jar", "kafka-clients-3.9.2.jar", "snappy-java-1.1.10.8.jar"],
    )
    shipped = tmp_path / "spark-jars"
    shipped.mkdir()
    (shipped / "snappy-java-1.1.10.8.jar").write_bytes(b"")
    # 4.3.0's own connector is not cached (nor on Maven Central): the compatible 4.2.0 one is used.
    connector = jars.spark_kafka_jars("4.3.0", shipped)
    assert connector.version == "4.2.0"
    assert [jar.name for jar in connector.jars] == [
        "kafka-clients-3.9.2.jar",
        "spark-sql-kafka-0-10_2.13-4.2.0.jar",
    ]


def test_no_connector_is_recorded_with_its_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(jars.CACHE_ENV, str(tmp_path / "empty"))
    monkeypatch.setattr(jars, "ensure_artifacts", _no_network)
    conf = connector_conf(settings_of(AlertingSettings, source="auto"), {})
    assert "spark.jars" not in conf
    assert conf[CONNECTOR_CONF].startswith("unavailable: ")
    assert "offline (test)" in conf[CONNECTOR_CONF]
    assert connector_conf(settings_of(AlertingSettings, source="python"), {}) == {}
