"""``cryptopipe up``: the whole pipeline on this machine, in one command.

Order of events: resolve a broker and Redis (configured, a container when Docker answers, else
local servers from PyPI/apt), start the exchange side (live Binance, or the replay exchange),
then the consumers and ingest, each as its own process with its own /metrics. On stop (Ctrl-C,
SIGTERM or ``--run-for``) the pipeline drains front to back: ingest flushes, consumers catch up,
the figures are read from the services' metrics, and everything stops, servers last.

Then the books are balanced (:class:`Books`): per topic, every record its producer got
acknowledged by Kafka must be written to Redis, stale (older than the latest already there) or
dead-lettered; whatever is left is ``unwritten``. The last line says whether they balance.

Scaling out: ``--ingest-shards N`` runs N ingest processes, each streaming its own share of the
symbols; ``--consumers N`` runs N prices consumers in one consumer group, splitting the prices
topic's partitions. Their books are summed (and kept per process in the reconciliation).

Exit status: 0 the run went well and the books balance; 1 a server or service failed;
2 bad configuration, or Binance unreachable; 3 (:data:`EXIT_UNBALANCED`) the books do not
balance: trades (or alerts) were published and never accounted for in Redis.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings

from cryptopipe.alerting.rules import parse_rules, parse_threshold
from cryptopipe.alerting.settings import AlertingSettings
from cryptopipe.cli.services import Service
from cryptopipe.dashboard.settings import DashboardSettings
from cryptopipe.infra import (
    InfraError,
    KafkaEndpoint,
    LocalServer,
    RedisEndpoint,
    free_port,
    resolve_kafka,
    resolve_redis,
)
from cryptopipe.infra.cli import positive_int
from cryptopipe.infra.errors import START_ERRORS
from cryptopipe.infra.prometheus import PrometheusServer, start_embedded_prometheus
from cryptopipe.ingest.settings import load_settings as load_ingest_settings
from cryptopipe.observability import Scrape, serve_metrics
from cryptopipe.observability import metrics as m
from cryptopipe.observability.process import ProcessMonitor
from cryptopipe.observability.prometheus import DEFAULT_METRICS_PORTS
from cryptopipe.replay.config import ReplaySettings
from cryptopipe.replay.errors import ReplayError
from cryptopipe.runtime import RunSettings, Stop, end_offsets, environ_of, final_scrape, stop_on_signals
from cryptopipe.schemas import PRICES, ConfigError, KafkaSettings, RedisSettings, load_settings
from cryptopipe.schemas.topics import DEFAULT_PARTITIONS
from cryptopipe.store import AlertStore, connect_redis
from cryptopipe.store.settings import AlertsConsumerSettings, PricesConsumerSettings

logger = logging.getLogger(__name__)

DEFAULT_BINANCE_WS = "wss://stream.binance.com:9443"
DEFAULT_BINANCE_REST = "https://api.binance.com"

#: ``up``'s exit status when the books do not balance (1 and 2 are failures and bad configuration).
EXIT_UNBALANCED = 3


@dataclass(frozen=True, slots=True)
class TopicBooks:
    """One topic's books for a run: what its producer got acknowledged against what its consumer did.

    Every acknowledged record must end as exactly one of: ``written`` (changed Redis), ``stale``
    (older than what Redis already held, so deliberately not applied: accounted for) or
    ``dead_lettered`` (undecodable, forwarded to the dead-letter topic). ``unwritten`` is what is
    left: published and never accounted for. ``surplus`` is the opposite: records the consumer
    handled that this run's producer did not publish (a backlog an earlier run left on a
    configured broker). Counts cannot tell the two apart when both happen, so a surplus offsets
    as many unwritten records; it is reported (summary and last line) so that it gets a look.
    """

    topic: str
    published: int
    consumed: int = 0
    written: int = 0
    stale: int = 0
    dead_lettered: int = 0

    @property
    def accounted(self) -> int:
        return self.written + self.stale + self.dead_lettered

    @property
    def unwritten(self) -> int:
        return max(0, self.published - self.accounted)

    @property
    def surplus(self) -> int:
        return max(0, self.accounted - self.published)

    def as_dict(self) -> dict[str, int]:
        return {
            "published": self.published,
            **self.handled_dict(),
            "unwritten": self.unwritten,
            "surplus": self.surplus,
        }

    def handled_dict(self) -> dict[str, int]:
        """What one member of a consumer group did (a topic's ``published`` is not per member)."""
        return {name: getattr(self, name) for name in ("consumed", "written", "stale", "dead_lettered")}


@dataclass(frozen=True, slots=True)
class IngestBooks:
    """Ingest's side: every trade it took in (live or backfilled) is published, a duplicate it
    dropped on purpose, or counted lost with a reason (buffer full, undeliverable, shutdown).

    ``unfilled`` are trades ingest never took in: ids missing from the stream (a reconnect, a
    slow connection the exchange dropped) that the REST backfill could not recover. Like the
    losses counted with a reason, they leave the books balanced (every one is accounted for) but
    they are missing trades all the same, so they count in ``lost``.
    """

    received: int = 0
    backfilled: int = 0
    duplicates: int = 0
    published: int = 0
    lost: int = 0
    unfilled: int = 0

    @property
    def unaccounted(self) -> int:
        """Trades taken in that are neither published, duplicates nor counted lost."""
        return max(0, self.received + self.backfilled - self.duplicates - self.published - self.lost)

    def as_dict(self) -> dict[str, int]:
        return {**dataclasses.asdict(self), "unaccounted": self.unaccounted}


def alerts_published_by(alerting: Scrape) -> int:
    """Alerts the alerting job put on the alerts topic: the Spark query's and the express lane's
    (which publishes the same alerts first; the alerts consumer counts the second copy stale)."""
    return int(alerting.total(m.ALERTING_ALERTS) + alerting.total(m.ALERTING_EXPRESS_ALERTS))


@dataclass(frozen=True, slots=True)
class Books:
    """A run's reconciliation: ingest's counts and one :class:`TopicBooks` per consumed topic.

    With several ingest shards or consumers (``up --ingest-shards N --consumers N``), ``ingest``
    and the topics' books are the sums (:func:`sum_ingest_books`, :func:`sum_topic_books`);
    ``shards`` and ``consumers`` keep each process's share (``ingest_by_shard`` and
    ``prices_by_consumer`` in :meth:`as_dict`).
    """

    ingest: IngestBooks
    topics: Mapping[str, TopicBooks] = field(default_factory=dict)
    shards: Mapping[str, IngestBooks] = field(default_factory=dict)
    """Each ingest shard's books, by service name (``ingest``, ``ingest-2``, ...)."""
    consumers: Mapping[str, Mapping[str, TopicBooks]] = field(default_factory=dict)
    """Per topic, each consumer-group member's books by service name (their ``published`` is 0)."""

    @property
    def unwritten(self) -> int:
        """Records published to any topic and never accounted for in Redis."""
        return sum(books.unwritten for books in self.topics.values())

    @property
    def lost(self) -> int:
        """Trades ingest took in that never reached Redis: counted lost in ingest, unaccounted
        for in ingest, or published and never written (so never 0 while trades are missing)."""
        prices = self.topics.get("prices")
        unwritten = prices.unwritten if prices else 0
        return self.ingest.lost + self.ingest.unfilled + self.ingest.unaccounted + unwritten

    @property
    def balanced(self) -> bool:
        return self.unwritten == 0 and self.ingest.unaccounted == 0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "balanced": self.balanced,
            "ingest": self.ingest.as_dict(),
            **{name: books.as_dict() for name, books in self.topics.items()},
        }
        if self.shards:
            out["ingest_by_shard"] = {name: books.as_dict() for name, books in self.shards.items()}
        for topic, members in self.consumers.items():
            out[f"{topic}_by_consumer"] = {name: books.handled_dict() for name, books in members.items()}
        return out

    def _gaps(self) -> str:
        unfilled = self.ingest.unfilled
        return f" ({unfilled} in stream gaps never backfilled)" if unfilled else ""

    def line(self) -> str:
        """One line: the figures when the books balance, else what is missing and where."""
        if not self.balanced:
            missing = []
            if self.ingest.unaccounted:
                taken = self.ingest.received + self.ingest.backfilled
                missing.append(
                    f"{self.ingest.unaccounted} of {taken} trades ingest took in were neither "
                    "published, duplicates nor counted lost (ingest)"
                )
            for name, books in self.topics.items():
                if books.unwritten:
                    what = "trades" if name == "prices" else name
                    missing.append(
                        f"{books.unwritten} of {books.published} published {what} were never "
                        f"written to Redis ({name} topic)"
                    )
            return "BOOKS DO NOT BALANCE: " + "; ".join(missing)
        parts = []
        prices = self.topics.get("prices")
        if prices is not None:
            parts.append(
                f"{self.ingest.received} trades received, {prices.published} published = "
                f"{prices.written} written + {prices.stale} stale + {prices.dead_lettered} dead-lettered, "
                f"{self.lost} lost{self._gaps()} (prices topic)"
            )
        for name, books in self.topics.items():
            if name != "prices":
                parts.append(
                    f"{books.published} {name} published = {books.written} written + {books.stale} "
                    f"stale + {books.dead_lettered} dead-lettered ({name} topic)"
                )
        surplus = sum(books.surplus for books in self.topics.values())
        if surplus:
            parts.append(f"{surplus} records from before this run also consumed")
        return "books balance: " + "; ".join(parts or ["nothing published"])


