"""The six faults: each injects, holds and heals one failure on a running scenario."""

from __future__ import annotations

import time
from collections.abc import Callable

from cryptopipe.infra import (
    LocalServer,
)
from cryptopipe.measure.faults.config import BOOKS_CONSUMER, CONSUMER, HISTORY_MARGIN, INGEST, ScenarioError
from cryptopipe.measure.faults.kafka import busiest_partition_leader, committed_records, replication_problems
from cryptopipe.measure.faults.run import Run
from cryptopipe.schemas import load_settings
from cryptopipe.schemas.topics import BOOK_UPDATES
from cryptopipe.store import PriceStore, connect_redis
from cryptopipe.store.settings import BooksConsumerSettings, PricesConsumerSettings

# --- the faults ----------------------------------------------------------------------------------


def kill_partition_leader(run: Run) -> str:
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


def restart_broker(run: Run) -> str:
    broker = run.servers.kafka.server
    assert broker is not None
    took = _down_and_back(run, broker, broker.terminate, f"stopped the broker ({broker.name}, graceful)")
    return f"broker stopped and back after a {took:.1f} s restart on its data"


def cut_network(run: Run) -> str:
    proxy = run.servers.proxy
    assert proxy is not None
    proxy.pause()
    run.hold(f"cut every connection to the broker at {proxy.address}")
    proxy.resume()
    return f"broker unreachable for {run.config.outage:g} s (TcpProxy paused), then resumed"


def restart_redis(run: Run) -> str:
    server = run.servers.redis.server
    assert server is not None
    took = _down_and_back(run, server, server.kill, f"killed Redis (pid {server.pid}, SIGKILL)")
    return f"Redis killed (SIGKILL) and back from its AOF after {took:.1f} s"


def kill_consumer(run: Run) -> str:
    """SIGKILL the prices consumer (and, with books, the books consumer with it), hold, start them
    again with the same command lines: each resumes from its group's committed offsets."""
    names = [CONSUMER, *([BOOKS_CONSUMER] if run.config.depth else [])]
    consumers = [run.pipeline.state.services[name] for name in names]
    pairs = list(zip(names, consumers, strict=True))
    pids = ", ".join(f"{name} pid {consumer.pid}" for name, consumer in pairs)
    with run.down(*names):
        for consumer in consumers:
            consumer.kill()
        run.hold(f"killed the consumers ({pids}, SIGKILL)")
        # What each killed process handled up to its last commit: its figures died with it, and
        # the restarted one takes up from there (the drain and the books count it as handled).
        for name in names:
            group, topic = _group_and_topic(run, name)
            run.pipeline.state.handled_before[name] = committed_records(run.kafka_settings, group, topic)
        for consumer in consumers:
            consumer.restart()
    again = ", ".join(f"{name} as pid {consumer.pid}" for name, consumer in pairs)
    return f"{' and '.join(names)} killed (SIGKILL), restarted: {again}"


def _group_and_topic(run: Run, consumer: str) -> tuple[str, str]:
    """The consumer group and topic of the prices or the books consumer of ``run``."""
    if consumer == BOOKS_CONSUMER:
        group = load_settings(BooksConsumerSettings).group
        return group, BOOK_UPDATES.with_prefix(run.kafka_settings.topic_prefix).name
    return load_settings(PricesConsumerSettings).group, run.prices_topic


def kill_ingest(run: Run) -> str:
    """SIGKILL ingest mid-stream, hold, start it again with the same settings: the new process
    takes every book from a fresh snapshot (an ``initial`` reset in a new epoch)."""
    ingest = run.pipeline.state.services[INGEST]
    pid = ingest.pid
    with run.down(INGEST):
        run.ingest_killed_us = time.time_ns() // 1000
        ingest.kill()
        run.hold(f"killed ingest (pid {pid}, SIGKILL)")
        ingest.restart()
        run.ingest_back_us = time.time_ns() // 1000
    run.excused = _missed_while_down(run)
    return (
        f"ingest killed (SIGKILL), restarted as pid {ingest.pid}; "
        f"{run.excused} trades were played while no ingest was subscribed"
    )


def _missed_while_down(run: Run, timeout: float = 30.0) -> int:
    """Trades missing between the oldest and newest of each symbol's history in Redis, once every
    symbol has a trade there played after the kill (the restarted ingest's); when the tape ended
    before that, every trade played and not in Redis once Redis stopped moving (3 s)."""
    killed = run.ingest_killed_us
    assert killed is not None
    client = connect_redis(run.servers.redis.url.get_secret_value())
    store = PriceStore(client, run.pipeline.key_prefix)
    cap = run.config.count + HISTORY_MARGIN
    deadline = time.monotonic() + timeout
    settled: tuple[int, float] | None = None
    try:
        while True:
            run.check_services()
            histories = [store.history(s.upper(), limit=cap) for s in run.config.symbols]
            if all(h and h[-1]["trade_time_us"] > killed for h in histories):
                break
            offered, written = run.monitor.offered, run.monitor.written
            if offered is not None and written is not None and offered >= run.config.count:
                if settled is None or settled[0] != written:
                    settled = (written, time.monotonic())
                elif time.monotonic() - settled[1] >= 3.0:
                    return offered - written
            if time.monotonic() > deadline:
                raise ScenarioError(f"no trade played after the kill reached Redis within {timeout:.0f} s")
            time.sleep(0.1)
    finally:
        client.close()
    missed = 0
    for history in histories:
        ids = {int(entry["trade_id"]) for entry in history}
        missed += max(ids) - min(ids) + 1 - len(ids)
    return missed
