"""One fault scenario: the prices path as ``up`` runs it, a fault injected mid-stream and healed,
a wait until the pipeline caught up, and a reconciliation trade by trade (see docs/faults.md)."""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis as redis_lib

from cryptopipe.ingest.service import Ingest
from cryptopipe.ingest.settings import load_settings as load_ingest_settings
from cryptopipe.measure.faults.books import BookCosts, BookWatch, book_costs
from cryptopipe.measure.faults.config import (
    BOOKS_CONSUMER,
    HISTORY_MARGIN,
    FaultConfig,
    Progress,
    ScenarioError,
    ScenarioResult,
    Servers,
    stderr_progress,
)
from cryptopipe.measure.faults.monitor import Monitor, lag_episode, recovery_seconds
from cryptopipe.measure.faults.reconcile import reconcile
from cryptopipe.measure.faults.run import Fault, Run
from cryptopipe.observability import Scrape
from cryptopipe.pipeline import (
    AlertingConfig,
    ExchangeConfig,
    ObservabilityConfig,
    Pipeline,
    PipelineConfig,
    ServersConfig,
    books_of,
)
from cryptopipe.pipeline.drain import drain
from cryptopipe.replay.config import ReplaySettings
from cryptopipe.runtime import ensure_topics
from cryptopipe.schemas import (
    PRICES,
    KafkaSettings,
    RedisSettings,
    load_settings,
)
from cryptopipe.store import connect_redis, delete_prefixed
from cryptopipe.store.settings import BooksConsumerSettings


def pipeline_config(config: FaultConfig, topic_prefix: str, key_prefix: str) -> PipelineConfig:
    """The prices path as ``up --source replay`` runs it (no Spark, dashboard or Prometheus), on
    free ports, in the scenario's own topics and keys, with a replay of exactly ``config.count``
    trades and history room for all of them; with ``config.depth``, the books too (``--depth 100ms``)."""
    replay = load_settings(
        ReplaySettings,
        speed="1",
        clock="live",
        rate=config.rate,
        seed=config.seed,
        symbols=",".join(config.symbols),
        burst=False,
        rest_weight_limit=0,  # the monitor polls the exchange's history 10 times a second
        count=config.count,
    )
    return PipelineConfig(
        exchange=ExchangeConfig(source="replay", replay=replay),
        symbols=tuple(config.symbols),
        depth="100ms" if config.depth else "off",
        history_cap=config.count + HISTORY_MARGIN,
        alerting=AlertingConfig(enabled=False),
        observability=ObservabilityConfig(metrics_base_port=0, prometheus=False, dashboard=False),
        servers=ServersConfig(
            kafka=load_settings(KafkaSettings, topic_prefix=topic_prefix),
            redis=load_settings(RedisSettings, key_prefix=key_prefix),
        ),
    )


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
    redis_url = servers.redis.url.get_secret_value()
    with tempfile.TemporaryDirectory(prefix="cryptopipe-faults-") as tmp, contextlib.ExitStack() as stack:
        pipeline = Pipeline(pipeline_config(config, topic_prefix, key_prefix), stack, Path(tmp))
        books = " and the books consumer (depth 100ms)" if config.depth else ""
        emit(f"starting replay exchange, prices consumer{books} and ingest")
        pipeline.start(servers=(servers.kafka, servers.redis), observability=False)
        assert pipeline.rest_url is not None  # a replay exchange was started
        rest_url = pipeline.rest_url
        monitor = Monitor(rest_url, config.symbols, redis_url, key_prefix, config.poll_interval).start()
        stack.callback(monitor.stop)
        run = Run(name, servers, config, pipeline, kafka_settings, prices_topic, emit, monitor)
        if config.depth:
            levels = load_settings(BooksConsumerSettings).levels
            watch = BookWatch(rest_url, config.symbols, redis_url, key_prefix, levels, config.poll_interval)
            run.books = watch.start()
            stack.callback(watch.stop)
        result = _inject_and_reconcile(run, fault, rest_url, redis_url, key_prefix)
        emit("stopping the pipeline")
    _cleanup_redis(redis_url, key_prefix)
    emit(
        f"offered {result.offered}, written {result.written}, lost {result.lost}, duplicated "
        f"{result.duplicated} (topic {result.topic_duplicates}, Redis {result.redis_duplicates}), "
        f"in the topic {result.published}"
        + (f" ({result.lost_in_outage} while no ingest was subscribed)" if result.lost_in_outage else "")
        + (
            f"; books: {result.book_resyncs} resyncs, exact {result.book_exact_after_s} s after the fault"
            if result.books is not None
            else ""
        )
        + (f"; PROBLEMS: {'; '.join(result.problems)}" if result.problems else "")
    )
    return result