def _count(stats: Mapping[str, Any], key: str) -> int:
    value = stats.get(key, 0)
    return int(value) if isinstance(value, int | float) else 0


def ingest_books(stats: Mapping[str, Any], scrape: Scrape) -> IngestBooks:
    """From ingest's final stats file; from its last scrape when it left none (a crash)."""
    if stats:
        return IngestBooks(
            received=_count(stats, "received"),
            backfilled=_count(stats, "backfilled"),
            duplicates=_count(stats, "duplicates"),
            published=_count(stats, "published"),
            lost=_count(stats, "lost"),
            unfilled=_count(stats, "unfilled"),
        )
    return IngestBooks(
        received=int(scrape.total(m.TRADES_RECEIVED)),
        backfilled=int(scrape.total(m.BACKFILLED)),
        duplicates=int(scrape.total(m.DUPLICATES)),
        published=int(scrape.total(m.TRADES_PUBLISHED)),
        lost=int(scrape.total(m.TRADES_LOST)),
        unfilled=int(scrape.total(m.UNFILLED)),
    )


def topic_books(
    topic: str, published: int, stats: Mapping[str, Any], scrape: Scrape, component: str
) -> TopicBooks:
    """A consumer's side of ``topic``, from its final stats file (``LoopStats``); from its last
    scrape when it left none (killed, crashed)."""
    if stats:
        return TopicBooks(
            topic,
            published,
            consumed=_count(stats, "consumed"),
            written=_count(stats, "written"),
            stale=_count(stats, "stale"),
            dead_lettered=_count(stats, "dead_lettered"),
        )
    handled = int(scrape.total(m.CONSUMED))  # written or stale
    dead = int(scrape.total(m.DEAD_LETTERS, component=component))
    stale = int(scrape.total(m.STALE_PRICES)) if topic == "prices" else 0
    return TopicBooks(
        topic, published, consumed=handled + dead, written=handled - stale, stale=stale, dead_lettered=dead
    )


