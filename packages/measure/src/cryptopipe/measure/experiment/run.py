"""``cryptopipe experiment run``: run the pipeline the way ``cryptopipe up`` does, measure it, and
write one self-describing result directory (see :mod:`cryptopipe.measure.experiment.result`).

The pipeline is ``up``'s own :class:`~cryptopipe.pipeline.Pipeline` (same servers, services and
drain), started with ``up``'s source flags. While it runs, every service's /metrics (and this
process's own: broker and Redis resources) is scraped once a second, and a tap consumer reads
the prices topic for the raw per-trade network latencies; the prices consumer's exact
system- and E2E-latency samples (one pair per written live trade) come from its
``--latency-samples`` file after the drain.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tqdm import tqdm

from cryptopipe.infra import InfraError
from cryptopipe.measure.experiment.details import headline
from cryptopipe.measure.experiment.errors import ExperimentError
from cryptopipe.measure.experiment.result import read_result, write_result
from cryptopipe.measure.experiment.summarize import summarize
from cryptopipe.observability import metrics as m
from cryptopipe.observability.query import series_name
from cryptopipe.pipeline import Pipeline, PipelineConfig, books_of
from cryptopipe.pipeline.drain import drain
from cryptopipe.pipeline.flags import add_pipeline_arguments, config_from_args
from cryptopipe.pipeline.summary import summary
from cryptopipe.runtime.jvm import JavaRuntime
from cryptopipe.schemas import PRICES, ConfigError, decode_trade
from cryptopipe.schemas.errors import DecodeError

logger = logging.getLogger(__name__)

Row = dict[str, Any]
#: The progress bar: seconds measured of those asked for (no rate: it would read "1.03s/s").
PROGRESS = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f} of {total:.0f} s measured"


def parse_labels(values: Sequence[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise ExperimentError(f"--label {value!r}: expected KEY=VALUE")
        labels[key] = text
    return labels


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptopipe experiment run",
        description="Run the pipeline (up's source flags apply, e.g. --source replay --delay-ms 130) "
        "and write one result directory.",
    )
    parser.add_argument("--name", required=True, help="the environment's name, e.g. aws-tokyo")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    parser.add_argument("--duration", type=float, required=True, metavar="S", help="seconds to measure")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="the result directory")
    parser.add_argument(
        "--attach",
        action="append",
        default=[],
        metavar="SERVICE=URL",
        help="measure a pipeline that is already running, through these /metrics endpoints "
        "(repeatable; with KAFKA_BOOTSTRAP_SERVERS set, new trades on its prices topic are tapped too); "
        "up's flags are then not allowed",
    )
    parser.add_argument("--scrape-interval", type=float, default=1.0, metavar="S", help="default 1 s")
    return parser


class Tap(threading.Thread):
    """Reads the prices topic from the start and keeps each trade's network latency (µs)."""

    def __init__(self, bootstrap: dict[str, Any], topic: str, reset: str = "earliest") -> None:
        super().__init__(name="experiment-tap", daemon=True)
        self.config = {
            **bootstrap,
            "group.id": f"cryptopipe-experiment-{os.getpid()}-{time.time_ns()}",
            "auto.offset.reset": reset,
            "enable.auto.commit": False,
        }
        self.topic = topic
        self.trades: list[tuple[str, int, int, int]] = []  # symbol, trade_id, trade_time_us, network_us
        self.undecodable = 0
        self._halt = threading.Event()

    def run(self) -> None:
        from confluent_kafka import Consumer

        consumer = Consumer(self.config)
        consumer.subscribe([self.topic])
        try:
            while not self._halt.is_set():
                for message in consumer.consume(500, timeout=0.2):
                    value = message.value()
                    if message.error() is not None or value is None:
                        continue
                    try:
                        trade = decode_trade(value)
                    except DecodeError:
                        self.undecodable += 1
                        continue
                    if not trade.backfilled:
                        network = trade.receive_time_us - trade.trade_time_us
                        self.trades.append((trade.symbol, trade.trade_id, trade.trade_time_us, network))
        finally:
            consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


def scrape_rows(urls: dict[str, str], started: float, *, own_registry: bool = True) -> list[Row]:
    """One scrape of every service (and this process's registry: broker and Redis resources) as tidy rows."""
    texts: dict[str, str] = {}
    if own_registry:
        texts["orchestrator"] = generate_latest(REGISTRY).decode("utf-8")
    for service, url in urls.items():
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                texts[service] = response.read().decode("utf-8")
        except OSError:
            continue
    now = time.monotonic() - started
    rows: list[Row] = []
    for service, text in texts.items():
        for family in text_string_to_metric_families(text):
            if not family.name.startswith("cryptopipe_"):
                continue
            for sample in family.samples:
                labels = json.dumps(dict(sample.labels), sort_keys=True)
                rows.append(
                    {
                        "time_s": now,
                        "service": service,
                        "metric": sample.name,
                        "labels": labels,
                        "value": sample.value,
                    }
                )
    return rows


