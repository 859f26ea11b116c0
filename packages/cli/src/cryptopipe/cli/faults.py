"""Fault scenarios on the prices path, reconciled trade by trade against Redis.

Each scenario runs the whole path exactly as ``cryptopipe up`` runs it (:class:`cryptopipe.cli.up.Pipeline`:
replay exchange -> ingest -> Kafka -> prices consumer -> Redis, every service its own process
with its production settings, ingest's idempotent ``acks=all`` producer included), injects one
fault mid-stream, heals it, waits until the pipeline has caught up, and then counts:

- ``leader-kill``: the leader of the busiest ``prices`` partition on a 3-broker cluster is killed
  with SIGKILL, kept down for the outage, then restarted on its data directory (topics created
  with replication factor 3; ``min.insync.replicas`` 2 is the cluster's default and is checked);
- ``broker-restart``: the single local broker is stopped (SIGTERM, controlled shutdown), kept
  down for the outage and started again on the same data directory;
- ``network-cut``: every connection to the broker is cut by the project's
  :class:`~cryptopipe.infra.proxy.TcpProxy` for the outage (clients only know the proxy);
- ``redis-restart``: Redis, with the append-only file on, is killed with SIGKILL (a crash: only
  what the AOF holds survives), kept down for the outage and restarted on its directory;
- ``consumer-kill``: the prices consumer is killed with SIGKILL, kept down for the outage and
  started again with the same command line (same group, resumes from its committed offsets).

How trades are reconciled by id, end to end, without changing what the product writes:

- **offered**: the replay exchange plays a fixed number of synthetic trades (``--count``; ids are
  consecutive per symbol). Its REST ``/api/v3/aggTrades`` history is, by contract, exactly what it
  played, so paging through it from the first id gives the set of (symbol, trade id) offered.
- **written**: the prices consumer writes every trade it handles into the product's own history
  sorted set ``{prefix}history:{SYMBOL}`` (member = the trade's intrinsic fields, trade id
  included) in the same Lua script that moves the latest price. The scenarios run the consumer
  with ``--history-cap`` above the number of trades, so that set is a complete record of what
  reached Redis, read back from Redis itself (after a Redis crash, from what the AOF restored).
  No side channel, no wrapper around the sink: the unmodified consumer process writes, the
  scenario reads. ``written`` = offered ids found there; ``lost`` = offered ids missing there.
- **duplicated**: extra copies of a (symbol, trade id) in the ``prices`` topic (read from the
  beginning at the end, by a separate consumer with its own group id; ingest's idempotent
  producer and id de-duplication must keep it at 0 through broker failovers, restarts and cuts),
  plus extra history members carrying the same trade id in Redis (one trade written twice with
  different content). A consumer replaying a batch after a crash rewrites identical members and
  never moves the latest price backwards: that is idempotence, not duplication.
- Also checked (reported as problems, which fail a scenario too): ids in Redis or in the topic
  that were never offered, the latest price of each symbol not being its last offered trade,
  and on the cluster the topic's replication (3 replicas, ``min.insync.replicas`` 2).

``recovery_s``: seconds from the end of the fault (broker back and answering metadata, proxy
resumed, Redis answering PING, consumer process up) until the pipeline caught up. A monitor
polls every 0.1 s how many trades the exchange has offered (REST, latest id per symbol) and how
many reached Redis (ZCARD of the history sets); caught up = Redis holds every trade offered up
to the previous poll, i.e. lag 0 at the poll's resolution (exactly lag 0 once the tape has
ended). When the pipeline caught up while the fault was still on (a failover), it is the first
poll after the fault's end; the progress line then says when, after the fault began, the
pipeline fell behind and caught up again (:func:`lag_episode`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis as redis_lib
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]

from cryptopipe.cli import up
from cryptopipe.infra import (
    KafkaCluster,
    KafkaEndpoint,
    KafkaQuirks,
    LocalServer,
    RedisEndpoint,
    RedisServer,
    TcpProxy,
)
from cryptopipe.ingest.service import Ingest
from cryptopipe.ingest.settings import load_settings as load_ingest_settings
from cryptopipe.runtime import ensure_topics
from cryptopipe.schemas import (
    PRICES,
    DecodeError,
    KafkaSettings,
    RedisSettings,
    decode_trade,
)
from cryptopipe.store import PriceStore, connect_redis, delete_prefixed, price_keys

SCENARIOS: tuple[str, ...] = (
    "leader-kill",
    "broker-restart",
    "network-cut",
    "redis-restart",
    "consumer-kill",
)
"""Scenario names, in the order the benchmark runs them."""

ROW_FIELDS = ("fault", "offered", "written", "lost", "duplicated", "recovery_s")

_CONSUMER = "prices-consumer"
_HISTORY_MARGIN = 1000
_REST_PAGE = 1000


class ScenarioError(RuntimeError):
    """A scenario could not run to the end (a service died, a server is not the right kind)."""


@dataclass(frozen=True)
class FaultConfig:
    """How hard and how long: the offered rate, the stream's length and the fault's length."""

    rate: float = 1000.0
    """Offered trades per second, all symbols together (steady Poisson arrivals)."""
    duration: float = 30.0
    """Seconds of trades the exchange plays; it offers ``rate * duration`` trades in all."""
    outage: float = 10.0
    """How long each fault lasts before it is healed (the network cut, the time a process is down)."""
    fault_at: float = 0.25
    """When the fault starts, as a fraction of ``duration`` after the first trade (at least 2 s)."""
    symbols: tuple[str, ...] = ("btcusdt", "ethusdt")
    seed: int = 1
    settle_timeout: float = 60.0
    """Give up waiting for the pipeline to catch up after this long without any progress."""
    poll_interval: float = 0.1

    @property
    def count(self) -> int:
        return max(1, round(self.rate * self.duration))

    @property
    def fault_delay(self) -> float:
        return max(2.0, self.fault_at * self.duration)


@dataclass
class Servers:
    """What a scenario runs on. ``proxy`` (network-cut) must be what ``kafka`` points at;
    ``cluster`` is needed by leader-kill; ``kafka.server`` by broker-restart; ``redis.server``
    (a :class:`RedisServer` with ``appendonly``) by redis-restart."""

    kafka: KafkaEndpoint
    redis: RedisEndpoint
    proxy: TcpProxy | None = None
    cluster: KafkaCluster | None = None


@dataclass
class ScenarioResult:
    """One scenario's counts; :meth:`row` has the benchmark's fields, the rest is detail."""

    fault: str
    offered: int
    written: int
    lost: int
    duplicated: int
    recovery_s: float | None
    published: int = 0
    """Distinct offered trades found in the prices topic."""
    topic_duplicates: int = 0
    redis_duplicates: int = 0
    fault_s: float = 0.0
    """How long the fault lasted, injection to healed (restarts included)."""
    detail: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and not self.problems

    def row(self) -> dict[str, Any]:
        """The benchmark's row: exactly :data:`ROW_FIELDS`."""
        return {name: getattr(self, name) for name in ROW_FIELDS}