def sum_ingest_books(shards: Iterable[IngestBooks]) -> IngestBooks:
    """Several ingest shards' books as one: every count summed."""
    parts = list(shards)
    return IngestBooks(**{f.name: sum(getattr(p, f.name) for p in parts) for f in fields(IngestBooks)})


def sum_topic_books(topic: str, published: int, members: Iterable[TopicBooks]) -> TopicBooks:
    """One topic's books from its consumer-group members' (each handled its partitions' share)
    against what every producer of the topic published."""
    parts = list(members)
    return TopicBooks(
        topic,
        published,
        consumed=sum(p.consumed for p in parts),
        written=sum(p.written for p in parts),
        stale=sum(p.stale for p in parts),
        dead_lettered=sum(p.dead_lettered for p in parts),
    )


def member_names(component: str, count: int) -> list[str]:
    """Service names of ``count`` processes of one component: ``ingest``, ``ingest-2``, ...
    (the first keeps the component's name, so one process is named as before)."""
    return [component if i == 1 else f"{component}-{i}" for i in range(1, count + 1)]


_MEMBER_SUFFIX = re.compile(r"-[0-9]+$")


def component_of(name: str) -> str:
    """The component a service name belongs to: ``ingest-2`` -> ``ingest``."""
    return _MEMBER_SUFFIX.sub("", name)


def parse_symbols(text: str) -> list[str]:
    return [s.strip().lower() for s in text.split(",") if s.strip()]


def split_symbols(symbols: Sequence[str], shards: int) -> list[list[str]]:
    """The symbols of each ingest shard: round-robin in the order given (shard i gets symbols i,
    i + shards, ...), so the shares are disjoint and differ by one symbol at most.

    Raises :class:`ConfigError` when there are more shards than symbols (a shard with nothing
    to stream).
    """
    if shards < 1:
        raise ConfigError(f"--ingest-shards must be at least 1, got {shards}")
    if shards > len(symbols):
        raise ConfigError(
            f"--ingest-shards {shards} exceeds the {len(symbols)} symbol(s) to stream "
            f"({','.join(symbols) or 'none'}): each shard needs at least one symbol"
        )
    return [list(symbols[i::shards]) for i in range(shards)]


