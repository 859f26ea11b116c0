"""The cryptopipe command: every subcommand resolves, the generated docs are current."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from cryptopipe.cli import docs, up
from cryptopipe.cli.main import COMMANDS, main
from cryptopipe.infra import KafkaEndpoint
from cryptopipe.infra.kafka import TANSU_QUIRKS, KafkaQuirks
from cryptopipe.observability import Scrape
from cryptopipe.schemas import KafkaSettings, settings_of

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


# --- books: what reached Kafka against what reached Redis ----------------------------------------


def test_unwritten_is_what_was_published_and_never_accounted_for() -> None:
    books = up.TopicBooks("prices", published=88_567, consumed=29_160, written=29_160)
    assert books.unwritten == 88_567 - 29_160
    assert books.surplus == 0
    # A stale record (older than the latest in Redis) is accounted for, and so is a dead letter.
    books = up.TopicBooks("prices", published=100, consumed=100, written=90, stale=7, dead_lettered=3)
    assert (books.accounted, books.unwritten, books.surplus) == (100, 0, 0)
    assert books.as_dict() == {
        "published": 100,
        "consumed": 100,
        "written": 90,
        "stale": 7,
        "dead_lettered": 3,
        "unwritten": 0,
        "surplus": 0,
    }
    # Records left by an earlier run are surplus, never negative unwritten.
    books = up.TopicBooks("prices", published=10, consumed=15, written=15)
    assert (books.unwritten, books.surplus) == (0, 5)


def test_books_that_do_not_balance_say_so_in_one_line_and_lost_is_not_zero() -> None:
    ingest = up.IngestBooks(received=88_567, published=88_567)
    books = up.Books(
        ingest, {"prices": up.TopicBooks("prices", 88_567, consumed=87_333, written=87_000, stale=333)}
    )
    assert books.unwritten == 1234
    assert books.lost == 1234
    assert not books.balanced
    assert books.line() == (
        "BOOKS DO NOT BALANCE: 1234 of 88567 published trades were never written to Redis (prices topic)"
    )
    assert "\n" not in books.line()
    summary = books.as_dict()
    assert summary["balanced"] is False
    assert summary["prices"]["unwritten"] == 1234
    assert summary["ingest"] == {
        "received": 88_567,
        "backfilled": 0,
        "duplicates": 0,
        "published": 88_567,
        "lost": 0,
        "unfilled": 0,
        "unaccounted": 0,
    }


def test_lost_counts_every_missing_trade_once() -> None:
    # 1000 live + 20 backfilled taken in; 5 duplicates dropped on purpose; 3 lost in the producer;
    # 2 vanished inside ingest; of the 1010 published, 4 never reached Redis.
    ingest = up.IngestBooks(received=1000, backfilled=20, duplicates=5, published=1010, lost=3)
    assert ingest.unaccounted == 2
    prices = up.TopicBooks("prices", 1010, consumed=1006, written=1000, stale=6)
    alerts = up.TopicBooks("alerts", 3, consumed=1, written=1)
    books = up.Books(ingest, {"prices": prices, "alerts": alerts})
    assert books.lost == 3 + 2 + 4
    assert books.unwritten == 4 + 2  # trades and alerts
    assert books.line() == (
        "BOOKS DO NOT BALANCE: 2 of 1020 trades ingest took in were neither published, duplicates "
        "nor counted lost (ingest); 4 of 1010 published trades were never written to Redis (prices "
        "topic); 2 of 3 published alerts were never written to Redis (alerts topic)"
    )


def test_balanced_books_print_one_line_of_figures() -> None:
    ingest = up.IngestBooks(received=1200, published=1200)
    prices = up.TopicBooks("prices", 1200, consumed=1200, written=1195, stale=5)
    alerts = up.TopicBooks("alerts", 1, consumed=1, written=1)
    books = up.Books(ingest, {"prices": prices, "alerts": alerts})
    assert books.balanced
    assert (books.unwritten, books.lost) == (0, 0)
    assert books.line() == (
        "books balance: 1200 trades received, 1200 published = 1195 written + 5 stale + 0 dead-lettered, "
        "0 lost (prices topic); 1 alerts published = 1 written + 0 stale + 0 dead-lettered (alerts topic)"
    )
    # Losses ingest counted (with a reason) are in the books, and in `lost`.
    counted = up.Books(
        up.IngestBooks(received=10, published=8, lost=2), {"prices": up.TopicBooks("prices", 8, 8, 8)}
    )
    assert counted.balanced
    assert counted.lost == 2
    # Trades missing from the stream that backfill could not recover are lost too, and said so.
    gaps = up.Books(
        up.IngestBooks(received=10, published=10, unfilled=7), {"prices": up.TopicBooks("prices", 10, 10, 10)}
    )
    assert gaps.lost == 7
    assert "7 lost (7 in stream gaps never backfilled)" in gaps.line()
    assert up.ingest_books({"received": 3, "published": 3, "unfilled": 4}, Scrape.from_text("")).unfilled == 4


def test_books_fall_back_to_the_last_scrape_when_a_service_left_no_stats() -> None:
    consumer = Scrape.from_text(
        "# TYPE cryptopipe_consumer_messages counter\n"
        'cryptopipe_consumer_messages_total{consumer="prices",topic="prices"} 90\n'
        "# TYPE cryptopipe_prices_stale counter\n"
        'cryptopipe_prices_stale_total{symbol="BTCUSDT"} 4\n'
        "# TYPE cryptopipe_dead_letters counter\n"
        'cryptopipe_dead_letters_total{component="prices-consumer",reason="malformed_json"} 1\n'
        'cryptopipe_dead_letters_total{component="ingest",reason="malformed_json"} 7\n'
    )
    books = up.topic_books("prices", 100, {}, consumer, "prices-consumer")
    assert (books.consumed, books.written, books.stale, books.dead_lettered) == (91, 86, 4, 1)
    assert books.unwritten == 9
    stats = {"topic": "prices", "consumed": 100, "written": 99, "stale": 1, "dead_lettered": 0}
    assert up.topic_books("prices", 100, stats, consumer, "prices-consumer").unwritten == 0
    ingest = Scrape.from_text(
        "# TYPE cryptopipe_ingest_trades_received counter\n"
        'cryptopipe_ingest_trades_received_total{symbol="BTCUSDT"} 50\n'
        'cryptopipe_ingest_trades_received_total{symbol="ETHUSDT"} 50\n'
        "# TYPE cryptopipe_ingest_trades_published counter\n"
        'cryptopipe_ingest_trades_published_total{symbol="BTCUSDT"} 48\n'
    )
    assert up.ingest_books({}, ingest) == up.IngestBooks(received=100, published=48)
    assert up.ingest_books({"received": 3, "published": 3, "gaps": 1}, ingest) == up.IngestBooks(3, 0, 0, 3)


def _pipeline_with_stats(tmp_path: Path, ingest: dict[str, int], prices: dict[str, int]) -> up.Pipeline:
    args = up.build_parser().parse_args(["--source", "replay", "--no-alerting", "--no-dashboard"])
    pipeline = up.Pipeline(args, contextlib.ExitStack(), tmp_path)
    for name, stats in (("ingest", ingest), ("prices-consumer", prices)):
        path = tmp_path / f"{name}-stats.json"
        path.write_text(json.dumps(stats))
        pipeline.runtime.stats_files[name] = path
        pipeline.runtime.services[name] = None  # type: ignore[assignment]  # only names are read
    return pipeline


def test_summary_reports_reconciliation_unwritten_and_lost(tmp_path: Path) -> None:
    pipeline = _pipeline_with_stats(
        tmp_path,
        {"received": 88_567, "published": 88_567, "lost": 0, "backfilled": 0, "duplicates": 0},
        {"topic": "prices", "consumed": 29_160, "written": 29_160, "stale": 0, "dead_lettered": 0},
    )
    summary = pipeline.summary(12.0)
    assert summary["trades_published"] == 88_567
    assert summary["prices_written"] == 29_160
    assert summary["unwritten"] == 88_567 - 29_160
    assert summary["lost"] == summary["unwritten"]  # never 0 while trades are missing
    assert summary["reconciliation"]["balanced"] is False
    assert summary["reconciliation"]["prices"] == {
        "published": 88_567,
        "consumed": 29_160,
        "written": 29_160,
        "stale": 0,
        "dead_lettered": 0,
        "unwritten": 59_407,
        "surplus": 0,
    }
    assert "alerts" not in summary["reconciliation"]  # no alerting job, no alerts books
    json.dumps(summary)  # the summary file must serialise


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
            up.EXIT_UNBALANCED,
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

    def start_services(self: up.Pipeline, _ws: str, _rest: str) -> None:
        for name, stats in (("ingest", ingest), ("prices-consumer", prices)):
            path = self.workdir / f"{name}-stats.json"
            path.write_text(json.dumps(stats))
            self.runtime.stats_files[name] = path

    def no_op(*_args: object) -> None:
        return None

    monkeypatch.setattr(up.Pipeline, "start_servers", no_op)
    monkeypatch.setattr(up.Pipeline, "start_exchange", lambda self: ("ws://-", "http://-"))
    monkeypatch.setattr(up.Pipeline, "start_services", start_services)
    monkeypatch.setattr(up.Pipeline, "start_observability", no_op)
    monkeypatch.setattr(up.Pipeline, "drain", no_op)
    monkeypatch.setattr(up.Pipeline, "dead_service", lambda self: None)
    # books() reads the consumers the run started; stubbed services are not started.
    real_books = up.Pipeline.books

    def books(self: up.Pipeline) -> up.Books:
        self.runtime.services.setdefault("prices-consumer", None)  # type: ignore[arg-type]
        return real_books(self)

    monkeypatch.setattr(up.Pipeline, "books", books)
    summary_path = tmp_path / "summary.json"
    argv = ["--source", "replay", "--no-alerting", "--run-for", "0", "--summary-json", str(summary_path)]
    assert up.main(argv) == expected_code
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == expected_line
    assert sum("BOOKS" in line or "books balance" in line for line in lines) == 1
    summary = json.loads(summary_path.read_text())
    assert summary["unwritten"] == 1000 - written
    assert summary["lost"] == 1000 - written


# --- scale-out: ingest shards and consumer-group members ------------------------------------------


def test_symbols_are_dealt_round_robin_to_disjoint_shards() -> None:
    symbols = ["btcusdt", "ethusdt", "bnbusdt", "xrpusdt", "solusdt"]
    assert up.split_symbols(symbols, 1) == [symbols]
    assert up.split_symbols(symbols, 2) == [["btcusdt", "bnbusdt", "solusdt"], ["ethusdt", "xrpusdt"]]
    shards = up.split_symbols(symbols, 5)
    assert shards == [[s] for s in symbols]
    for n in range(1, 6):
        shards = up.split_symbols(symbols, n)
        assert len(shards) == n
        assert sorted(s for shard in shards for s in shard) == sorted(symbols)  # disjoint, complete
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    with pytest.raises(up.ConfigError, match="--ingest-shards 3 exceeds the 2 symbol"):
        up.split_symbols(["btcusdt", "ethusdt"], 3)


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


def test_member_names_keep_the_first_process_named_after_its_component() -> None:
    assert up.member_names("ingest", 1) == ["ingest"]
    assert up.member_names("prices-consumer", 3) == [
        "prices-consumer",
        "prices-consumer-2",
        "prices-consumer-3",
    ]
    assert [up.component_of(n) for n in up.member_names("prices-consumer", 3)] == ["prices-consumer"] * 3
    assert up.component_of("ingest-12") == "ingest"
    assert up.component_of("replay-exchange") == "replay-exchange"
    # The first of each keeps its row in the port table; the others get free ports.
    ports = up._Ports(9200)
    assert (ports.of("ingest"), ports.of("prices-consumer")) == (9201, 9202)
    assert ports.of("ingest-2") not in (9201, 9202, 9203, 9204, 9205, 9206, 9209)


def test_a_consumer_group_is_assigned_once_every_partition_has_an_owner() -> None:
    assert up.group_assigned([1], 1)
    assert not up.group_assigned([0], 1)
    assert up.group_assigned([2, 2], 4)
    assert up.group_assigned([2, 1, 1], 4)
    assert not up.group_assigned([4, 0], 4)  # the second member has not joined yet
    assert not up.group_assigned([0, 2], 4)  # mid-rebalance: the first gave its partitions up
    assert up.group_assigned([1, 1, 1, 1, 0, 0], 4)  # six members, four partitions: two idle
    assert not up.group_assigned([1, 1, 1, 0, 0, 0], 4)
    assert up.group_assigned([4, 4], 8)


def test_books_sum_the_shards_and_the_consumers() -> None:
    shards = [
        up.IngestBooks(received=600, published=598, lost=2),
        up.IngestBooks(received=400, published=400),
    ]
    ingest = up.sum_ingest_books(shards)
    assert ingest == up.IngestBooks(received=1000, published=998, lost=2)
    members = [
        up.TopicBooks("prices", 0, consumed=500, written=495, stale=5),
        up.TopicBooks("prices", 0, consumed=498, written=497, dead_lettered=1),
    ]
    prices = up.sum_topic_books("prices", ingest.published, members)
    assert (prices.published, prices.consumed, prices.written, prices.stale, prices.dead_lettered) == (
        998,
        998,
        992,
        5,
        1,
    )
    assert prices.unwritten == 0
    books = up.Books(
        ingest,
        {"prices": prices},
        shards={"ingest": shards[0], "ingest-2": shards[1]},
        consumers={"prices": {"prices-consumer": members[0], "prices-consumer-2": members[1]}},
    )
    assert books.balanced
    assert books.lost == 2
    figures = books.as_dict()
    assert figures["ingest"]["received"] == 1000
    assert figures["ingest_by_shard"]["ingest-2"]["published"] == 400
    assert figures["prices_by_consumer"] == {
        "prices-consumer": {"consumed": 500, "written": 495, "stale": 5, "dead_lettered": 0},
        "prices-consumer-2": {"consumed": 498, "written": 497, "stale": 0, "dead_lettered": 1},
    }
    # A member short of its share shows up in the sum as unwritten.
    short = up.sum_topic_books("prices", 998, [members[0], up.TopicBooks("prices", 0, 400, 400)])
    assert short.unwritten == 998 - 900


def test_summary_sums_every_shard_and_consumer(tmp_path: Path) -> None:
    args = up.build_parser().parse_args(
        ["--source", "replay", "--no-alerting", "--ingest-shards", "2", "--consumers", "2"]
    )
    pipeline = up.Pipeline(args, contextlib.ExitStack(), tmp_path)
    stats = {
        "prices-consumer": {"consumed": 700, "written": 690, "stale": 10, "dead_lettered": 0},
        "prices-consumer-2": {"consumed": 300, "written": 300, "stale": 0, "dead_lettered": 0},
        "ingest": {"received": 610, "published": 610, "reconnects": 1},
        "ingest-2": {"received": 390, "published": 390, "reconnects": 2},
    }
    for name, figures in stats.items():
        path = tmp_path / f"{name}-stats.json"
        path.write_text(json.dumps(figures))
        pipeline.runtime.stats_files[name] = path
        pipeline.runtime.services[name] = None  # type: ignore[assignment]  # only names are read
    assert pipeline.members("ingest") == ["ingest", "ingest-2"]
    assert pipeline._published() == 1000
    summary = pipeline.summary(10.0)
    assert (summary["ingest_shards"], summary["consumers"]) == (2, 2)
    assert summary["trades_received"] == summary["trades_published"] == 1000
    assert (summary["prices_written"], summary["prices_stale"], summary["unwritten"]) == (990, 10, 0)
    assert summary["reconnects"] == 3
    books = summary["reconciliation"]
    assert books["balanced"] is True
    assert books["prices"]["published"] == 1000
    assert books["prices_by_consumer"]["prices-consumer-2"]["written"] == 300
    assert books["ingest_by_shard"]["ingest"]["received"] == 610
    json.dumps(summary)
    # A shard that left no stats file: the consumers are drained by their lag alone.
    (tmp_path / "ingest-2-stats.json").unlink()
    assert pipeline._published() is None


def test_bench_merges_every_consumers_latency_samples() -> None:
    from cryptopipe.cli import bench_prices

    # Below the reservoirs' capacity every sample is kept.
    assert sorted(bench_prices.merge_samples([(3, [1, 2, 3]), (2, [10, 20])])) == [1, 2, 3, 10, 20]
    assert bench_prices.merge_samples([]) == []
    # A full reservoir: each part thinned to the smallest kept fraction (here 1/10), so the
    # busier consumer keeps its weight.
    merged = bench_prices.merge_samples([(1000, list(range(100))), (20, [7] * 20)])
    assert len(merged) == 100 + 2
    assert merged.count(7) >= 2
    # Rows (system, consumer's part) stay whole when merged.
    rows = bench_prices.merge_samples([(1000, [(i, i // 2) for i in range(100)]), (20, [(7, 3)] * 20)])
    assert all(part == system // 2 for system, part in rows if system != 7)
    cpu = bench_prices.component_cpu(
        {"ingest": 1.0, "ingest-2": 2.0, "broker": 5.0},
        {"ingest": 3.0, "ingest-2": 3.5, "broker": 9.0, "prices-consumer-2": 1.25},
    )
    assert cpu == {"ingest": 3.5, "broker": 4.0, "prices-consumer": 1.25}


def test_a_dead_shard_or_consumer_is_detected(tmp_path: Path) -> None:
    class Stub:
        def __init__(self, name: str, running: bool) -> None:
            self.name, self._running = name, running

        def running(self) -> bool:
            return self._running

    args = up.build_parser().parse_args(["--source", "replay", "--ingest-shards", "2", "--consumers", "2"])
    pipeline = up.Pipeline(args, contextlib.ExitStack(), tmp_path)
    for name in ("prices-consumer", "prices-consumer-2", "ingest", "ingest-2"):
        pipeline.runtime.services[name] = Stub(name, True)  # type: ignore[assignment]
    assert pipeline.dead_service() is None
    pipeline.runtime.services["prices-consumer-2"] = Stub("prices-consumer-2", False)  # type: ignore[assignment]
    dead = pipeline.dead_service()
    assert dead is not None
    assert dead.name == "prices-consumer-2"


def test_up_hands_the_alert_job_its_rules_as_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptopipe.alerting.settings import AlertingSettings
    from cryptopipe.runtime import environ_of

    args = up.build_parser().parse_args(["--rule", "1m:0.5%", "--rule", "5m:1%:early:name=slow"])
    settings = up.alerting_settings(args, master="local[2]", starting_offsets="earliest")
    assert [str(rule) for rule in settings.rules] == ["1m:0.5%:name=1m-0.5pct", "5m:1%:early:name=slow"]
    # What the child reads back from its environment is what up decided.
    for name, value in environ_of(settings).items():
        monkeypatch.setenv(name, value)
    assert AlertingSettings() == settings
    threshold = up.alerting_settings(up.build_parser().parse_args(["--threshold", "2%"]))
    assert [rule.threshold for rule in threshold.rules] == [Decimal("0.02")]


@pytest.mark.parametrize("flags", [["--rule", "1m:lots"], ["--threshold", "150%"]])
def test_a_bad_rule_stops_up_before_anything_starts(flags: list[str]) -> None:
    parse = up.build_parser().parse_args
    problem = up._preflight(parse(["--source", "replay", *flags]))
    assert problem is not None
    assert "--rule/--threshold" in problem
    assert up._preflight(parse(["--source", "replay", "--no-alerting", *flags])) is None


def test_bench_splits_system_latency_where_the_consumer_fetched(tmp_path: Path) -> None:
    from cryptopipe.cli import bench_prices

    # 100 trades: 98 spend about 1 ms before the fetch and 0.2 ms after it; the two slowest
    # spend 9 ms before it. The p99 (nearest rank) is the 99th: the tail is those two, and the
    # split says that the first stage made it.
    rows: list[tuple[int, int | None]] = [(1200 + i, 200) for i in range(98)] + [(9200, 200), (9400, 400)]
    stages = bench_prices.latency_stages(rows)
    assert stages is not None
    assert stages["receive_to_fetch"] == {"p50": 1.049, "p95": 1.094, "p99": 9.0}
    assert stages["fetch_to_written"] == {"p50": 0.2, "p95": 0.2, "p99": 0.2}
    assert stages["p99_tail_mean_ms"] == {"receive_to_fetch": 9.0, "fetch_to_written": 0.3}
    # A consumer that wrote no split: no figures rather than made-up ones.
    assert bench_prices.latency_stages([(1200, None)]) is None

    # A samples file as the consumer writes it, with and without the split.
    path = tmp_path / "latency.json"
    path.write_text(json.dumps({"seen": 3, "samples_us": [5, 6], "fetch_to_written_samples_us": [1, 2]}))
    assert bench_prices._read_samples(path) == (3, [(5, 1), (6, 2)])
    path.write_text(json.dumps({"seen": 2, "samples_us": [5, 6], "fetch_to_written_samples_us": []}))
    assert bench_prices._read_samples(path) == (2, [(5, None), (6, None)])
    assert bench_prices._read_samples(tmp_path / "missing.json") == (0, [])


@pytest.mark.parametrize(
    ("quirks", "env", "expected"),
    [
        (TANSU_QUIRKS, None, "python"),  # ListOffsets short of the log: Spark's connector would miss the tail
        (KafkaQuirks(), None, "auto"),  # Apache Kafka: the job picks its connector itself
        (TANSU_QUIRKS, "native", "native"),  # told which: done as told
    ],
)
def test_up_reads_prices_with_the_python_source_where_list_offsets_falls_short(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    quirks: KafkaQuirks,
    env: str | None,
    expected: str,
) -> None:
    monkeypatch.delenv("ALERTING_SOURCE", raising=False)
    if env is not None:
        monkeypatch.setenv("ALERTING_SOURCE", env)
    args = up.build_parser().parse_args(["--source", "replay", "--no-dashboard"])
    pipeline = up.Pipeline(args, contextlib.ExitStack(), tmp_path)
    pipeline.kafka = KafkaEndpoint("127.0.0.1:9", "some broker", quirks, settings_of(KafkaSettings))
    assert pipeline.alerting_settings().source == expected
    said = capsys.readouterr().err
    assert ("reads with the Python Data Source" in said) is (expected == "python")


@pytest.mark.parametrize(
    ("ends", "published", "expected"),
    [
        ({0: 10, 1: 5}, 15, 3),  # the broker's ends against the job's read offsets (7 and 5)
        ({0: 7, 1: 5}, 15, 0),
        (None, 100, 10),  # ends unknown (Tansu): ingest's count against the rows the job read (90)
        (None, None, None),  # neither: unknown, not 0
    ],
)
def test_up_reports_what_the_alerting_job_left_unread(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ends: dict[int, int] | None,
    published: int | None,
    expected: int | None,
) -> None:
    args = up.build_parser().parse_args(["--source", "replay", "--no-dashboard"])
    pipeline = up.Pipeline(args, contextlib.ExitStack(), tmp_path)
    scrape = Scrape.from_text(
        "# TYPE cryptopipe_alerting_read_offset gauge\n"
        'cryptopipe_alerting_read_offset{topic="prices",partition="0"} 7\n'
        'cryptopipe_alerting_read_offset{topic="prices",partition="1"} 5\n'
        "# TYPE cryptopipe_alerting_input_rows counter\n"
        "cryptopipe_alerting_input_rows_total 90\n"
    )
    monkeypatch.setattr(pipeline, "_prices_ends", lambda: ends)
    monkeypatch.setattr(pipeline, "scrape", lambda *names: scrape)
    monkeypatch.setattr(pipeline, "_wait_until", lambda *a, **k: expected == 0)  # the job stopped there
    pipeline._drain_alerting(published)
    assert pipeline.runtime.alerting_unread == expected
    said = capsys.readouterr().err
    assert ("records unread" in said) is bool(expected), said
    if expected:
        assert f"stops with {expected} prices records unread" in said


def test_a_long_drain_wait_says_what_is_left_every_5_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = up.build_parser().parse_args(["--source", "replay", "--no-dashboard"])
    pipeline = up.Pipeline(args, contextlib.ExitStack(), tmp_path)
    now = [1000.0]
    monkeypatch.setattr(up.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(up.time, "sleep", lambda s: now.__setitem__(0, now[0] + s))
    monkeypatch.setattr(pipeline, "scrape", lambda *names: Scrape([]))
    left = iter(range(100, 0, -1))
    done = pipeline._wait_until(
        "alerting", lambda s: False, timeout=12.0, left=lambda s: f"{next(left)} to read"
    )
    assert done is False
    lines = capsys.readouterr().err.splitlines()
    waiting = [line for line in lines if line.startswith("cryptopipe up: waiting for alerting: ")]
    assert waiting == [
        "cryptopipe up: waiting for alerting: 100 to read",
        "cryptopipe up: waiting for alerting: 99 to read",
    ]
    assert lines[-1].startswith("cryptopipe up: alerting did not catch up within 12 s")
