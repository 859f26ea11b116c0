"""``cryptopipe skew-monitor``: the ``--once --json`` contract, errors, and the monitor loop."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cryptopipe.infra.testing import eventually
from cryptopipe.observability import Scrape
from cryptopipe.replay.config import ReplayConfig
from cryptopipe.replay.server import ThreadedExchange, run_in_thread
from cryptopipe.skew.cli import build_parser, main
from cryptopipe.skew.testing import NtpResponder

OFFSET_MS = 250


@pytest.fixture(scope="module")
def exchange() -> Iterator[ThreadedExchange]:
    with run_in_thread(ReplayConfig(symbols=("BTCUSDT",), clock_offset_ms=OFFSET_MS, delay_ms=5)) as handle:
        yield handle


@pytest.fixture
def ntp() -> Iterator[NtpResponder]:
    with NtpResponder(offset_ms=-80) as responder:
        yield responder


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_once_json_prints_one_estimate(
    exchange: ThreadedExchange, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--once", "--json", "--binance-url", exchange.rest_url, "--samples", "4"])

    out = capsys.readouterr().out
    assert code == 0
    assert out.count("\n") == 1
    result = json.loads(out)
    assert {"offset_ms", "uncertainty_ms", "rtt_ms", "reference"} <= result.keys()
    assert result["reference"] == "binance"
    assert result["offset_ms"] == pytest.approx(OFFSET_MS, abs=2.0)
    assert result["uncertainty_ms"] == pytest.approx(result["rtt_ms"] / 2, abs=0.01)
    assert result["samples"] == 4
    assert result["source"] == exchange.rest_url
    assert result["stale"] is False


def test_once_json_with_ntp_nests_the_ntp_estimate(
    exchange: ThreadedExchange, ntp: NtpResponder, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--once", "--json", "--binance-url", exchange.rest_url, "--ntp-server", f"127.0.0.1:{ntp.port}"]

    assert main([*argv, "--samples", "3"]) == 0

    result = json.loads(capsys.readouterr().out)
    assert result["offset_ms"] == pytest.approx(OFFSET_MS, abs=2.0)
    assert result["ntp"]["reference"] == f"ntp:127.0.0.1:{ntp.port}"
    assert result["ntp"]["offset_ms"] == pytest.approx(-80, abs=2.0)


def test_ntp_only_and_settings_from_the_environment(
    ntp: NtpResponder, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKEW_NTP_SERVER", f"127.0.0.1:{ntp.port}")
    monkeypatch.setenv("SKEW_SAMPLES", "2")

    assert main(["--once", "--json", "--no-binance"]) == 0

    result = json.loads(capsys.readouterr().out)
    assert result["reference"].startswith("ntp:")
    assert result["samples"] == 2
    assert result["offset_ms"] == pytest.approx(-80, abs=2.0)


def test_human_output_states_the_sign(exchange: ThreadedExchange, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--once", "--binance-url", exchange.rest_url, "--samples", "2"]) == 0

    out = capsys.readouterr().out
    assert out.startswith("binance: offset +2")
    assert "reference - local" in out


def test_unreachable_binance_is_one_line_on_stderr_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}"

    code = main(["--once", "--json", "--binance-url", url, "--timeout", "1"])

    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("cryptopipe skew-monitor: binance: connection:")
    assert url in captured.err


def test_silent_ntp_server_times_out_with_exit_2(
    ntp: NtpResponder, capsys: pytest.CaptureFixture[str]
) -> None:
    ntp.behaviour = "silent"

    code = main(["--once", "--no-binance", "--ntp-server", f"127.0.0.1:{ntp.port}", "--timeout", "0.2"])

    assert code == 2
    assert "timeout" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ntp-server", "host:99999"], "SKEW_NTP_SERVER"),
        (["--binance-url", "ftp://x"], "BINANCE_REST_URL"),
        (["--samples", "0"], "SKEW_SAMPLES"),
        (["--json"], "--json needs --once"),
        (["--no-binance", "--once"], "--no-binance needs --ntp-server"),
    ],
)
def test_bad_settings_are_usage_errors_naming_the_variable(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_parser_documents_every_flag() -> None:
    help_text = build_parser().format_help()
    for flag in (
        "--once",
        "--json",
        "--binance-url",
        "--ntp-server",
        "--interval",
        "--samples",
        "--metrics-port",
    ):
        assert flag in help_text


@pytest.mark.slow
def test_monitor_serves_the_gauges_and_stops_on_sigterm(exchange: ThreadedExchange, tmp_path: Path) -> None:
    port = _free_port()
    stats_path = tmp_path / "stats.json"
    command = [
        sys.executable, "-c", "import sys; from cryptopipe.skew.cli import main; sys.exit(main())",
        "--binance-url", exchange.rest_url, "--interval", "0.2", "--samples", "2",
        "--metrics-port", str(port), "--stats-json", str(stats_path),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:

        def offset_published() -> float:
            scrape = Scrape.from_urls(f"http://127.0.0.1:{port}/metrics", timeout=2)
            assert scrape.samples("cryptopipe_clock_offset_seconds", reference="binance")
            return scrape.total("cryptopipe_clock_offset_seconds", reference="binance")

        def reachable() -> float:
            assert process.poll() is None, process.communicate()
            try:
                return offset_published()
            except OSError as exc:
                raise AssertionError(exc) from exc

        eventually(reachable, timeout=30, message="skew-monitor never published an offset")
        scrape = Scrape.from_urls(f"http://127.0.0.1:{port}/metrics", timeout=2)
        offset_s = scrape.total("cryptopipe_clock_offset_seconds", reference="binance")
        # Within the published uncertainty (NTP's bound), however the machine schedules the round trip.
        uncertainty_s = scrape.total("cryptopipe_clock_offset_uncertainty_seconds", reference="binance")
        assert offset_s == pytest.approx(OFFSET_MS / 1000, abs=uncertainty_s + 1e-5)
        assert scrape.total("cryptopipe_clock_estimate_stale", reference="binance") == 0
        assert scrape.total("cryptopipe_api_response_seconds_count", endpoint="/api/v3/time") >= 2
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    # The books at exit: the last estimate, within its own bound, and the final metrics beside it.
    stats = json.loads(stats_path.read_text())
    last = stats["estimates"]["binance"]
    assert last["offset_ms"] == pytest.approx(OFFSET_MS, abs=last["uncertainty_ms"] + 0.01)
    assert "cryptopipe_clock_offset_seconds" in stats["metrics"]