Progress = Callable[[str], None]


def stderr_progress(prefix: str = "faults") -> Progress:
    def emit(text: str) -> None:
        print(f"{prefix}: {text}", file=sys.stderr, flush=True)

    return emit


# --- endpoints for servers started here ----------------------------------------------------------


def kafka_endpoint(bootstrap_servers: str, kind: str, server: LocalServer | None = None) -> KafkaEndpoint:
    settings = KafkaSettings().model_copy(update={"bootstrap_servers": bootstrap_servers})
    return KafkaEndpoint(bootstrap_servers, kind, KafkaQuirks(), settings, server)


def cluster_endpoint(cluster: KafkaCluster) -> KafkaEndpoint:
    return kafka_endpoint(cluster.bootstrap_servers, cluster.kind)


def redis_endpoint(server: RedisServer) -> RedisEndpoint:
    settings = RedisSettings().model_copy(update={"url": server.url})
    return RedisEndpoint(server.url, server.kind, settings, server)


# --- the offered side: the replay exchange's REST history ----------------------------------------


def _rest_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _agg_trades(rest_url: str, symbol: str, **params: int) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"symbol": symbol.upper(), **params})
    found = _rest_json(f"{rest_url}/api/v3/aggTrades?{query}", timeout=10.0)
    return found if isinstance(found, list) else []


