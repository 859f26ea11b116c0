"""``cryptopipe up``: the whole pipeline on this machine, in one command.

Order of events: resolve a broker and Redis (configured, a container when Docker answers, else
local servers from PyPI/apt), start the exchange side (live Binance, or the replay exchange),
then ingest and the consumers, each as its own process with its own /metrics. On stop (Ctrl-C,
SIGTERM or ``--run-for``) the pipeline drains front to back: ingest flushes, consumers catch up,
the figures are read from the services' metrics, and everything stops, servers last.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptopipe.cli.services import Service
from cryptopipe.infra import (
    InfraError,
    KafkaEndpoint,
    LocalServer,
    RedisEndpoint,
    free_port,
    resolve_kafka,
    resolve_redis,
)
from cryptopipe.observability import Scrape, serve_metrics
from cryptopipe.observability.process import ProcessMonitor
from cryptopipe.observability.prometheus import (
    DEFAULT_METRICS_PORTS,
    PrometheusServer,
    start_embedded_prometheus,
)
from cryptopipe.schemas import ConfigError, KafkaSettings, RedisSettings, load_settings
from cryptopipe.store import AlertStore, connect_redis

logger = logging.getLogger(__name__)

DEFAULT_BINANCE_WS = "wss://stream.binance.com:9443"
DEFAULT_BINANCE_REST = "https://api.binance.com"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptopipe up",
        description="Run the whole pipeline on this machine. Servers it cannot find, it starts.",
    )
    parser.add_argument(
        "--source",
        choices=["binance", "replay"],
        default="binance",
        help="live Binance (default) or the local replay exchange",
    )
    parser.add_argument(
        "--symbols", help="comma-separated symbols (default btcusdt,ethusdt, or the replay files')"
    )
    parser.add_argument("--mode", choices=["aggTrade", "trade"], default="aggTrade", help="stream kind")
    parser.add_argument("--run-for", type=float, metavar="SECONDS", help="stop cleanly after this long")
    parser.add_argument(
        "--summary-json", type=Path, metavar="PATH", help="write the run's figures here at exit"
    )
    parser.add_argument("--binance-ws-url", default=DEFAULT_BINANCE_WS)
    parser.add_argument("--binance-rest-url", default=DEFAULT_BINANCE_REST)
    parser.add_argument(
        "--metrics-base-port",
        type=int,
        default=9100,
        help="services' /metrics ports follow docs/metrics.md from this base (default 9100: "
        "ingest 9101, prices-consumer 9102, ...); 0 = any free ports",
    )
    parser.add_argument("--dashboard-port", type=int, default=8501, help="0 = any free port")
    parser.add_argument("--no-dashboard", action="store_true", help="do not start the dashboard")
    parser.add_argument(
        "--no-prometheus", action="store_true", help="do not start Prometheus even if installed"
    )
    parser.add_argument("--no-alerting", action="store_true", help="do not start the Spark alerting job")
    parser.add_argument("--threshold", help="the default rule's threshold, e.g. 0.5%% or 0.005")
    parser.add_argument(
        "--rule",
        action="append",
        default=[],
        metavar="RULE",
        help="alert rule WINDOW:THRESHOLD[:early]..., e.g. 5m:1%%; repeatable",
    )
    parser.add_argument("--spark-master", default="local[2]", help="Spark master (default local[2])")
    parser.add_argument(
        "--history-cap", type=int, help="trades kept per symbol in Redis history (default 1000)"
    )
    replay = parser.add_argument_group("replay exchange (with --source replay)")
    replay.add_argument("--replay-file", action="append", default=[], metavar="[SYMBOL:]PATH")
    replay.add_argument("--speed", default="1", help="1 = recorded pace, N = N times faster, max")
    replay.add_argument("--clock", choices=["live", "original"], default="live")
    replay.add_argument("--clock-offset-ms", type=int, default=0)
    replay.add_argument("--delay-ms", type=int, default=0)
    replay.add_argument("--drop-after", type=int)
    replay.add_argument("--rate", type=float, help="synthetic trades per second (all symbols)")
    replay.add_argument("--seed", type=int)
    replay.add_argument("--loop", action="store_true", help="restart the replay at the end of its data")
    return parser


@dataclass
class Runtime:
    """What ``up`` started and where everything is; read by the summary."""

    broker: str = ""
    redis: str = ""
    source: str = ""
    symbols: list[str] = field(default_factory=list)
    spark: str = "-"
    services: dict[str, Service] = field(default_factory=dict)
    stats_files: dict[str, Path] = field(default_factory=dict)
    final: dict[str, Scrape] = field(default_factory=dict)


class _Ports:
    """Metrics ports: the documented table (shifted by ``base - 9100``), or free ports when base is 0."""

    def __init__(self, base: int) -> None:
        self._base = base

    def of(self, component: str) -> int:
        if self._base == 0:
            return free_port()
        return DEFAULT_METRICS_PORTS[component] - 9100 + self._base


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def check_binance(rest_url: str, timeout: float = 5.0) -> str | None:
    """None when Binance's REST API answers; otherwise the reason, for one clear line."""
    try:
        with urllib.request.urlopen(f"{rest_url}/api/v3/time", timeout=timeout) as response:
            json.loads(response.read())
        return None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{type(reason).__name__}: {reason}" if not isinstance(reason, str) else reason