def _version(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None and not Path(command[0]).exists():
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except OSError:
        return None
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else None


def _redis_version(url: str) -> str | None:
    from cryptopipe.store import connect_redis

    client = connect_redis(url)
    try:
        return str(client.info("server").get("redis_version"))
    except Exception:  # an environment fact, never a reason to lose the run
        logger.warning("could not read Redis's version", exc_info=True)
        return None
    finally:
        client.close()


def java_version(pipeline: Pipeline) -> str | None:
    """The Java the run used: the broker's, when this run started one on Java, else Spark's; None
    when no Java ran under this run (a configured broker and alerting off)."""
    runtime = getattr(pipeline.kafka.server if pipeline.kafka is not None else None, "java", None)
    if isinstance(runtime, JavaRuntime):
        return f"{runtime.version} (broker: {runtime.executable})"
    if pipeline.java:
        found = _version([pipeline.java, "-version"])
        return f"{found} (spark: {pipeline.java})" if found else None
    return None


def environment(pipeline: Pipeline) -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "versions": {
            "python": platform.python_version(),
            "java": java_version(pipeline),
            "broker": pipeline.state.broker,
            # the run's own URL (the services may each have a user of their own, without INFO)
            "redis": _redis_version(pipeline.redis.url.get_secret_value()) if pipeline.redis else None,
        },
    }


def _clock_offset_ms(rows: list[Row]) -> float | None:
    values = [r["value"] for r in rows if r["metric"] == series_name(m.CLOCK_OFFSET)]
    return values[-1] * 1000 if values else None


def clock_uncertainty_ms(rows: list[Row]) -> float | None:
    """The last 95 % half-width of the offset estimate ingest corrected with (Binance's REST time),
    in ms: the error bar every skew-corrected network latency of the run carries."""
    name = series_name(m.CLOCK_OFFSET_UNCERTAINTY)
    values = [
        r["value"]
        for r in rows
        if r["metric"] == name and json.loads(r["labels"]).get("reference", "binance") == "binance"
    ]
    return round(values[-1] * 1000, 3) if values else None


def _samples(tap: Tap, offset_ms: float | None, system_file: Path | None) -> list[Row]:
    rows: list[Row] = []
    for symbol, trade_id, trade_time_us, network_us in tap.trades:
        base = {"symbol": symbol, "trade_id": trade_id, "trade_time_us": trade_time_us}
        rows.append({**base, "metric": "network", "value_ms": network_us / 1000})
        if offset_ms is not None:
            rows.append({**base, "metric": "network_corrected", "value_ms": network_us / 1000 + offset_ms})
    if system_file is not None and system_file.exists():
        written = json.loads(system_file.read_text())
        rows += [{"metric": "system", "value_ms": us / 1000} for us in written["samples_us"]]
        # The same written trades' E2E latencies (written minus trade time), index for index.
        rows += [{"metric": "e2e", "value_ms": us / 1000} for us in written.get("e2e_samples_us", ())]
    return rows


def _measure(
    urls: dict[str, str],
    args: argparse.Namespace,
    started: float,
    check: Callable[[], None] = lambda: None,
    *,
    own_registry: bool = True,
) -> list[Row]:
    """Scrape ``urls`` every ``--scrape-interval`` for ``--duration`` s behind a progress bar;
    ``check`` raises when the pipeline broke."""
    rows: list[Row] = []
    with tqdm(
        total=round(args.duration), desc=f"experiment {args.name}", leave=True, bar_format=PROGRESS
    ) as bar:
        while (elapsed := time.monotonic() - started) < args.duration:
            rows += scrape_rows(urls, started, own_registry=own_registry)
            check()
            bar.n = min(round(elapsed), bar.total)
            bar.refresh()
            time.sleep(args.scrape_interval)
        bar.n = bar.total
        bar.refresh()
    return rows + scrape_rows(urls, started, own_registry=own_registry)


def _pipeline_alive(pipeline: Pipeline) -> None:
    dead = pipeline.dead_service()
    if dead is not None:
        raise ExperimentError(f"{dead.name} exited with code {dead.returncode()}: {dead.log_tail()}")


def parse_attach(values: Sequence[str]) -> dict[str, str]:
    """``SERVICE=URL`` pairs: the /metrics endpoints of a pipeline that is already running."""
    urls = parse_labels(values)
    for service, url in urls.items():
        if not url.startswith(("http://", "https://")):
            raise ExperimentError(f"--attach {service}={url}: expected SERVICE=http://HOST:PORT/metrics")
    return urls