def group_assigned(owned: Sequence[float], partitions: int) -> bool:
    """Whether a consumer group has settled: every member owns partitions (as many members as
    there are partitions when there are more members) and together they own all of them.

    ``owned`` is each member's ``cryptopipe_consumer_assigned_partitions``. A member gives up its
    partitions before a rebalance hands them out again, so no old assignment counts twice.
    """
    busy = sum(1 for count in owned if count > 0)
    return busy >= min(len(owned), partitions) and sum(owned) >= partitions


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptopipe up",
        description="Run the whole pipeline on this machine. Servers it cannot find, it starts.",
        epilog=f"exit status: 0 the run went well and its books balance; 1 a server or service "
        f"failed; 2 bad configuration or Binance unreachable; {EXIT_UNBALANCED} the books do not "
        "balance (published trades or alerts never written to Redis)",
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
        "ingest 9101, prices-consumer 9102, ...); further ingest shards and consumers (ingest-2, "
        "prices-consumer-2, ...) get free ports; 0 = any free ports for all",
    )
    parser.add_argument(
        "--ingest-shards",
        type=positive_int,
        default=1,
        metavar="N",
        help="N ingest processes (ingest, ingest-2, ...), each streaming a disjoint share of the "
        "symbols, dealt round-robin in the order given; N may not exceed the symbols (default 1)",
    )
    parser.add_argument(
        "--consumers",
        type=positive_int,
        default=1,
        metavar="N",
        help="N prices-consumer processes (prices-consumer, prices-consumer-2, ...) in one consumer "
        "group, splitting the prices topic's partitions (4 by default; more members than "
        "partitions idle) (default 1)",
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
    alerting_source: str = "-"
    """Which Kafka reader the alerting job ran: ``native`` or ``python`` (its ready file says)."""
    alerting_express: bool | None = None
    """Whether the alerting job ran its express lane (its ready file says; None without the job)."""
    alerting_unread: int | None = None
    """Prices records the alerting job had not read when the drain stopped it (None without the
    job, or when neither the broker's ends nor ingest's count were known)."""
    services: dict[str, Service] = field(default_factory=dict)
    stats_files: dict[str, Path] = field(default_factory=dict)
    final: dict[str, Scrape] = field(default_factory=dict)
    """Each service's last scrape before it stopped, by service name."""
    final_groups: dict[str, Scrape] = field(default_factory=dict)
    """The same, one scrape of all of a component's processes (``ingest``, ``prices-consumer``)."""


class _Ports:
    """Metrics ports: the documented table (shifted by ``base - 9100``), or free ports when base is 0.

    Only the first process of a component has a row in the table; further ingest shards and
    consumers (``ingest-2``, ``prices-consumer-2``, ...) always get free ports.
    """

    def __init__(self, base: int) -> None:
        self._base = base

    def of(self, name: str) -> int:
        if self._base == 0 or name not in DEFAULT_METRICS_PORTS:
            return free_port()
        return DEFAULT_METRICS_PORTS[name] - 9100 + self._base


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


def replay_settings(args: argparse.Namespace, ready_file: Path) -> ReplaySettings:
    """The replay exchange's settings for this run: ``up``'s replay flags on a free port."""
    return load_settings(
        ReplaySettings,
        port=0,
        ready_file=ready_file,
        speed=args.speed,
        clock=args.clock,
        replay_files=tuple(args.replay_file) or None,
        clock_offset_ms=args.clock_offset_ms or None,
        delay_ms=args.delay_ms or None,
        drop_after=args.drop_after,
        rate=args.rate,
        seed=args.seed,
        loop=args.loop or None,
        symbols=args.symbols if args.symbols and not args.replay_file else None,
    )


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
        self.kafka: KafkaEndpoint | None = None
        #: The highest lag the progress lines saw (every 5 s): the consumers' and the Spark query's.
        self.lag_max: dict[str, float | None] = {"consumer": None, "alerting": None}

    def use_servers(self, kafka: KafkaEndpoint, redis: RedisEndpoint) -> None:
        self.kafka = kafka
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
        settings = replay_settings(args, ready_file)
        env = self._service_env(settings, self.workdir / "replay-exchange-stats.json")
        self._start("replay-exchange", ["replay-exchange"], env=env, ready_file=ready_file)
        ready = json.loads(ready_file.read_text())
        return str(ready["ws_url"]), str(ready["rest_url"])

    def start_services(self, ws_url: str, rest_url: str) -> None:
        """The prices consumers (once they own partitions), the alerts consumer, every ingest
        shard, then the Spark job. Raises :class:`ConfigError` for more shards than symbols."""
        args = self.args
        if args.symbols:
            symbols = parse_symbols(args.symbols)
        elif args.source == "replay":
            symbols = _served_symbols(rest_url)
        else:
            symbols = ["btcusdt", "ethusdt"]
        shards = split_symbols(symbols, args.ingest_shards)
        self.runtime.symbols = symbols
        consumers = member_names("prices-consumer", args.consumers)
        for name in consumers:
            self._start_consumer(name)
        self.wait_assigned(*consumers)
        if self.alerting_enabled:
            self._start_consumer("alerts-consumer")
            self.wait_assigned("alerts-consumer")
        for name, share in zip(member_names("ingest", len(shards)), shards, strict=True):
            self._start_ingest(name, share, ws_url, rest_url)
        if self.alerting_enabled:
            self._start_alerting()

    def _service_env(self, settings: BaseSettings, stats: Path) -> dict[str, str]:
        """A child's environment: the servers (``self.env``), its settings, where its books go."""
        run = load_settings(RunSettings, stats_json=stats)
        return {**self.env, **environ_of(settings), **environ_of(run)}

    def _start_ingest(self, name: str, symbols: Sequence[str], ws_url: str, rest_url: str) -> None:
        """One ingest process (a shard: its own symbols, stats file and /metrics port), started
        from its settings: they reach it as environment variables, not as flags."""
        port = self.ports.of(name)
        stats = self.workdir / f"{name}-stats.json"
        settings = load_ingest_settings(
            symbols=",".join(symbols),
            mode=self.args.mode,
            ws_url=ws_url,
            rest_url=rest_url,
            metrics_port=port,
        )
        self._start(name, ["ingest"], env=self._service_env(settings, stats), metrics_port=port)
        self.runtime.stats_files[name] = stats

    def _start_consumer(self, name: str) -> None:
        """One consumer process (prices or alerts: same loop, different sink), started from its
        settings; it joins its group in the background (see :meth:`wait_assigned`)."""
        port = self.ports.of(name)
        stats = self.workdir / f"{name}-stats.json"
        settings: BaseSettings
        if component_of(name) == "prices-consumer":
            settings = load_settings(
                PricesConsumerSettings,
                from_beginning=True,
                metrics_port=port,
                history_cap=self.args.history_cap,
            )
        else:
            settings = load_settings(AlertsConsumerSettings, from_beginning=True, metrics_port=port)
        self._start(name, [component_of(name)], env=self._service_env(settings, stats), metrics_port=port)
        self.runtime.stats_files[name] = stats

    def members(self, component: str) -> list[str]:
        """The service names of a component's processes (``ingest``, ``ingest-2``, ...), in order."""
        names = dict.fromkeys([*self.runtime.services, *self.runtime.stats_files])
        return [name for name in names if component_of(name) == component]

    @property
    def alerting_enabled(self) -> bool:
        return not self.args.no_alerting and self.java is not None

    def alerting_settings(self, **overrides: Any) -> AlertingSettings:
        """The job's settings (see :func:`alerting_settings`), fitted to the broker found.

        Spark's Kafka connector plans each micro-batch up to the partitions' ends as ListOffsets
        answers them. A broker whose answer falls short of the log (Tansu: the last record
        batch's base offset + 1) hides the newest records from it until more arrive, and for good
        once the stream stops (`up` then waits for Spark in vain). So there, unless told which
        source to use, the job reads with the Python Data Source, whose ends are offsets it
        fetched (see cryptopipe.alerting.kafka_source).
        """
        settings = alerting_settings(self.args, **overrides)
        if settings.source == "auto" and self.kafka is not None and self.kafka.quirks.list_offsets_unreliable:
            _stderr(
                f"cryptopipe up: {self.kafka.kind} answers ListOffsets short of the log, which Spark's "
                "Kafka connector plans its micro-batches by; the alerting job reads with the Python "
                "Data Source (ALERTING_SOURCE=native overrides)"
            )
            settings = settings.model_copy(update={"source": "python"})
        return settings

    def _start_alerting(self) -> None:
        """The Spark job, reading prices from the start of the topic; its checkpoint lives with this run."""
        args = self.args
        port = self.ports.of("alerting")
        ready = self.workdir / "alerting-ready.json"
        overrides: dict[str, Any] = {
            "metrics_port": port,
            "starting_offsets": "earliest",
            "master": args.spark_master,
            "ready_file": ready,
        }
        if "ALERTING_CHECKPOINT_DIR" not in os.environ:
            # The local broker keeps nothing between runs, so neither may the checkpoint.
            overrides["checkpoint_dir"] = self.workdir / "checkpoints"
        settings = self.alerting_settings(**overrides)
        stats = self.workdir / "alerting-stats.json"
        self._start(
            "alerting",
            ["alerting"],
            env=self._service_env(settings, stats),
            metrics_port=port,
            ready_file=ready,
            ready_timeout=180.0,
        )
        self.runtime.stats_files["alerting"] = stats
        self.runtime.spark = args.spark_master
        ready_figures = json.loads(ready.read_text())
        self.runtime.alerting_source = str(ready_figures.get("source", "-"))
        self.runtime.alerting_express = bool(ready_figures.get("express", False))

    def start_observability(self) -> None:
        """Our own /metrics (broker and Redis resources), Prometheus when installed, the dashboard."""
        args = self.args
        port = serve_metrics("orchestrator", self.ports.of("orchestrator"), monitor_process=False)
        monitor = ProcessMonitor(
            {name: server.pid for name, server in self.servers.items() if server is not None and server.pid},
            host_network=True,
        ).start()
        self.stack.callback(monitor.stop)
        targets: dict[str, list[str]] = {}
        for name, service in self.runtime.services.items():
            if service.metrics_port is not None:
                targets.setdefault(component_of(name), []).append(f"127.0.0.1:{service.metrics_port}")
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
        settings = load_settings(
            DashboardSettings,
            port=dashboard_port,
            symbols=",".join(self.runtime.symbols),
            metrics_urls=",".join(
                f"http://{address}/metrics" for addresses in targets.values() for address in addresses
            ),
            prometheus_url=self.prometheus.url if self.prometheus is not None else None,
            runtime_info={
                "broker": self.runtime.broker,
                "redis": self.runtime.redis,
                "spark": self.runtime.spark,
            },
        )
        env = self._service_env(settings, self.workdir / "dashboard-stats.json")
        dashboard = self._start("dashboard", ["dashboard"], env=env, ready_port=dashboard_port)
        if dashboard.pid:
            monitor.add("dashboard", dashboard.pid)
        _stderr(f"cryptopipe up: dashboard at http://127.0.0.1:{dashboard_port}")

    def wait_assigned(self, *names: str, timeout: float = 60.0) -> None:
        """Wait until the consumers ``names`` (members of one group) have joined it and own
        partitions: each of them, and together all of the topic's (see :func:`group_assigned`).

        Trades produced before that would wait in Kafka for the group join (seconds on some
        brokers) and show up as pipeline latency that no steady-state run has.
        """
        partitions = self._prices_partitions() if len(names) > 1 else 1
        if len(names) > partitions:
            _stderr(
                f"cryptopipe up: {len(names)} consumers for {partitions} partitions: "
                f"{len(names) - partitions} of them will idle (one partition goes to one member)"
            )
        deadline = time.monotonic() + timeout
        while not group_assigned([self.scrape(n).total(m.CONSUMER_ASSIGNED) for n in names], partitions):
            for name in names:
                service = self.runtime.services[name]
                if not service.running():
                    raise InfraError(f"{name} exited with code {service.returncode()}: {service.log_tail()}")
            if time.monotonic() > deadline:
                raise InfraError(
                    f"{', '.join(names)} did not own all {partitions} partition(s) within {timeout:.0f} s"
                )
            time.sleep(0.1)

    def _prices_partitions(self) -> int:
        """How many partitions the prices topic has (the broker's metadata; the default when it
        does not answer)."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        if self.kafka is None:
            return DEFAULT_PARTITIONS
        settings = self.kafka.settings
        topic = PRICES.with_prefix(self.env.get("KAFKA_TOPIC_PREFIX", settings.topic_prefix)).name
        config: dict[str, str | int | float | bool] = {**settings.client_config()}
        try:
            metadata = AdminClient(config).list_topics(topic, timeout=10)
        except KafkaException:
            return DEFAULT_PARTITIONS
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            return DEFAULT_PARTITIONS
        return len(found.partitions)

    def _prices_ends(self) -> dict[int, int] | None:
        """Each non-empty prices partition's end offset (None where the broker's ListOffsets
        cannot be trusted, or does not answer)."""
        from confluent_kafka import KafkaException

        if self.kafka is None or self.kafka.quirks.list_offsets_unreliable:
            return None
        settings = self.kafka.settings
        topic = PRICES.with_prefix(self.env.get("KAFKA_TOPIC_PREFIX", settings.topic_prefix)).name
        try:
            ends = end_offsets(settings, topic)
        except KafkaException:
            return None
        return {p: end for p, end in ends.items() if end > 0}

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
        e2e = scrape.percentiles_ms(m.E2E_LATENCY)
        received = scrape.total(m.TRADES_RECEIVED)
        lag = self._lag(scrape, "consumer", m.CONSUMER_LAG)
        spark_lag = self._lag(scrape, "alerting", m.ALERTING_LAG)
        return (
            f"cryptopipe up: {elapsed:6.1f} s  received {received:.0f}"
            f"  published {scrape.total(m.TRADES_PUBLISHED):.0f}"
            f"  written {scrape.total(m.PRICES_WRITTEN):.0f}"
            f"  lag {lag or 0:.0f}"
            + (f"  spark lag {spark_lag:.0f}" if spark_lag is not None else "")
            + f"  e2e p99 {e2e['p99'] if e2e['p99'] is not None else '-'} ms"
        )

    def _lag(self, scrape: Scrape, reader: str, gauge: Any) -> float | None:
        """One reader's lag in ``scrape`` (None when not exported), kept in :attr:`lag_max`."""
        if not scrape.samples(gauge):
            return None
        lag = scrape.total(gauge)
        seen = self.lag_max[reader]
        self.lag_max[reader] = lag if seen is None else max(seen, lag)
        return lag

    def drain(self) -> None:
        """Stop front to back so nothing in flight is lost, reading final figures on the way:
        every ingest shard (together), the exchange, the prices consumers once they handled all
        that ingest published, the Spark job, the alerts consumer."""
        services = self.runtime.services
        self._read_and_stop([n for n in self.members("ingest") if n in services], "ingest")
        replay = services.get("replay-exchange")
        if replay is not None:
            replay.stop()
        published = self._published()
        self._drain_consumers(self.members("prices-consumer"), published)
        alerting = services.get("alerting")
        if alerting is not None and alerting.running():
            self._drain_alerting(published)
            self._read_and_stop(["alerting"], "alerting")
        alerts_published = None
        if "alerting" in self.runtime.final:
            alerts_published = alerts_published_by(self.runtime.final["alerting"])
        self._drain_consumers(self.members("alerts-consumer"), alerts_published)

    def _drain_alerting(self, published: int | None) -> None:
        """Wait until the Spark job has read every prices record, as long as it makes progress.

        Every record: its read offsets (``cryptopipe_alerting_read_offset``) reach the partitions'
        ends, asked of the broker now that ingest has stopped (old records of a reused topic
        count too); on a broker whose ends cannot be trusted (Tansu), the rows it read reach what
        ingest ``published``. That is all it takes: a window closes in the micro-batch that reads
        the trade taking its symbol past the window's end + delay (the plan's own lateness, not
        Spark's watermark), and a batch's alerts are published before its progress is counted.
        Spark runs no batch without new data here, so waiting for "one more" would only time out.
        """
        ends = self._prices_ends()

        def read(s: Scrape) -> dict[str, float]:
            return {x.labels.get("partition", ""): x.value for x in s.samples(m.ALERTING_READ_OFFSET)}

        def unread(s: Scrape) -> int | None:
            if ends:
                return int(sum(max(0.0, end - read(s).get(str(p), 0.0)) for p, end in ends.items()))
            return None if published is None else int(max(0.0, published - s.total(m.ALERTING_INPUT_ROWS)))

        def left(s: Scrape) -> str:
            return f"{unread(s)} prices records to read"

        if ends or published is not None:
            # Progress is fewer records left to read.
            self._wait_until(
                "alerting", lambda s: unread(s) == 0, progress=lambda s: -(unread(s) or 0), left=left
            )
        else:  # neither figure: give a batch in flight the time to finish
            batches = self.scrape("alerting").total(m.ALERTING_BATCHES)
            self._wait_until("alerting", lambda s: s.total(m.ALERTING_BATCHES) > batches, timeout=5.0)
        remaining = unread(self.scrape("alerting"))
        self.runtime.alerting_unread = remaining
        if remaining:
            _stderr(
                f"cryptopipe up: the alerting job stops with {remaining} prices records unread: "
                "no alert comes from them in this run"
            )

    def _published(self) -> int | None:
        """What every ingest shard published, from their final stats files (None while one of
        them left none: then the consumers are drained by their lag alone)."""
        files = self.runtime.stats_files
        stats = [_read_stats(files.get(n)) for n in self.members("ingest")]
        if not stats or any(not isinstance(s.get("published"), int) for s in stats):
            return None
        return sum(_count(s, "published") for s in stats)

    def _read_and_stop(self, names: Sequence[str], component: str) -> None:
        """Stop the running ones at once, then read their final figures (each, and all together).

        One channel: a service writes its whole metrics registry into its stats file after it
        flushed (:func:`cryptopipe.runtime.final_scrape`), so the figures include the last batch.
        Only a service that left none (killed before it could write) is read from the scrape
        taken just before the stop, and the run says so.
        """
        running = [n for n in names if self.runtime.services[n].running()]
        if not running:
            return
        before = {name: self.scrape(name) for name in running}
        _stop_all([self.runtime.services[n] for n in running])
        for name in running:
            final = final_scrape(_read_stats(self.runtime.stats_files.get(name)))
            if final is None:
                _stderr(f"cryptopipe up: {name} left no final figures; its books use its last scrape")
                final = before[name]
            self.runtime.final[name] = final
        self.runtime.final_groups[component] = Scrape.merged(*(self.runtime.final[n] for n in running))

    def _wait_until(
        self,
        names: str | Sequence[str],
        done: Callable[[Scrape], bool],
        timeout: float = 30.0,
        *,
        progress: Callable[[Scrape], float] | None = None,
        limit: float = 600.0,
        left: Callable[[Scrape], str] | None = None,
    ) -> bool:
        """Wait until ``done`` (on one scrape of ``names``); give up after ``timeout`` s, or after
        ``timeout`` s without ``progress`` growing (never beyond ``limit`` s), so a slow but busy
        service is waited for. A wait past 5 s says every 5 s what is ``left``."""
        names = (names,) if isinstance(names, str) else tuple(names)
        started = time.monotonic()
        deadline = started + timeout
        next_line = started + 5.0
        last: float | None = None
        while time.monotonic() < deadline:
            scrape = self.scrape(*names)
            if done(scrape):
                return True
            if progress is not None:
                value = progress(scrape)
                if last is not None and value > last:
                    deadline = min(max(deadline, time.monotonic() + timeout), started + limit)
                last = value if last is None else max(last, value)
            if left is not None and time.monotonic() >= next_line:
                _stderr(f"cryptopipe up: waiting for {', '.join(names)}: {left(scrape)}")
                next_line += 5.0
            time.sleep(0.2)
        waited = time.monotonic() - started
        _stderr(f"cryptopipe up: {', '.join(names)} did not catch up within {waited:.0f} s; stopping anyway")
        return False

    def _drain_consumers(self, names: Sequence[str], expected: int | None) -> None:
        """Wait until a group's consumers have no lag and together handled ``expected`` records
        (written, stale or dead-lettered), as long as they make progress; read them, stop them."""
        services = self.runtime.services
        running = [n for n in names if n in services and services[n].running()]
        if not running:
            return
        component = component_of(running[0])

        def handled(s: Scrape) -> float:
            return s.total(m.CONSUMED) + s.total(m.DEAD_LETTERS, component=component)

        def left(s: Scrape) -> str:
            of = "" if expected is None else f" of {expected}"
            return f"{handled(s):.0f}{of} records handled, lag {s.total(m.CONSUMER_LAG):.0f}"

        self._wait_until(
            running,
            lambda s: s.total(m.CONSUMER_LAG) == 0 and (expected is None or handled(s) >= expected),
            progress=handled,
            left=left,
        )
        self._read_and_stop(running, component)

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

    def books(self) -> Books:
        """The run's reconciliation, from the services' final stats files (scrapes as a fallback),
        summed over the ingest shards and over the prices consumers."""
        final, stats = self.runtime.final, self.runtime.stats_files
        shards = {
            name: ingest_books(_read_stats(stats.get(name)), final.get(name, Scrape([])))
            for name in self.members("ingest") or ["ingest"]
        }
        ingest = sum_ingest_books(shards.values())
        topics: dict[str, TopicBooks] = {}
        consumers: dict[str, dict[str, TopicBooks]] = {}
        prices = [n for n in self.members("prices-consumer") if n in self.runtime.services]
        if prices:
            consumers["prices"] = {
                name: topic_books(
                    "prices", 0, _read_stats(stats.get(name)), final.get(name, Scrape([])), "prices-consumer"
                )
                for name in prices
            }
            topics["prices"] = sum_topic_books("prices", ingest.published, consumers["prices"].values())
        if "alerts-consumer" in self.runtime.services and "alerting" in self.runtime.services:
            topics["alerts"] = topic_books(
                "alerts",
                alerts_published_by(final.get("alerting", Scrape([]))),
                _read_stats(stats.get("alerts-consumer")),
                final.get("alerts-consumer", Scrape([])),
                "alerts-consumer",
            )
        return Books(ingest, topics, shards=shards, consumers=consumers)

    def _final(self, component: str) -> Scrape:
        """The last scrape of all of a component's processes together."""
        groups = self.runtime.final_groups
        return groups[component] if component in groups else self.runtime.final.get(component, Scrape([]))

    def summary(self, elapsed: float, books: Books | None = None) -> dict[str, Any]:
        books = books if books is not None else self.books()
        shards = self.members("ingest")
        ingest = self._final("ingest")
        consumer = self._final("prices-consumer")
        dead = sum(_read_stats(path).get("dead_lettered", 0) for path in self.runtime.stats_files.values())
        prices = books.topics.get("prices")
        alerts = self.alerts()
        return {
            "source": self.runtime.source,
            "symbols": self.runtime.symbols,
            "ingest_shards": len(shards),
            "consumers": len(books.consumers.get("prices", {})),
            "run_seconds": round(elapsed, 3),
            "broker": self.runtime.broker,
            "redis": self.runtime.redis,
            "trades_received": books.ingest.received,
            "trades_published": books.ingest.published,
            "trades_backfilled": books.ingest.backfilled,
            "prices_written": prices.written if prices is not None else 0,
            "prices_stale": prices.stale if prices is not None else 0,
            "alerting_source": self.runtime.alerting_source,
            "alerting_express": self.runtime.alerting_express,
            "alerting_unread": self.runtime.alerting_unread,
            "alerts_raised": len(alerts),
            "alerts": alerts,
            "dead_lettered": dead,
            "unwritten": books.unwritten,
            "lost": books.lost,
            "reconciliation": books.as_dict(),
            "reconnects": sum(
                _count(_read_stats(self.runtime.stats_files.get(n)), "reconnects") for n in shards
            ),
            "consumer_lag_final": consumer.total(m.CONSUMER_LAG),
            "consumer_lag_max": self.lag_max["consumer"],
            "alerting_lag_max": self.lag_max["alerting"],
            "network_latency_ms": ingest.percentiles_ms(m.NETWORK_LATENCY),
            "network_latency_corrected_ms": ingest.percentiles_ms(m.NETWORK_LATENCY_CORRECTED),
            "clock_offset_ms": _clock_offset_ms(ingest),
            "system_latency_ms": consumer.percentiles_ms(m.SYSTEM_LATENCY),
            "e2e_latency_ms": consumer.percentiles_ms(m.E2E_LATENCY),
        }