@contextlib.contextmanager
def _stop_signals(stop: threading.Event) -> Iterator[None]:
    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():
            _stderr("cryptopipe up: stopping already; a moment please")
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _replay_args(args: argparse.Namespace, ready_file: Path) -> list[str]:
    command = [
        "replay-exchange",
        "--port",
        "0",
        "--ready-file",
        str(ready_file),
        "--speed",
        args.speed,
        "--clock",
        args.clock,
    ]
    for path in args.replay_file:
        command += ["--replay-file", path]
    if args.clock_offset_ms:
        command += ["--clock-offset-ms", str(args.clock_offset_ms)]
    if args.delay_ms:
        command += ["--delay-ms", str(args.delay_ms)]
    if args.drop_after is not None:
        command += ["--drop-after", str(args.drop_after)]
    if args.rate is not None:
        command += ["--rate", str(args.rate)]
    if args.seed is not None:
        command += ["--seed", str(args.seed)]
    if args.loop:
        command.append("--loop")
    if args.symbols and not args.replay_file:
        command += ["--symbols", args.symbols]
    return command


def _served_symbols(rest_url: str) -> list[str]:
    with urllib.request.urlopen(f"{rest_url}/api/v3/exchangeInfo", timeout=5) as response:
        info = json.loads(response.read())
    return [entry["symbol"].lower() for entry in info["symbols"]]


