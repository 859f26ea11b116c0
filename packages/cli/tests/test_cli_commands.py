"""The cryptopipe command: every subcommand resolves, the generated docs are current."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cryptopipe.cli import docs
from cryptopipe.cli.main import COMMANDS, main

ROOT = Path(__file__).resolve().parents[3]


def _exit_code(argv: list[str]) -> int | str | None:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code([command, "--help"]) == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_docs_are_generated_from_the_code() -> None:
    assert docs.main(["--check", "--root", str(ROOT)]) == 0, "run `uv run cryptopipe docs` and commit"


def test_every_environment_variable_is_documented_once() -> None:
    names = [name for _, target in docs.SETTINGS for name in docs.env_names(docs._settings_class(target))]
    shared = {"BINANCE_REST_URL", "REDIS_URL", "REDIS_KEY_PREFIX"}  # read by several services on purpose
    assert len([n for n in names if n not in shared]) == len({n for n in names if n not in shared})
    example = (ROOT / ".env.example").read_text()
    assert all(f"# {name}=" in example for name in names)


def test_bench_codec_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "codec.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryptopipe.cli",
            "bench",
            "codec",
            "--messages",
            "500",
            "--repeat",
            "3",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["json_bytes_mean"] > 0
    assert set(figures["json_encode_us"]) == {"p50", "p95", "p99"}
    assert figures["ratio_json_to_msgpack_p50"] > 0