def _stop_all(services: Sequence[Service]) -> None:
    """Stop services at once (each stop waits for its process to flush and exit)."""
    if len(services) == 1:
        services[0].stop()
        return
    with ThreadPoolExecutor(max_workers=len(services), thread_name_prefix="stop") as pool:
        for future in [pool.submit(service.stop) for service in services]:
            future.result()


def _clock_offset_ms(scrape: Scrape) -> float | None:
    """The offset estimate ingest used (reference clock minus local clock), or None if it had none."""
    samples = scrape.samples(m.CLOCK_OFFSET, reference="binance")
    return round(samples[0].value * 1000, 3) if samples else None


def _find_java() -> str | None:
    """Java for Spark, or None after one clear line saying how to get it (the rest still runs)."""
    from cryptopipe.alerting.errors import JavaNotFoundError
    from cryptopipe.alerting.spark import find_java

    try:
        return find_java().executable
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


def alerting_settings(args: argparse.Namespace, **overrides: Any) -> AlertingSettings:
    """The Spark job's settings: environment, then ``--rule``/``--threshold``, then ``overrides``.

    Raises :class:`ConfigError` for a rule or threshold that does not parse or a wrong ALERTING_*.
    """
    try:
        if args.rule:
            overrides["rules"] = parse_rules(";".join(args.rule))
        settings = load_settings(AlertingSettings, **overrides)
        if args.threshold is not None:
            settings = settings.with_threshold(parse_threshold(args.threshold))
    except ValueError as exc:  # RuleError or a threshold outside (0, 1); a ConfigError passes through
        raise ConfigError(f"--rule/--threshold: {exc}") from None
    return settings