def offered_ids(rest_url: str, symbols: Sequence[str]) -> dict[str, list[int]]:
    """Every trade id the exchange played, per (upper-case) symbol, from its REST history."""
    out: dict[str, list[int]] = {}
    for symbol in symbols:
        ids: list[int] = []
        next_id = 0
        while True:
            page = _agg_trades(rest_url, symbol, fromId=next_id, limit=_REST_PAGE)
            ids += [int(t["a"]) for t in page]
            if len(page) < _REST_PAGE:
                break
            next_id = ids[-1] + 1
        out[symbol.upper()] = ids
    return out


# --- the monitor: offered vs written while the scenario runs ------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One poll: trades offered so far and trades in Redis; None where that side did not answer."""

    t: float
    offered: int | None
    written: int | None


class Monitor:
    """Polls trades offered (exchange REST) and trades in Redis (history ZCARD) on a thread."""

    def __init__(
        self, rest_url: str, symbols: Sequence[str], redis_url: str, key_prefix: str, interval: float
    ) -> None:
        self.rest_url = rest_url
        self.symbols = [s.upper() for s in symbols]
        self.interval = interval
        self.samples: list[Sample] = []
        """Every poll, in order."""
        self.offered: int | None = None
        """Trades offered at the last poll (None: the exchange did not answer)."""
        self.written: int | None = None
        """Trades in Redis at the last poll (None: Redis did not answer)."""
        self.last_complete: Sample | None = None
        """The last poll that both sides answered."""
        self._keys = [price_keys(key_prefix, s)[1] for s in self.symbols]
        self._first: dict[str, int] = {}
        self._client = redis_lib.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faults-monitor", daemon=True)

    def start(self) -> Monitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._client.close()

    def _offered(self) -> int | None:
        total = 0
        try:
            for symbol in self.symbols:
                last = _agg_trades(self.rest_url, symbol, limit=1)
                if not last:
                    continue
                if symbol not in self._first:
                    self._first[symbol] = int(_agg_trades(self.rest_url, symbol, fromId=0, limit=1)[0]["a"])
                total += int(last[-1]["a"]) - self._first[symbol] + 1
        except (OSError, ValueError, KeyError, IndexError):
            return None
        return total

    def _written(self) -> int | None:
        try:
            pipe = self._client.pipeline(transaction=False)
            for key in self._keys:
                pipe.zcard(key)
            return sum(int(n) for n in pipe.execute())
        except redis_lib.RedisError:
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            offered = self.offered = self._offered()
            written = self.written = self._written()
            sample = Sample(started, offered, written)
            self.samples.append(sample)
            if offered is not None and written is not None:
                self.last_complete = sample
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))


def recovery_seconds(samples: Sequence[Sample], fault_end: float) -> float | None:
    """From ``fault_end`` to the first poll at which Redis held every trade offered up to the
    poll just before it (None if that never happened)."""
    for previous, sample in itertools.pairwise(samples):
        if sample.t < fault_end or previous.offered is None or sample.written is None:
            continue
        if sample.written >= previous.offered:
            return round(sample.t - fault_end, 2)
    return None