def attach_experiment(args: argparse.Namespace) -> Path:
    """Measure a pipeline someone else runs: its /metrics endpoints, plus the network latency of
    every new trade on its prices topic when ``KAFKA_BOOTSTRAP_SERVERS`` says where it is."""
    from cryptopipe.schemas import KafkaSettings, load_settings

    urls = parse_attach(args.attach)
    tap: Tap | None = None
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        settings = load_settings(KafkaSettings)
        tap = Tap(settings.client_config(), PRICES.with_prefix(settings.topic_prefix).name, "latest")
        tap.start()
    start_utc = datetime.now(UTC)
    rows = _measure(urls, args, time.monotonic(), own_registry=False)
    end_utc = datetime.now(UTC)
    if tap is not None:
        tap.stop()
    offset_ms = _clock_offset_ms(rows)
    samples = _samples(tap, offset_ms, None) if tap is not None else []
    metadata = {
        "name": args.name,
        "labels": parse_labels(args.label),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "versions": {"python": platform.python_version(), "java": None, "broker": None, "redis": None},
        "clock_offset_ms": offset_ms,
        "clock_offset_uncertainty_ms": clock_uncertainty_ms(rows),
        "source": {"kind": "attach", "metrics": urls, "prices_tap": tap is not None},
        "symbols": sorted({json.loads(r["labels"]).get("symbol") for r in rows} - {None}),
        "start_utc": start_utc.isoformat(),
        "end_utc": end_utc.isoformat(),
        "duration_s": args.duration,
        "raw_samples": bool(samples),
    }
    tables = {"samples": samples, "metrics": rows, "summary": summarize(rows, samples)}
    return Path(write_result(args.out, metadata, tables))


def pipeline_config(up_argv: Sequence[str], samples: Path) -> PipelineConfig:
    """The pipeline ``up`` would run with the same flags, without the dashboard, with the prices
    consumers' latency samples in ``samples``."""
    parser = argparse.ArgumentParser(prog="cryptopipe experiment run", add_help=False)
    add_pipeline_arguments(parser)
    config = config_from_args(parser.parse_args(up_argv))
    observability = config.observability.model_copy(update={"dashboard": False})
    return config.model_copy(update={"observability": observability, "latency_samples": samples})


def run_experiment(args: argparse.Namespace, up_argv: Sequence[str]) -> Path:
    labels = parse_labels(args.label)
    with tempfile.TemporaryDirectory(prefix="cryptopipe-experiment-") as tmp, contextlib.ExitStack() as stack:
        config = pipeline_config(up_argv, Path(tmp))
        pipeline = Pipeline(config, stack, Path(tmp))
        pipeline.start()
        assert pipeline.kafka is not None
        system_file = pipeline.latency_samples_file("prices-consumer")
        tap = Tap(pipeline.kafka.settings.client_config(), pipeline.prices_topic)
        tap.start()
        start_utc = datetime.now(UTC)
        started = time.monotonic()
        urls = {n: s.metrics_url for n, s in pipeline.state.services.items() if s.metrics_url}
        metric_rows = _measure(urls, args, started, lambda: _pipeline_alive(pipeline))
        end_utc = datetime.now(UTC)
        drain(pipeline)
        books = books_of(pipeline)
        figures = summary(pipeline, time.monotonic() - started, books)
        tap.stop()
        offset_ms = _clock_offset_ms(metric_rows)
        samples = _samples(tap, offset_ms, system_file)
        replay = config.exchange.replay
        metadata = {
            "name": args.name,
            "labels": labels,
            **environment(pipeline),
            "clock_offset_ms": offset_ms,
            "clock_offset_uncertainty_ms": clock_uncertainty_ms(metric_rows),
            "source": {
                "kind": config.exchange.source,
                "argv": list(up_argv),
                "delay_ms": replay.delay_ms if replay is not None else 0,
            },
            "symbols": pipeline.state.symbols,
            "start_utc": start_utc.isoformat(),
            "end_utc": end_utc.isoformat(),
            "duration_s": args.duration,
            "run": {k: figures[k] for k in ("trades_received", "trades_published", "prices_written", "lost")},
            "balanced": books.balanced,
            "books_line": books.line(),
            "tap_undecodable": tap.undecodable,
        }
    rows = {"samples": samples, "metrics": metric_rows, "summary": summarize(metric_rows, samples)}
    return Path(write_result(args.out, metadata, rows))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, up_argv = parser.parse_known_args(argv)
    if args.attach and up_argv:
        parser.error(f"--attach measures a running pipeline; up's flags do not apply: {' '.join(up_argv)}")
    try:
        out = attach_experiment(args) if args.attach else run_experiment(args, up_argv)
        result = read_result(out)
    except (ExperimentError, ConfigError, InfraError) as exc:
        print(f"cryptopipe experiment run: {exc}", flush=True)
        return 1
    for line in headline(result.metadata, result.stat):
        print(f"cryptopipe experiment run: {line}", flush=True)
    print(f"cryptopipe experiment run: result written to {out}", flush=True)
    return 0
