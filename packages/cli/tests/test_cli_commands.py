"""The cryptopipe command: every subcommand resolves, the generated docs are current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cryptopipe.cli import docs, up
from cryptopipe.cli.main import COMMANDS, main
from cryptopipe.pipeline import EXIT_UNBALANCED, Pipeline

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


def test_a_default_factory_is_documented_by_its_value_not_pydantics_sentinel() -> None:
    from pydantic import Field, SecretStr
    from pydantic_settings import BaseSettings

    class Example(BaseSettings):
        conf: dict[str, str] = Field(default_factory=lambda: {"a": "1", "b": "2"})
        empty: dict[str, str] = Field(default_factory=dict)
        names: tuple[str, ...] = Field(default_factory=lambda: ("x", "y"))
        secret: SecretStr = SecretStr("hunter2")

    fields = Example.model_fields
    assert docs.spelled_default(fields["conf"]) == "a=1,b=2"
    assert docs.spelled_default(fields["empty"]) == ""
    assert docs.spelled_default(fields["names"]) == "x,y"
    assert docs.spelled_default(fields["secret"]) == ""
    pages = docs.pages(ROOT).values()
    assert not any("PydanticUndefined" in text for text in pages)


# --- up: flags checked before anything starts, the books decide the exit status ---------------------


@pytest.mark.parametrize(
    ("written", "expected_code", "expected_line"),
    [
        (
            1000,
            0,
            "cryptopipe up: books balance: 1000 trades received, 1000 published = 1000 written + 0 stale "
            "+ 0 dead-lettered, 0 lost (prices topic)",
        ),
        (
            766,
            EXIT_UNBALANCED,
            "cryptopipe up: BOOKS DO NOT BALANCE: 234 of 1000 published trades were never written to "
            "Redis (prices topic)",
        ),
    ],
)
def test_up_exits_3_with_one_line_when_the_books_do_not_balance(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    written: int,
    expected_code: int,
    expected_line: str,
) -> None:
    """`up` end to end with the servers and services stubbed out: the books decide the exit status."""
    ingest = {"received": 1000, "published": 1000}
    prices = {"consumed": written, "written": written, "stale": 0, "dead_lettered": 0}

    def start(self: Pipeline, *_args: object, **_kwargs: object) -> None:
        for name, stats in (("ingest", ingest), ("prices-consumer", prices)):
            path = self.workdir / f"{name}-stats.json"
            path.write_text(json.dumps(stats))
            self.state.stats_files[name] = path
            # The books read the consumers the run started; stubbed services only have a name.
            self.state.services[name] = None  # type: ignore[assignment]

    monkeypatch.setattr(Pipeline, "start", start)
    monkeypatch.setattr(up, "drain", lambda pipeline: None)
    monkeypatch.setattr(Pipeline, "dead_service", lambda self: None)
    summary_path = tmp_path / "summary.json"
    argv = ["--source", "replay", "--no-alerting", "--run-for", "0", "--summary-json", str(summary_path)]
    assert up.main(argv) == expected_code
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == expected_line
    assert sum("BOOKS" in line or "books balance" in line for line in lines) == 1
    summary = json.loads(summary_path.read_text())
    assert summary["unwritten"] == 1000 - written
    assert summary["lost"] == 1000 - written


def test_more_shards_than_symbols_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--source", "replay", "--symbols", "btcusdt,ethusdt", "--ingest-shards", "3", "--run-for", "0"]
    assert up.main(argv) == 2  # before any server starts
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "cryptopipe up: --ingest-shards 3 exceeds the 2 symbol(s) to stream (btcusdt,ethusdt): "
        "each shard needs at least one symbol"
    ]
    with pytest.raises(SystemExit) as exc:
        up.build_parser().parse_args(["--consumers", "0"])
    assert exc.value.code == 2
