"""``Pipeline.start()``: the one start sequence, and what a running pipeline can be asked.

Servers first (found or started, see :mod:`cryptopipe.infra`), then the exchange side (live
Binance, or the replay exchange), then the prices consumers (once they own partitions), the
alerts consumer, every ingest shard and the Spark job, and last our own ``/metrics``,
Prometheus and the dashboard. Each service is its own process, configured through its settings
(handed over as environment variables, never as flags), logged in to Kafka as its own principal
and to Redis as its own ACL user (:mod:`cryptopipe.pipeline.redis_users`). Stopping is
:mod:`cryptopipe.pipeline.drain`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings

from cryptopipe.alerting.settings import AlertingSettings
from cryptopipe.infra import (
    InfraError,
    KafkaEndpoint,
    LocalServer,
    RedisEndpoint,
    resolve_kafka,
    resolve_redis,
)
from cryptopipe.infra.prometheus import PrometheusServer
from cryptopipe.infra.redis_acl import service_env as redis_service_env
from cryptopipe.ingest.settings import load_settings as load_ingest_settings
from cryptopipe.observability import Scrape
from cryptopipe.observability import metrics as m
from cryptopipe.observability.prometheus import DEFAULT_METRICS_PORTS
from cryptopipe.pipeline.config import DEFAULT_SYMBOLS, PipelineConfig
from cryptopipe.pipeline.java import find_java
from cryptopipe.pipeline.names import component_of, group_assigned, member_names, parse_symbols, split_symbols
from cryptopipe.pipeline.observe import start_observability
from cryptopipe.pipeline.redis_users import redis_users
from cryptopipe.pipeline.say import say
from cryptopipe.pipeline.service import Service
from cryptopipe.pipeline.spark import start_alerting
from cryptopipe.runtime import RunSettings, environ_of, free_port, rate_limited_logger
from cryptopipe.schemas import PRICES, RedisSettings, load_settings
from cryptopipe.schemas.topics import DEFAULT_PARTITIONS
from cryptopipe.store.settings import AlertsConsumerSettings, BooksConsumerSettings, PricesConsumerSettings

logger = logging.getLogger(__name__)
_LIBRDKAFKA = rate_limited_logger("cryptopipe.pipeline.librdkafka")


@dataclass
class RunState:
    """What a run started and where everything is; read by the drain, the books and the summary."""

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
    lag_max: dict[str, float | None] = field(default_factory=lambda: {"consumer": None, "alerting": None})
    """The highest lag the progress lines saw: the consumers' and the Spark query's."""
    stopped: set[str] = field(default_factory=set)
    """Services stopped on purpose before the drain (ingest once a tape has finished)."""
    handled_before: dict[str, int] = field(default_factory=dict)
    """Records a consumer's earlier process handled, by service name: one killed and started
    again mid-run (a fault scenario) takes up from its group's committed offsets, and the
    figures of the process before it died with it."""
    tape_finished: bool = False
    """Whether the replayed tape has played to its end."""


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


def _served_symbols(rest_url: str) -> list[str]:
    with urllib.request.urlopen(f"{rest_url}/api/v3/exchangeInfo", timeout=5) as response:
        info = json.loads(response.read())
    return [
        entry["symbol"].lower() for entry in info["symbols"] if entry.get("status", "TRADING") == "TRADING"
    ]


class Pipeline:
    """One pipeline run: started by :meth:`start`, watched through :meth:`scrape`, stopped by
    :func:`cryptopipe.pipeline.drain.drain`. Everything it starts is registered on ``stack``."""

    def __init__(
        self,
        config: PipelineConfig,
        stack: contextlib.ExitStack,
        workdir: Path,
        *,
        log: Callable[[str], None] = say,
    ) -> None:
        self.config = config
        self.log = log
        self.stack = stack
        self.workdir = workdir
        self.state = RunState(source=config.exchange.source)
        self.ports = _Ports(config.observability.metrics_base_port)
        self.env: dict[str, str] = {}
        self.servers: dict[str, LocalServer | None] = {}
        self.kafka: KafkaEndpoint | None = None
        self.rest_url: str | None = None
        self.redis: RedisEndpoint | None = None
        #: Each Redis service's own ACL user (None: every service uses the run's REDIS_URL).
        self.redis_users: dict[str, RedisSettings] | None = None
        self.prometheus: PrometheusServer | None = None
        self.java: str | None = None
        self.shards: list[list[str]] = []
        #: Metrics ports of services planned but not started yet (ingest starts last).
        self.planned_ports: dict[str, int] = {}
        if config.alerting.enabled:
            self.java = find_java()

    # --- the start sequence ----------------------------------------------------------------

    def start(
        self, servers: tuple[KafkaEndpoint, RedisEndpoint] | None = None, *, observability: bool = True
    ) -> None:
        """Servers (``servers`` when given, else found or started), the exchange, the readers (the
        consumers and the Spark job), then (``observability``) our /metrics, Prometheus and the
        dashboard, and ingest last: a replayed tape starts when ingest subscribes, so it plays to a
        pipeline that is all up."""
        if servers is None:
            settings = self.config.servers
            kafka = resolve_kafka(settings.kafka, stack=self.stack)
            redis = resolve_redis(settings.redis, stack=self.stack)
            say(f"cryptopipe up: broker {kafka}; redis {redis}")
            servers = (kafka, redis)
        self.use_servers(*servers)
        ws_url, rest_url = self.start_exchange()
        self.start_readers(rest_url)
        if observability:
            start_observability(self)
        self.start_ingest(ws_url, rest_url)

    def use_servers(self, kafka: KafkaEndpoint, redis: RedisEndpoint) -> None:
        self.kafka, self.redis = kafka, redis
        self.state.broker = kafka.kind
        self.state.redis = redis.kind
        self.servers = {"broker": kafka.server, "redis": redis.server}
        self.redis_users = redis_users(redis, self.config.servers.redis, self.workdir / "redis-users")
        self.env = {
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "KAFKA_TOPIC_PREFIX": self.topic_prefix,
            "REDIS_KEY_PREFIX": self.key_prefix,
        }
        if self.redis_users is None:  # as configured: every service uses REDIS_URL
            self.env["REDIS_URL"] = redis.url.get_secret_value()

    def redis_reader(self) -> RedisSettings | None:
        """Who reads Redis on the run's behalf (the summary's alert feed, a reconciliation): the
        dashboard's read-only user when the services have their own users, else the run's URL."""
        if self.redis_users is not None and "dashboard" in self.redis_users:
            return self.redis_users["dashboard"]
        if self.redis is None:
            return None
        return self.redis.settings.model_copy(update={"url": self.redis.url, "key_prefix": self.key_prefix})

    @property
    def topic_prefix(self) -> str:
        return self.config.servers.kafka.topic_prefix

    @property
    def key_prefix(self) -> str:
        return self.config.servers.redis.key_prefix

    def start_exchange(self) -> tuple[str, str]:
        """The exchange's WebSocket and REST URLs: Binance's, or a replay exchange started here."""
        exchange = self.config.exchange
        if exchange.source == "binance":
            return exchange.binance_ws_url, exchange.binance_rest_url
        ready_file = self.workdir / "replay-ready.json"
        update: dict[str, Any] = {"port": 0, "ready_file": ready_file}
        if self.config.depth != "off":
            update["book"] = True  # synthetic trades then come with a book (depth, bookTicker, REST)
        settings = exchange.replay_settings().model_copy(update=update)
        env = self.service_env(settings, self.workdir / "replay-exchange-stats.json")
        self.launch("replay-exchange", ["replay-exchange"], env=env, ready_file=ready_file)
        ready = json.loads(ready_file.read_text())
        self.rest_url = str(ready["rest_url"])
        return str(ready["ws_url"]), self.rest_url

    def start_readers(self, rest_url: str) -> None:
        """The prices consumers (once they own partitions), the alerts consumer and the Spark job;
        deals the symbols to the ingest shards. Raises :class:`ConfigError` for more shards than
        symbols."""
        config = self.config
        if config.symbols == ("all",):
            # Every TRADING symbol: each ingest shard resolves the list itself and takes its share.
            self.shards = [["all"]] * config.ingest_shards
            self.state.symbols = ["all"]
            self.planned_ports = {n: self.ports.of(n) for n in member_names("ingest", config.ingest_shards)}
            self._start_readers()
            return
        if config.symbols:
            symbols = list(config.symbols)
        elif config.replay:
            symbols = _served_symbols(rest_url)
        else:
            symbols = list(DEFAULT_SYMBOLS)
        self.shards = split_symbols(parse_symbols(",".join(symbols)), config.ingest_shards)
        self.state.symbols = symbols
        self.planned_ports = {name: self.ports.of(name) for name in member_names("ingest", len(self.shards))}
        self._start_readers()

    def _start_readers(self) -> None:
        config = self.config
        consumers = member_names("prices-consumer", config.consumers)
        for name in consumers:
            self._start_consumer(name)
        self.wait_assigned(*consumers)
        if config.depth != "off":
            books = member_names("books-consumer", config.book_consumers)
            for name in books:
                self._start_consumer(name)
            self.wait_assigned(*books)
        if self.alerting_enabled:
            self._start_consumer("alerts-consumer")
            self.wait_assigned("alerts-consumer")
            start_alerting(self)

    def start_ingest(self, ws_url: str, rest_url: str) -> None:
        """Every ingest shard, each on its share of the symbols."""
        for index, (name, share) in enumerate(zip(list(self.planned_ports), self.shards, strict=True)):
            self._start_ingest(name, share, ws_url, rest_url, shard=(index, len(self.shards)))

    # --- services --------------------------------------------------------------------------

    def launch(self, name: str, command: list[str], *, env: dict[str, str], **kwargs: Any) -> Service:
        """Start one service process and follow its log.

        It is principal ``KAFKA_PRINCIPAL`` = its component (``ingest``, ``prices-consumer``, ...)
        of KAFKA_PRINCIPALS_FILE, when there is one, and Redis user ``REDIS_URL`` (its name, no
        password) with ``REDIS_PASSWORD_FILE``, when the run has users: each service logs in as itself.
        """
        component = component_of(name)
        env = {**env, "KAFKA_PRINCIPAL": component, **redis_service_env(self.redis_users, component)}
        service = Service(name, command, env=env, **kwargs)
        self.stack.callback(service.stop)
        service.start()
        service.follow_log(self.log)
        self.state.services[service.name] = service
        return service

    def service_env(self, settings: BaseSettings, stats: Path) -> dict[str, str]:
        """A child's environment: the servers, its settings, where its books go."""
        run = load_settings(RunSettings, stats_json=stats)
        return {**self.env, **environ_of(settings), **environ_of(run)}

    def stats_file(self, name: str) -> Path:
        path = self.workdir / f"{name}-stats.json"
        self.state.stats_files[name] = path
        return path

    def latency_samples_file(self, name: str) -> Path | None:
        """Where prices consumer ``name`` writes its latency samples (None: it writes none)."""
        folder = self.config.latency_samples
        return None if folder is None else folder / f"{name}.json"

    def _start_ingest(
        self, name: str, symbols: Sequence[str], ws_url: str, rest_url: str, *, shard: tuple[int, int]
    ) -> None:
        """One ingest process (a shard: its own symbols, stats file and /metrics port; with ``all``,
        its share of the exchange's symbols: every ``shard[1]``-th from ``shard[0]``)."""
        port = self.planned_ports.pop(name)
        settings = load_ingest_settings(
            symbols=",".join(symbols),
            mode=self.config.mode,
            ws_url=ws_url,
            rest_url=rest_url,
            metrics_port=port,
            depth=self.config.depth,
            all_shard_index=shard[0],
            all_shard_count=shard[1],
        )
        env = self.service_env(settings, self.stats_file(name))
        self.launch(name, ["ingest"], env=env, metrics_port=port)

    def _start_consumer(self, name: str) -> None:
        """One consumer process (prices or alerts: same loop, different sink); it joins its group
        in the background (see :meth:`wait_assigned`)."""
        port = self.ports.of(name)
        settings: BaseSettings
        if component_of(name) == "prices-consumer":
            settings = load_settings(
                PricesConsumerSettings,
                from_beginning=True,
                metrics_port=port,
                history_cap=self.config.history_cap,
                latency_samples=self.latency_samples_file(name),
            )
        elif component_of(name) == "books-consumer":
            settings = load_settings(BooksConsumerSettings, from_beginning=True, metrics_port=port)
        else:
            settings = load_settings(AlertsConsumerSettings, from_beginning=True, metrics_port=port)
        env = self.service_env(settings, self.stats_file(name))
        self.launch(name, [component_of(name)], env=env, metrics_port=port)

    @property
    def alerting_enabled(self) -> bool:
        return self.config.alerting.enabled and self.java is not None

    def alerting_settings(self, **overrides: Any) -> AlertingSettings:
        """The job's settings, fitted to the broker found.

        Spark's Kafka connector plans each micro-batch up to the partitions' ends as ListOffsets
        answers them. A broker whose answer falls short of the log (Tansu: the last record
        batch's base offset + 1) hides the newest records from it until more arrive, and for good
        once the stream stops. So there, unless told which source to use, the job reads with the
        Python Data Source, whose ends are offsets it fetched.
        """
        configured = self.config.alerting.settings or load_settings(AlertingSettings)
        settings = configured.model_copy(update=overrides)
        if settings.source == "auto" and self.kafka is not None and self.kafka.quirks.list_offsets_unreliable:
            say(
                f"cryptopipe up: {self.kafka.kind} answers ListOffsets short of the log, which Spark's "
                "Kafka connector plans its micro-batches by; the alerting job reads with the Python "
                "Data Source (ALERTING_SOURCE=native overrides)"
            )
            settings = settings.model_copy(update={"source": "python"})
        return settings

    # --- what a running pipeline can be asked ----------------------------------------------

    def members(self, component: str) -> list[str]:
        """The service names of a component's processes (``ingest``, ``ingest-2``, ...), in order."""
        names = dict.fromkeys([*self.state.services, *self.state.stats_files])
        return [name for name in names if component_of(name) == component]

    def scrape(self, *names: str, timeout: float = 2.0, strict: bool = False) -> Scrape:
        """One scrape of the running services ``names`` (all when none is named), each allowed
        ``timeout`` seconds. A service that cannot be read makes it empty (a progress line shows
        nothing rather than stopping the run), or, when ``strict``, raises RuntimeError: counts
        that must never read as 0 because a page was slow to render."""
        urls = [
            s.metrics_url
            for n, s in self.state.services.items()
            if s.metrics_url and (not names or n in names) and s.running()
        ]
        try:
            return Scrape.from_urls(*urls, timeout=timeout)
        except OSError as exc:
            if strict:
                raise RuntimeError(
                    f"could not read the metrics of {', '.join(names) or 'the services'}: {exc}"
                ) from exc
            return Scrape([])

    def dead_service(self) -> Service | None:
        """A service that exited without being asked to."""
        for name, service in self.state.services.items():
            if name not in self.state.stopped and not service.running():
                return service
        return None

    def wait_assigned(self, *names: str, timeout: float = 60.0) -> None:
        """Wait until the consumers ``names`` (members of one group) have joined it and own
        partitions: each of them, and together all of the topic's (see :func:`group_assigned`).

        Trades produced before that would wait in Kafka for the group join (seconds on some
        brokers) and show up as pipeline latency that no steady-state run has.
        """
        partitions = self.prices_partitions() if len(names) > 1 else 1
        if len(names) > partitions:
            say(
                f"cryptopipe up: {len(names)} consumers for {partitions} partitions: "
                f"{len(names) - partitions} of them will idle (one partition goes to one member)"
            )
        deadline = time.monotonic() + timeout
        while not group_assigned([self.scrape(n).total(m.CONSUMER_ASSIGNED) for n in names], partitions):
            for name in names:
                service = self.state.services[name]
                if not service.running():
                    raise InfraError(f"{name} exited with code {service.returncode()}: {service.log_tail()}")
            if time.monotonic() > deadline:
                raise InfraError(
                    f"{', '.join(names)} did not own all {partitions} partition(s) within {timeout:.0f} s"
                )
            time.sleep(0.1)

    @property
    def prices_topic(self) -> str:
        return PRICES.with_prefix(self.topic_prefix).name

    def prices_partitions(self) -> int:
        """How many partitions the prices topic has (the default when the broker does not say)."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        if self.kafka is None:
            return DEFAULT_PARTITIONS
        config: dict[str, Any] = {**self.kafka.settings.client_config(), "logger": _LIBRDKAFKA}
        try:
            metadata = AdminClient(config).list_topics(self.prices_topic, timeout=10)
        except KafkaException:
            return DEFAULT_PARTITIONS
        found = metadata.topics.get(self.prices_topic)
        if found is None or found.error is not None or not found.partitions:
            return DEFAULT_PARTITIONS
        return len(found.partitions)