class Pipeline:
    """Starts, watches and drains the services of one ``up`` run."""

    def __init__(
        self,
        args: argparse.Namespace,
        stack: contextlib.ExitStack,
        workdir: Path,
        *,
        extra_args: Mapping[str, Sequence[str]] | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.args = args
        self.stack = stack
        self.workdir = workdir
        self.runtime = Runtime(source=args.source)
        self.ports = _Ports(args.metrics_base_port)
        self.env: dict[str, str] = dict(extra_env or {})
        self.extra_args = {name: list(value) for name, value in (extra_args or {}).items()}
        self.servers: dict[str, LocalServer | None] = {}
        self.java: str | None = None if args.no_alerting else _find_java()
        self.prometheus: PrometheusServer | None = None

    def use_servers(self, kafka: KafkaEndpoint, redis: RedisEndpoint) -> None:
        self.runtime.broker = kafka.kind
        self.runtime.redis = redis.kind
        self.servers = {"broker": kafka.server, "redis": redis.server}
        self.env |= {
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "REDIS_URL": redis.url.get_secret_value(),
        }

    def start_servers(self) -> None:
        """Find or start the broker and Redis (see cryptopipe.infra for the order)."""
        kafka = resolve_kafka(load_settings(KafkaSettings), stack=self.stack)
        redis = resolve_redis(load_settings(RedisSettings), stack=self.stack)
        _stderr(f"cryptopipe up: broker {kafka}; redis {redis}")
        self.use_servers(kafka, redis)

    def _start(self, name: str, command: list[str], **kwargs: Any) -> Service:
        """Start one service (plus any extra flags the caller asked for) and follow its log."""
        service = Service(name, [*command, *self.extra_args.get(name, ())], **kwargs)
        self.stack.callback(service.stop)
        service.start()
        service.follow_log(_stderr)
        self.runtime.services[service.name] = service
        return service

    def start_exchange(self) -> tuple[str, str]:
        args = self.args
        if args.source == "binance":
            return args.binance_ws_url, args.binance_rest_url
        ready_file = self.workdir / "replay-ready.json"
        self._start("replay-exchange", _replay_args(args, ready_file), env={}, ready_file=ready_file)
        ready = json.loads(ready_file.read_text())
        return str(ready["ws_url"]), str(ready["rest_url"])

    def start_services(self, ws_url: str, rest_url: str) -> None:
        args = self.args
        if args.symbols:
            symbols = [s.strip().lower() for s in args.symbols.split(",") if s.strip()]
        elif args.source == "replay":
            symbols = _served_symbols(rest_url)
        else:
            symbols = ["btcusdt", "ethusdt"]
        self.runtime.symbols = symbols
        self._start_consumer(
            "prices-consumer", *(["--history-cap", str(args.history_cap)] if args.history_cap else [])
        )
        if self.alerting_enabled:
            self._start_consumer("alerts-consumer")
        ingest_port = self.ports.of("ingest")
        ingest_stats = self.workdir / "ingest-stats.json"
        self._start(
            "ingest",
            [
                "ingest",
                "--symbols",
                ",".join(symbols),
                "--mode",
                args.mode,
                "--ws-url",
                ws_url,
                "--rest-url",
                rest_url,
                "--metrics-port",
                str(ingest_port),
                "--stats-json",
                str(ingest_stats),
            ],
            env=self.env,
            metrics_port=ingest_port,
        )
        self.runtime.stats_files["ingest"] = ingest_stats
        if self.alerting_enabled:
            self._start_alerting()

    def _start_consumer(self, name: str, *extra: str) -> None:
        """One of the two consumers (same loop, different sink); returns once it owns partitions."""
        port = self.ports.of(name)
        stats = self.workdir / f"{name}-stats.json"
        self._start(
            name,
            [name, "--from-beginning", "--metrics-port", str(port), "--stats-json", str(stats), *extra],
            env=self.env,
            metrics_port=port,
        )
        self.runtime.stats_files[name] = stats
        self.wait_assigned(name)

    @property
    def alerting_enabled(self) -> bool:
        return not self.args.no_alerting and self.java is not None

    def _start_alerting(self) -> None:
        """The Spark job, reading prices from the start of the topic; its checkpoint lives with this run."""
        args = self.args
        port = self.ports.of("alerting")
        ready = self.workdir / "alerting-ready.json"
        command = [
            "alerting",
            "--metrics-port",
            str(port),
            "--ready-file",
            str(ready),
            "--starting-offsets",
            "earliest",
            "--master",
            args.spark_master,
        ]
        if "ALERTING_CHECKPOINT_DIR" not in os.environ:
            # The local broker keeps nothing between runs, so neither may the checkpoint.
            command += ["--checkpoint-dir", str(self.workdir / "checkpoints")]
        if args.threshold is not None:
            command += ["--threshold", args.threshold]
        for rule in args.rule:
            command += ["--rule", rule]
        self._start(
            "alerting", command, env=self.env, metrics_port=port, ready_file=ready, ready_timeout=180.0
        )
        self.runtime.spark = args.spark_master

    def start_observability(self) -> None:
        """Our own /metrics (broker and Redis resources), Prometheus when installed, the dashboard."""
        args = self.args
        port = serve_metrics("orchestrator", self.ports.of("orchestrator"), monitor_process=False)
        monitor = ProcessMonitor(
            {name: server.pid for name, server in self.servers.items() if server is not None and server.pid},
            host_network=True,
        ).start()
        self.stack.callback(monitor.stop)
        targets = {
            name: [f"127.0.0.1:{s.metrics_port}"]
            for name, s in self.runtime.services.items()
            if s.metrics_port is not None
        }
        targets["orchestrator"] = [f"127.0.0.1:{port}"]
        if not args.no_prometheus:
            self.prometheus = start_embedded_prometheus(targets, directory=self.workdir / "prometheus")
            if self.prometheus is not None:
                self.stack.callback(self.prometheus.stop)
                if self.prometheus.pid:
                    monitor.add("prometheus", self.prometheus.pid)
                _stderr(f"cryptopipe up: prometheus at {self.prometheus.url}")
        if args.no_dashboard:
            return
        dashboard_port = args.dashboard_port or free_port()
        env = self.env | {
            "DASHBOARD_SYMBOLS": ",".join(self.runtime.symbols),
            "DASHBOARD_METRICS_URLS": ",".join(f"http://{t[0]}/metrics" for t in targets.values()),
            "CRYPTOPIPE_RUNTIME_INFO": json.dumps(
                {"broker": self.runtime.broker, "redis": self.runtime.redis, "spark": self.runtime.spark}
            ),
        }
        if self.prometheus is not None:
            env["PROMETHEUS_URL"] = self.prometheus.url
        dashboard = self._start(
            "dashboard", ["dashboard", "--port", str(dashboard_port)], env=env, ready_port=dashboard_port
        )
        if dashboard.pid:
            monitor.add("dashboard", dashboard.pid)
        _stderr(f"cryptopipe up: dashboard at http://127.0.0.1:{dashboard_port}")

    def wait_assigned(self, name: str, timeout: float = 60.0) -> None:
        """Wait until a consumer has joined its group and owns partitions.

        Trades produced before that would wait in Kafka for the group join (seconds on some
        brokers) and show up as pipeline latency that no steady-state run has.
        """
        deadline = time.monotonic() + timeout
        while self.scrape(name).total("cryptopipe_consumer_assigned_partitions") <= 0:
            service = self.runtime.services[name]
            if not service.running():
                raise InfraError(f"{name} exited with code {service.returncode()}: {service.log_tail()}")
            if time.monotonic() > deadline:
                raise InfraError(f"{name} was not assigned any partition within {timeout:.0f} s")
            time.sleep(0.1)

    def scrape(self, *names: str) -> Scrape:
        urls = [
            s.metrics_url
            for n, s in self.runtime.services.items()
            if s.metrics_url and (not names or n in names) and s.running()
        ]
        try:
            return Scrape.from_urls(*urls, timeout=2.0)
        except OSError:
            return Scrape([])

    def dead_service(self) -> Service | None:
        for service in self.runtime.services.values():
            if not service.running():
                return service
        return None

    def progress_line(self, elapsed: float) -> str:
        scrape = self.scrape()
        e2e = scrape.percentiles_ms("cryptopipe_e2e_latency_seconds")
        received = scrape.total("cryptopipe_ingest_trades_received_total")
        return (
            f"cryptopipe up: {elapsed:6.1f} s  received {received:.0f}"
            f"  published {scrape.total('cryptopipe_ingest_trades_published_total'):.0f}"
            f"  written {scrape.total('cryptopipe_prices_written_total'):.0f}"
            f"  lag {scrape.total('cryptopipe_consumer_lag'):.0f}"
            f"  e2e p99 {e2e['p99'] if e2e['p99'] is not None else '-'} ms"
        )

    def drain(self) -> None:
        """Stop front to back so nothing in flight is lost, reading final figures on the way."""
        services = self.runtime.services
        ingest = services.get("ingest")
        if ingest is not None and ingest.running():
            self.runtime.final["ingest"] = self.scrape("ingest")
            ingest.stop()
        replay = services.get("replay-exchange")
        if replay is not None:
            replay.stop()
        published = _read_stats(self.runtime.stats_files.get("ingest")).get("published")
        self._drain_consumer("prices-consumer", published)
        alerting = services.get("alerting")
        if alerting is not None and alerting.running():
            # Let Spark read every trade ingest published, then run one more micro-batch: append
            # mode emits a window in the batch after the one that moved the watermark past it.
            self._wait_until(
                "alerting",
                lambda s: published is None or s.total("cryptopipe_alerting_input_rows_total") >= published,
            )
            batches = self.scrape("alerting").total("cryptopipe_alerting_batches_total")
            self._wait_until(
                "alerting", lambda s: s.total("cryptopipe_alerting_batches_total") > batches, timeout=15.0
            )
            self.runtime.final["alerting"] = self.scrape("alerting")
            alerting.stop()
        self._drain_consumer("alerts-consumer", None)

    def _wait_until(self, name: str, done: Callable[[Scrape], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done(self.scrape(name)):
                return
            time.sleep(0.2)
        _stderr(f"cryptopipe up: {name} did not catch up within {timeout:.0f} s; stopping it anyway")

    def _drain_consumer(self, name: str, expected: int | None) -> None:
        """Wait until a consumer has no lag (and consumed ``expected`` records), read it, stop it."""
        consumer = self.runtime.services.get(name)
        if consumer is None or not consumer.running():
            return
        self._wait_until(
            name,
            lambda s: (
                s.total("cryptopipe_consumer_lag") == 0
                and (expected is None or s.total("cryptopipe_consumer_messages_total") >= expected)
            ),
        )
        self.runtime.final[name] = self.scrape(name)
        consumer.stop()

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert in the Redis feed, oldest first, in the summary's shape."""
        if "alerts-consumer" not in self.runtime.services:
            return []
        client = connect_redis(self.env["REDIS_URL"])
        try:
            prefix = self.env.get("REDIS_KEY_PREFIX", RedisSettings().key_prefix)
            feed = AlertStore(client, prefix).recent(100_000)
        finally:
            client.close()
        fields = ("rule", "symbol", "kind", "side", "window_start_us", "window_end_us")
        return [
            {
                **{f: getattr(a, f) for f in fields},
                "open": str(a.open),
                "close": str(a.close),
                "pct_change": a.pct_change,
            }
            for a in reversed(feed)
        ]

    def summary(self, elapsed: float) -> dict[str, Any]:
        ingest_stats = _read_stats(self.runtime.stats_files.get("ingest"))
        consumer_stats = _read_stats(self.runtime.stats_files.get("prices-consumer"))
        ingest = self.runtime.final.get("ingest", Scrape([]))
        consumer = self.runtime.final.get("prices-consumer", Scrape([]))
        dead = sum(_read_stats(path).get("dead_lettered", 0) for path in self.runtime.stats_files.values())
        alerts = self.alerts()
        return {
            "source": self.runtime.source,
            "symbols": self.runtime.symbols,
            "run_seconds": round(elapsed, 3),
            "broker": self.runtime.broker,
            "redis": self.runtime.redis,
            "trades_received": ingest_stats.get("received", 0),
            "trades_published": ingest_stats.get("published", 0),
            "trades_backfilled": ingest_stats.get("backfilled", 0),
            "prices_written": consumer_stats.get("written", 0),
            "alerts_raised": len(alerts),
            "alerts": alerts,
            "dead_lettered": dead,
            "lost": ingest_stats.get("lost", 0),
            "reconnects": ingest_stats.get("reconnects", 0),
            "consumer_lag_final": consumer.total("cryptopipe_consumer_lag"),
            "network_latency_ms": ingest.percentiles_ms("cryptopipe_network_latency_seconds"),
            "network_latency_corrected_ms": ingest.percentiles_ms(
                "cryptopipe_network_latency_corrected_seconds"
            ),
            "clock_offset_ms": _clock_offset_ms(ingest),
            "system_latency_ms": consumer.percentiles_ms("cryptopipe_system_latency_seconds"),
            "e2e_latency_ms": consumer.percentiles_ms("cryptopipe_e2e_latency_seconds"),
        }


def _clock_offset_ms(scrape: Scrape) -> float | None:
    """The offset estimate ingest used (reference clock minus local clock), or None if it had none."""
    samples = scrape.samples("cryptopipe_clock_offset_seconds", reference="binance")
    return round(samples[0].value * 1000, 3) if samples else None


def _find_java() -> str | None:
    """Java for Spark, or None after one clear line saying how to get it (the rest still runs)."""
    from cryptopipe.alerting.errors import JavaNotFoundError
    from cryptopipe.alerting.spark import find_java

    try:
        return str(find_java().java)
    except JavaNotFoundError as exc:
        _stderr(
            f"cryptopipe up: no usable Java ({exc}), so the Spark alerting job will not run. "
            "Install Java 17+ (apt-get install openjdk-17-jre-headless, or brew install openjdk@17) "
            "or set JAVA_HOME; "
            "--no-alerting silences this."
        )
        return None


def _read_stats(path: Path | None) -> dict[str, Any]:
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.source == "binance":
        reason = check_binance(args.binance_rest_url)
        if reason is not None:
            _stderr(
                f"cryptopipe up: Binance is unreachable from this machine "
                f"({args.binance_rest_url}: {reason}). "
                "To run offline on the local replay exchange: cryptopipe up --source replay"
            )
            return 2
    stop = threading.Event()
    started = time.monotonic()
    with (
        _stop_signals(stop),
        tempfile.TemporaryDirectory(prefix="cryptopipe-up-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        pipeline = Pipeline(args, stack, Path(tmp))
        try:
            pipeline.start_servers()
            ws_url, rest_url = pipeline.start_exchange()
            pipeline.start_services(ws_url, rest_url)
            pipeline.start_observability()
        except ConfigError as exc:
            _stderr(f"cryptopipe up: {exc}")
            return 2
        except InfraError as exc:
            _stderr(f"cryptopipe up: {exc}")
            return 1
        _stderr(f"cryptopipe up: running ({', '.join(pipeline.runtime.services)}); Ctrl-C stops cleanly")
        exit_code = 0
        next_progress = time.monotonic() + 5
        while not stop.wait(0.2):
            elapsed = time.monotonic() - started
            if args.run_for is not None and elapsed >= args.run_for:
                break
            dead = pipeline.dead_service()
            if dead is not None:
                _stderr(f"cryptopipe up: {dead.name} exited with code {dead.returncode()}; stopping")
                exit_code = 1
                break
            if time.monotonic() >= next_progress:
                _stderr(pipeline.progress_line(elapsed))
                next_progress += 5
        _stderr("cryptopipe up: draining")
        pipeline.drain()
        summary = pipeline.summary(time.monotonic() - started)
    _stderr(
        "cryptopipe up: "
        + json.dumps(
            {
                k: summary[k]
                for k in ("trades_received", "trades_published", "prices_written", "lost", "dead_lettered")
            }
        )
    )
    if args.summary_json is not None:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
        _stderr(f"cryptopipe up: summary written to {args.summary_json}")
    return exit_code