def lag_episode(samples: Sequence[Sample], since: float) -> tuple[float, float | None] | None:
    """(behind from, caught up at), in seconds after ``since``: the longest stretch after ``since``
    during which Redis lacked trades offered a poll earlier (None if it never fell behind; caught
    up at None if it was still behind at the last poll)."""
    stretches: list[tuple[float, float | None]] = []
    start: float | None = None
    last = since
    for previous, sample in itertools.pairwise(samples):
        if sample.t < since or previous.offered is None:
            continue
        last = sample.t
        caught_up = sample.written is not None and sample.written >= previous.offered
        if start is None and not caught_up:
            start = sample.t
        elif start is not None and caught_up:
            stretches.append((start, sample.t))
            start = None
    if start is not None:
        stretches.append((start, None))
    if not stretches:
        return None
    begin, end = max(stretches, key=lambda s: (last if s[1] is None else s[1]) - s[0])
    return round(begin - since, 2), None if end is None else round(end - since, 2)


# --- the Kafka side ------------------------------------------------------------------------------


def topic_trade_ids(settings: KafkaSettings, topic: str, timeout: float = 120.0) -> Counter[tuple[str, int]]:
    """(symbol, trade id) -> copies, over every record of ``topic`` (read from the start by a
    consumer of its own, up to the high watermarks taken when it starts)."""
    consumer = Consumer(
        {
            **settings.client_config(),
            "group.id": f"faults-verify-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    counts: Counter[tuple[str, int]] = Counter()
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        ends: dict[int, int] = {}
        assignment = []
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
            if high > low:
                ends[partition] = high
                assignment.append(TopicPartition(topic, partition, low))
        consumer.assign(assignment)
        pending = set(ends)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise ScenarioError(f"reading {topic} back took longer than {timeout:.0f} s")
            for message in consumer.consume(1000, 1.0):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise ScenarioError(f"reading {topic} back: {error}")
                    continue
                partition, offset = message.partition(), message.offset()
                if partition is None or offset is None or partition not in ends or offset >= ends[partition]:
                    continue
                try:
                    trade = decode_trade(message.value() or b"")
                except DecodeError:
                    counts[("?", offset)] += 1
                else:
                    counts[(trade.symbol.upper(), trade.trade_id)] += 1
                if offset >= ends[partition] - 1:
                    pending.discard(partition)
    finally:
        consumer.close()
    return counts


def replication_problems(settings: KafkaSettings, topic: str, replicas: int, min_isr: int) -> list[str]:
    """Whether ``topic`` really has ``replicas`` replicas per partition and ``min.insync.replicas``."""
    admin = AdminClient(settings.client_config())
    problems = []
    metadata = admin.list_topics(topic, timeout=30).topics[topic]
    for partition, info in sorted(metadata.partitions.items()):
        if len(info.replicas) != replicas:
            problems.append(f"{topic}[{partition}] has {len(info.replicas)} replicas, not {replicas}")
    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    entry = configs.get("min.insync.replicas")
    if entry is None or str(entry.value) != str(min_isr):
        problems.append(
            f"{topic} has min.insync.replicas={None if entry is None else entry.value}, not {min_isr}"
        )
    return problems


def busiest_partition_leader(settings: KafkaSettings, topic: str) -> tuple[int, int]:
    """(partition, leader node id) of the partition of ``topic`` holding the most records."""
    consumer = Consumer({**settings.client_config(), "group.id": f"faults-probe-{uuid.uuid4().hex[:8]}"})
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        sizes = {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
            sizes[partition] = high - low
        partition = max(sizes, key=lambda p: (sizes[p], -p))
        return partition, int(metadata.partitions[partition].leader)
    finally:
        consumer.close()


# --- one run -------------------------------------------------------------------------------------


@dataclass
class Run:
    """A running scenario, as its fault sees it."""

    name: str
    servers: Servers
    config: FaultConfig
    pipeline: up.Pipeline
    kafka_settings: KafkaSettings
    prices_topic: str
    progress: Progress
    monitor: Monitor
    expected_down: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    """What the fault found wrong on its way (merged into the result's problems)."""

    def hold(self, what: str) -> None:
        """Keep the fault on for ``config.outage`` seconds, with a progress line every 5 s."""
        self.progress(f"{what}; holding the fault for {self.config.outage:g} s")
        end = time.monotonic() + self.config.outage
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 5.0))
            self.report("  during the fault:")

    def report(self, what: str) -> None:
        offered, written = self.monitor.offered, self.monitor.written
        self.progress(
            f"{what} offered {'?' if offered is None else offered}/{self.config.count}, "
            + ("Redis not answering" if written is None else f"in Redis {written}")
        )

    @contextlib.contextmanager
    def down(self, service: str) -> Iterator[None]:
        self.expected_down.add(service)
        try:
            yield
        finally:
            self.expected_down.discard(service)

    def check_services(self) -> None:
        for name, service in self.pipeline.runtime.services.items():
            if name not in self.expected_down and not service.running():
                raise ScenarioError(
                    f"{name} exited with code {service.returncode()} during {self.name}: {service.log_tail()}"
                )


Fault = Callable[[Run], str]
"""Injects a fault, holds it, heals it (blocking); returns what it did, for the progress line."""


def _up_args(config: FaultConfig) -> list[str]:
    return [
        "--source",
        "replay",
        "--rate",
        str(config.rate),
        "--symbols",
        ",".join(config.symbols),
        "--seed",
        str(config.seed),
        "--history-cap",
        str(config.count + _HISTORY_MARGIN),
        "--metrics-base-port",
        "0",
        "--no-alerting",
        "--no-dashboard",
        "--no-prometheus",
    ]


def _create_topics(
    servers: Servers,
    config: FaultConfig,
    kafka_settings: KafkaSettings,
    replication_factor: int,
    emit: Callable[[str], None],
) -> None:
    """The topics ingest itself would create (same partitions and retention), created up front
    with the replication factor the scenario asks for."""
    specs = Ingest(load_ingest_settings(symbols=",".join(config.symbols)), kafka_settings).topic_specs()
    ensure_topics(kafka_settings, specs, replication_factor=replication_factor, timeout_s=30.0)
    emit(
        f"{config.count} trades at {config.rate:g}/s on {servers.kafka}, Redis {servers.redis.kind}; "
        f"topics {', '.join(s.name for s in specs)} (replication factor "
        f"{replication_factor if replication_factor > 0 else 'broker default'})"
    )


def _recovery_line(
    caught_up: bool, recovery: float | None, episode: tuple[float, float | None] | None
) -> str:
    """Whether the pipeline caught up, how fast, and when it was behind (relative to the fault)."""
    line = "caught up" if caught_up else "did NOT catch up"
    if recovery is not None:
        line += f"; recovery {recovery:.2f} s after the fault's end"
    if episode is None:
        return line + "; never behind"
    end = "the end" if episode[1] is None else f"{episode[1]:.1f} s"
    return line + f"; behind from {episode[0]:.1f} s to {end} after the fault began"


def run_scenario(
    name: str,
    servers: Servers,
    config: FaultConfig,
    fault: Fault,
    *,
    replication_factor: int = -1,
    progress: Progress | None = None,
) -> ScenarioResult:
    """Run the pipeline, inject ``fault`` mid-stream, wait for it to catch up, reconcile by id."""
    say = progress or stderr_progress()

    def emit(text: str) -> None:
        say(f"[{name}] {text}")

    run_id = f"faults-{name}-{uuid.uuid4().hex[:6]}-"
    topic_prefix = servers.kafka.settings.topic_prefix + run_id
    key_prefix = servers.redis.settings.key_prefix + run_id
    kafka_settings = servers.kafka.settings.model_copy(update={"topic_prefix": topic_prefix})
    prices_topic = PRICES.with_prefix(topic_prefix).name
    _create_topics(servers, config, kafka_settings, replication_factor, emit)
    args = up.build_parser().parse_args(_up_args(config))
    redis_url = servers.redis.url.get_secret_value()
    with tempfile.TemporaryDirectory(prefix="cryptopipe-faults-") as tmp, contextlib.ExitStack() as stack:
        pipeline = up.Pipeline(
            args,
            stack,
            Path(tmp),
            extra_args={"replay-exchange": ["--no-burst", "--count", str(config.count)]},
            extra_env={"KAFKA_TOPIC_PREFIX": topic_prefix, "REDIS_KEY_PREFIX": key_prefix},
        )
        pipeline.use_servers(servers.kafka, servers.redis)
        emit("starting replay exchange, prices consumer and ingest")
        _, rest_url = _start(pipeline)
        monitor = Monitor(rest_url, config.symbols, redis_url, key_prefix, config.poll_interval).start()
        stack.callback(monitor.stop)
        run = Run(name, servers, config, pipeline, kafka_settings, prices_topic, emit, monitor)
        started = _wait_flowing(run, monitor)
        emit(f"trades flowing; fault in {config.fault_delay:.1f} s")
        while time.monotonic() < started + config.fault_delay:
            run.check_services()
            time.sleep(0.1)
        run.report("before the fault:")
        fault_start = time.monotonic()
        detail = fault(run)
        fault_end = time.monotonic()
        emit(f"fault over after {fault_end - fault_start:.1f} s: {detail}")
        run.report("  at the fault's end:")
        caught_up = _wait_caught_up(run, monitor, fault_end)
        samples = list(monitor.samples)
        recovery = recovery_seconds(samples, fault_end)
        episode = lag_episode(samples, fault_start)
        emit(_recovery_line(caught_up, recovery, episode))
        emit("reconciling by trade id: exchange history, prices topic, Redis")
        result = _reconcile(name, run, rest_url, redis_url, key_prefix, recovery)
        result.fault_s = round(fault_end - fault_start, 2)
        result.detail = detail
        result.problems = run.problems + result.problems
        if not caught_up and result.lost == 0:
            result.problems.append("the pipeline never caught up with the exchange")
        emit("stopping the pipeline")
    _cleanup_redis(redis_url, key_prefix)
    emit(
        f"offered {result.offered}, written {result.written}, lost {result.lost}, duplicated "
        f"{result.duplicated} (topic {result.topic_duplicates}, Redis {result.redis_duplicates}), "
        f"in the topic {result.published}"
        + (f"; PROBLEMS: {'; '.join(result.problems)}" if result.problems else "")
    )
    return result


def _start(pipeline: up.Pipeline) -> tuple[str, str]:
    ws_url, rest_url = pipeline.start_exchange()
    pipeline.start_services(ws_url, rest_url)
    return ws_url, rest_url


def _wait_flowing(run: Run, monitor: Monitor, timeout: float = 60.0) -> float:
    """Wait until trades are offered and some have reached Redis; returns when the first was offered."""
    deadline = time.monotonic() + timeout
    while True:
        run.check_services()
        latest = monitor.last_complete
        if latest is not None and latest.offered and latest.written:
            return next(s.t for s in monitor.samples if s.offered)
        if time.monotonic() > deadline:
            raise ScenarioError(f"no trade reached Redis within {timeout:.0f} s of the start")
        time.sleep(0.1)


def _wait_caught_up(run: Run, monitor: Monitor, since: float) -> bool:
    """Wait until a poll after ``since`` shows every trade offered and in Redis; False when
    nothing moved for ``settle_timeout`` seconds."""
    count = run.config.count
    last_change = time.monotonic()
    seen: tuple[int | None, int | None] | None = None
    next_line = time.monotonic() + 5
    while True:
        run.check_services()
        latest = monitor.last_complete
        now = time.monotonic()
        if latest is not None and latest.t >= since:
            assert latest.offered is not None
            assert latest.written is not None
            if latest.offered >= count and latest.written >= latest.offered:
                return True
            if (latest.offered, latest.written) != seen:
                seen = (latest.offered, latest.written)
                last_change = now
            if now >= next_line:
                run.report("  catching up:")
                next_line = now + 5
        if now - last_change > run.config.settle_timeout:
            return False
        time.sleep(0.1)


def _reconcile(
    name: str, run: Run, rest_url: str, redis_url: str, key_prefix: str, recovery: float | None
) -> ScenarioResult:
    offered = offered_ids(rest_url, run.config.symbols)
    offered_set = {(symbol, i) for symbol, ids in offered.items() for i in ids}
    topic = topic_trade_ids(run.kafka_settings, run.prices_topic)
    client = connect_redis(redis_url)
    problems: list[str] = []
    redis_counts: Counter[tuple[str, int]] = Counter()
    try:
        store = PriceStore(client, key_prefix)
        cap = run.config.count + _HISTORY_MARGIN
        for symbol, ids in offered.items():
            history = store.history(symbol, limit=cap)
            if len(history) >= cap:
                problems.append(f"history of {symbol} is full ({cap}): the count is not complete")
            redis_counts.update((symbol, int(entry["trade_id"])) for entry in history)
            latest = store.latest(symbol)
            if ids and (latest is None or latest["trade_id"] != ids[-1]):
                got = None if latest is None else latest["trade_id"]
                problems.append(f"latest price of {symbol} is trade {got}, not the last offered {ids[-1]}")
    finally:
        client.close()
    in_redis = set(redis_counts)
    in_topic = set(topic)
    written = len(offered_set & in_redis)
    topic_duplicates = sum(n - 1 for n in topic.values() if n > 1)
    redis_duplicates = sum(n - 1 for n in redis_counts.values() if n > 1)
    stray_redis = len(in_redis - offered_set)
    stray_topic = len(in_topic - offered_set)
    if stray_redis:
        problems.append(f"{stray_redis} trades in Redis were never offered")
    if stray_topic:
        problems.append(f"{stray_topic} records in the prices topic are not offered trades")
    never_published = len(offered_set - in_topic)
    lost = len(offered_set) - written
    if lost:
        problems.append(
            f"{lost} offered trades missing from Redis ({never_published} of them never reached Kafka)"
        )
    return ScenarioResult(
        fault=name,
        offered=len(offered_set),
        written=written,
        lost=lost,
        duplicated=topic_duplicates + redis_duplicates,
        recovery_s=recovery,
        published=len(offered_set & in_topic),
        topic_duplicates=topic_duplicates,
        redis_duplicates=redis_duplicates,
        problems=problems,
    )


def _cleanup_redis(redis_url: str, key_prefix: str) -> None:
    with contextlib.suppress(redis_lib.RedisError):
        client = connect_redis(redis_url)
        try:
            delete_prefixed(client, key_prefix)
        finally:
            client.close()


# --- the faults ----------------------------------------------------------------------------------


def _kill_partition_leader(run: Run) -> str:
    cluster = run.servers.cluster
    assert cluster is not None
    replication = cluster.replication
    run.problems += replication_problems(
        run.kafka_settings, run.prices_topic, replication, max(1, replication - 1)
    )
    partition, leader = busiest_partition_leader(run.kafka_settings, run.prices_topic)
    broker = cluster.broker(leader)
    held = f"killed broker {leader} (pid {broker.pid}, SIGKILL), leader of {run.prices_topic}[{partition}]"
    took = _down_and_back(run, broker, broker.kill, held)
    return (
        f"broker {leader}, leader of {run.prices_topic}[{partition}], killed (SIGKILL) and back "
        f"after a {took:.1f} s restart on its data"
    )


def _down_and_back(run: Run, server: LocalServer, stop: Callable[[], None], held: str) -> float:
    """``stop()`` the server, hold the fault (``held`` says what it is), restart the server on its
    data; returns how long the restart took, in seconds."""
    stop()
    run.hold(held)
    restarted = time.monotonic()
    server.restart()
    return time.monotonic() - restarted


def _restart_broker(run: Run) -> str:
    broker = run.servers.kafka.server
    assert broker is not None
    took = _down_and_back(run, broker, broker.terminate, f"stopped the broker ({broker.name}, graceful)")
    return f"broker stopped and back after a {took:.1f} s restart on its data"


def _cut_network(run: Run) -> str:
    proxy = run.servers.proxy
    assert proxy is not None
    proxy.pause()
    run.hold(f"cut every connection to the broker at {proxy.address}")
    proxy.resume()
    return f"broker unreachable for {run.config.outage:g} s (TcpProxy paused), then resumed"


def _restart_redis(run: Run) -> str:
    server = run.servers.redis.server
    assert server is not None
    took = _down_and_back(run, server, server.kill, f"killed Redis (pid {server.pid}, SIGKILL)")
    return f"Redis killed (SIGKILL) and back from its AOF after {took:.1f} s"


def _kill_consumer(run: Run) -> str:
    consumer = run.pipeline.runtime.services[_CONSUMER]
    pid = consumer.pid
    with run.down(_CONSUMER):
        consumer.kill()
        run.hold(f"killed the prices consumer (pid {pid}, SIGKILL)")
        consumer.restart()
    return f"prices consumer killed (SIGKILL), restarted as pid {consumer.pid}"


# --- the scenarios -------------------------------------------------------------------------------


def leader_kill(servers: Servers, config: FaultConfig, progress: Progress | None = None) -> ScenarioResult:
    """The busiest partition's leader SIGKILLed on the cluster, then restarted."""
    cluster = servers.cluster
    if cluster is None or len(cluster.brokers) < 3:
        raise ScenarioError("leader-kill needs a cluster of at least 3 brokers (Servers.cluster)")
    replication = cluster.replication
    return run_scenario(
        "leader-kill",
        servers,
        config,
        _kill_partition_leader,
        replication_factor=replication,
        progress=progress,
    )


def broker_restart(servers: Servers, config: FaultConfig, progress: Progress | None = None) -> ScenarioResult:
    """The single broker stopped and started again on its data directory."""
    broker = servers.kafka.server
    if broker is None or servers.kafka.quirks.memory_only:
        raise ScenarioError(
            f"broker-restart needs a local broker that keeps its data on disk, not {servers.kafka}"
        )
    return run_scenario("broker-restart", servers, config, _restart_broker, progress=progress)


def network_cut(servers: Servers, config: FaultConfig, progress: Progress | None = None) -> ScenarioResult:
    """Every client connection to the broker cut by the TcpProxy for the outage."""
    proxy = servers.proxy
    if proxy is None or servers.kafka.bootstrap_servers != proxy.address:
        raise ScenarioError("network-cut needs the broker behind Servers.proxy (bootstrap = the proxy)")
    return run_scenario("network-cut", servers, config, _cut_network, progress=progress)


def redis_restart(servers: Servers, config: FaultConfig, progress: Progress | None = None) -> ScenarioResult:
    """Redis (AOF on) SIGKILLed mid-stream and restarted on its directory."""
    server = servers.redis.server
    if not isinstance(server, RedisServer) or not server.appendonly:
        raise ScenarioError("redis-restart needs a local Redis started with appendonly=True")
    return run_scenario("redis-restart", servers, config, _restart_redis, progress=progress)


def consumer_kill(servers: Servers, config: FaultConfig, progress: Progress | None = None) -> ScenarioResult:
    """The prices consumer SIGKILLed mid-stream and started again."""
    return run_scenario("consumer-kill", servers, config, _kill_consumer, progress=progress)


RUNNERS: dict[str, Callable[[Servers, FaultConfig, Progress | None], ScenarioResult]] = {
    "leader-kill": leader_kill,
    "broker-restart": broker_restart,
    "network-cut": network_cut,
    "redis-restart": redis_restart,
    "consumer-kill": consumer_kill,
}