def _preflight(args: argparse.Namespace) -> str | None:
    """What makes the run impossible before anything starts (one line), or None."""
    if not args.no_alerting:
        try:
            alerting_settings(args)
        except ConfigError as exc:
            return str(exc)
    if args.symbols or args.source == "binance":
        try:
            split_symbols(parse_symbols(args.symbols or "btcusdt,ethusdt"), args.ingest_shards)
        except ConfigError as exc:
            return str(exc)
    if args.source == "replay":
        try:
            replay_settings(args, Path("replay-ready.json")).config()
        except (ConfigError, ReplayError) as exc:
            return str(exc)
    if args.source == "binance":
        reason = check_binance(args.binance_rest_url)
        if reason is not None:
            return (
                f"Binance is unreachable from this machine ({args.binance_rest_url}: {reason}). "
                "To run offline on the local replay exchange: cryptopipe up --source replay"
            )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = _preflight(args)
    if problem is not None:
        _stderr(f"cryptopipe up: {problem}")
        return 2
    stop = Stop()
    with (
        stop_on_signals(stop),
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
        except START_ERRORS as exc:
            _stderr(f"cryptopipe up: {exc}")
            return 1
        _stderr(f"cryptopipe up: running ({', '.join(pipeline.runtime.services)}); Ctrl-C stops cleanly")
        # --run-for counts from here: a first run may spend a minute fetching the broker's jars.
        started = time.monotonic()
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
        books = pipeline.books()
        summary = pipeline.summary(time.monotonic() - started, books)
    if args.summary_json is not None:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
        _stderr(f"cryptopipe up: summary written to {args.summary_json}")
    _stderr(f"cryptopipe up: {books.line()}")
    if not books.balanced:
        # A service that died (1) is the cause worth reporting; otherwise the books decide.
        exit_code = exit_code or EXIT_UNBALANCED
    return exit_code