def _inject_and_reconcile(
    run: Run, fault: Fault, rest_url: str, redis_url: str, key_prefix: str
) -> ScenarioResult:
    """Once trades flow: the fault after ``fault_delay``, the wait until the pipeline caught up,
    and the reconciliation by trade id."""
    config, monitor, emit = run.config, run.monitor, run.progress
    started = _wait_flowing(run, monitor)
    emit(f"trades flowing; fault in {config.fault_delay:.1f} s")
    while time.monotonic() < started + config.fault_delay:
        run.check_services()
        time.sleep(0.1)
    if run.books is not None:
        _wait_books_seen_exact(run, run.books)
    run.report("before the fault:")
    fault_start_us = time.time_ns() // 1000
    fault_start = time.monotonic()
    played = run.monitor.offered
    detail = fault(run)
    fault_end = time.monotonic()
    emit(f"fault over after {fault_end - fault_start:.1f} s: {detail}")
    run.report("  at the fault's end:")
    caught_up = _wait_caught_up(run, monitor, fault_end)
    if run.books is not None:
        _wait_books_exact(run, run.books, fault_end)
    samples = list(monitor.samples)
    recovery = recovery_seconds(samples, fault_end, run.excused)
    episode = lag_episode(samples, fault_start)
    emit(_recovery_line(caught_up, recovery, episode))
    emit("reconciling by trade id: exchange history, prices topic, Redis")
    result = reconcile(run.name, run, rest_url, redis_url, key_prefix, recovery)
    result.fault_s = round(fault_end - fault_start, 2)
    result.detail = detail
    result.problems = run.problems + result.problems
    if played is not None and played >= config.count:
        result.problems.append("the tape had ended before the fault began: the fault met no stream")
    if not caught_up and result.lost == result.lost_in_outage:
        result.problems.append("the pipeline never caught up with the exchange")
    if run.books is not None:
        _add_books(result, _books_after(run, run.books, fault_start, fault_start_us, fault_end))
    return result


def _wait_books_seen_exact(run: Run, watch: BookWatch) -> None:
    """Before the fault: wait until the watch has seen every book in Redis equal to the
    exchange's (so that "exact again" after it means something on this run), but only while the
    first 60 % of the tape plays: the fault must come while the stream does."""
    latest = int(run.config.count * 0.6)
    while not watch.ever_exact_before(time.monotonic()):
        run.check_services()
        offered = run.monitor.offered
        if offered is not None and offered >= latest:
            run.progress("no book seen exact yet and 60 % of the tape played: injecting the fault now")
            return
        time.sleep(0.1)


def _wait_books_exact(run: Run, watch: BookWatch, since: float) -> bool:
    """Wait until every symbol's book in Redis was found equal to the exchange's after ``since``;
    False after ``settle_timeout`` seconds."""
    deadline = time.monotonic() + run.config.settle_timeout
    while time.monotonic() < deadline:
        run.check_services()
        if None not in watch.exact_after(since).values():
            return True
        time.sleep(0.1)
    return False


def _books_after(
    run: Run, watch: BookWatch, fault_start: float, fault_start_us: int, fault_end: float
) -> BookCosts:
    """Drain the pipeline as ``up`` does (front to back, final figures read), then what the fault
    cost the books and whether they balance."""
    watch.stop()
    run.progress("draining the pipeline; reading book-updates back")
    drain(run.pipeline)
    costs = book_costs(
        run.kafka_settings,
        run.servers.redis.url.get_secret_value(),
        run.pipeline.key_prefix,
        books_of(run.pipeline),
        run.pipeline.state.final.get("books-consumer", Scrape([])),
        fault_start_us=fault_start_us,
        watch=watch,
        fault_start=fault_start,
        fault_end=fault_end,
        killed_before_us=run.ingest_killed_us,
        consumer_handled_before=run.pipeline.state.handled_before.get(BOOKS_CONSUMER, 0),
    )
    return costs


def _add_books(result: ScenarioResult, costs: BookCosts) -> None:
    result.book_resyncs = costs.resyncs
    result.book_exact_after_s = costs.exact_after_s
    result.books = costs.as_dict()
    result.problems += costs.problems


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
            if latest.offered >= count and latest.written + run.excused >= latest.offered:
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


def _cleanup_redis(redis_url: str, key_prefix: str) -> None:
    with contextlib.suppress(redis_lib.RedisError):
        client = connect_redis(redis_url)
        try:
            delete_prefixed(client, key_prefix)
        finally:
            client.close()
