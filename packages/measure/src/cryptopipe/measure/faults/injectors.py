"""The six faults: each injects, holds and heals one failure on a running scenario."""

from __future__ import annotations

import time
from collections.abc import Callable

from cryptopipe.infra import (
    LocalServer,
)
from cryptopipe.measure.faults.config import CONSUMER, HISTORY_MARGIN, INGEST, ScenarioError
from cryptopipe.measure.faults.kafka import busiest_partition_leader, replication_problems
from cryptopipe.measure.faults.run import Run
from cryptopipe.store import PriceStore, connect_redis

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
    consumer = run.pipeline.state.services[CONSUMER]
    pid = consumer.pid
    with run.down(CONSUMER):
        consumer.kill()
        run.hold(f"killed the prices consumer (pid {pid}, SIGKILL)")
        consumer.restart()
    return f"prices consumer killed (SIGKILL), restarted as pid {consumer.pid}"


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
