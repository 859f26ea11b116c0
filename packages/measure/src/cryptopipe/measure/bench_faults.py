"""``cryptopipe bench faults``: the prices path through six faults, every trade accounted for by id.

Scenarios (``--only NAME`` runs one): ``leader-kill`` (the busiest partition's leader SIGKILLed
on a 3-broker Apache Kafka cluster, replication factor 3, then restarted), ``broker-restart``
(the single broker stopped and started again on its data), ``network-cut`` (every connection
to the broker cut by a TCP proxy for ``--outage`` seconds), ``redis-restart`` (Redis with the AOF
on, ``appendfsync always``, SIGKILLed and restarted), ``consumer-kill`` (the prices consumer,
with ``--books`` the books consumer too, SIGKILLed and restarted) and ``ingest-kill`` (ingest
SIGKILLed and restarted). Each fault lasts ``--outage`` seconds (default 10).

With ``--books`` the pipeline also keeps order books (``up --depth 100ms``, the exchange's synthetic
book): each scenario then reports what the fault cost them, ``book_resyncs`` (resets published
after the fault began) and ``book_exact_after_s`` (seconds from the fault's end until every book in
Redis equalled the exchange's ``/api/v3/depth`` at the same update id), and checks that the books
in Redis equal the books rebuilt from Kafka and that ``book-updates`` balances (``books`` in the row).

The benchmark starts its own servers, since it kills them: a local Apache Kafka behind a
:class:`~cryptopipe.infra.proxy.TcpProxy`, the 3-broker cluster only for ``leader-kill``, and one
redis-server with the AOF on. KAFKA_BOOTSTRAP_SERVERS and REDIS_URL are not used.

One row per scenario: trades offered by the exchange, written (found in Redis), lost,
duplicated, and ``recovery_s``, the seconds from the fault's end until the pipeline caught up
(see :mod:`cryptopipe.measure.faults` for how each is counted). ``lost_in_outage`` is the part of
``lost`` played while no ingest was subscribed (ingest-kill: a restarted ingest cannot backfill
them, see docs/faults.md). ``--json PATH`` writes them as ``{"scenarios": [{"fault", "offered",
"written", "lost", "duplicated", "recovery_s", "lost_in_outage", "book_resyncs",
"book_exact_after_s"[, "books"]}, ...]}``.

Exit status: 0 every scenario ran and nothing was lost (beyond ``lost_in_outage``) or duplicated;
1 a scenario could not run (a server or service failed); 3 trades were lost or duplicated, or the
books were not exact or did not balance (or another check failed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from cryptopipe.infra import KafkaCluster, TcpProxy, start_apache_kafka, start_redis
from cryptopipe.infra.errors import START_ERRORS
from cryptopipe.measure import faults
from cryptopipe.measure.floors import bench_parser
from cryptopipe.pipeline import EXIT_UNBALANCED

_progress = faults.stderr_progress("bench faults")
#: What makes one scenario fail without stopping the others.
_SCENARIO_FAILURES: tuple[type[Exception], ...] = (
    *START_ERRORS,
    faults.ScenarioError,
    KafkaException,
    OSError,
)


class _Servers:
    """Starts servers when a scenario first needs them; the cluster only lives for its scenario."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self.stack = stack
        redis = start_redis(appendonly=True, appendfsync="always")
        stack.callback(redis.stop)
        self.redis = faults.redis_endpoint(redis)
        self._proxied: faults.Servers | None = None
        _progress(f"redis: {redis.kind} on port {redis.port}")

    def proxied(self) -> faults.Servers:
        if self._proxied is None:
            proxy = self.stack.enter_context(TcpProxy())
            broker = self.stack.enter_context(start_apache_kafka(advertised_port=proxy.port))
            proxy.target = ("127.0.0.1", broker.port)
            kafka = faults.kafka_endpoint(proxy.address, f"{broker.kind} (behind TcpProxy)", broker)
            self._proxied = faults.Servers(kafka, self.redis, proxy=proxy)
            _progress(f"broker: {kafka} (data in {broker.workdir})")
        return self._proxied

    @contextlib.contextmanager
    def cluster(self) -> Iterator[faults.Servers]:
        _progress("starting a 3-broker Apache Kafka cluster")
        with KafkaCluster(3) as cluster:
            _progress(f"cluster: {cluster.kind} at {cluster.bootstrap_servers}")
            yield faults.Servers(faults.cluster_endpoint(cluster), self.redis, cluster=cluster)


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _table(rows: Sequence[dict[str, Any]]) -> str:
    header = (
        f"{'fault':16} {'offered':>9} {'written':>9} {'lost':>16} {'duplicated':>10} {'recovery_s':>10} "
        f"{'book_resyncs':>12} {'book_exact_after_s':>18}"
    )
    lines = [header]
    for row in rows:
        lost = f"{row['lost']}" + (f" ({row['lost_in_outage']} down)" if row["lost_in_outage"] else "")
        resyncs = "-" if row["book_resyncs"] is None else str(row["book_resyncs"])
        lines.append(
            f"{row['fault']:16} {row['offered']:>9} {row['written']:>9} {lost:>16} "
            f"{row['duplicated']:>10} {_figure(row['recovery_s']):>10} {resyncs:>12} "
            f"{_figure(row['book_exact_after_s']):>18}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = bench_parser("faults", __doc__)
    parser.add_argument("--rate", type=float, default=1000.0, help="offered trades/s (default 1000)")
    parser.add_argument(
        "--duration", type=float, default=30.0, help="seconds of trades per scenario (default 30)"
    )
    parser.add_argument("--outage", type=float, default=10.0, help="seconds each fault lasts (default 10)")
    parser.add_argument("--only", choices=faults.SCENARIOS, metavar="NAME", help="run this scenario only")
    parser.add_argument("--json", type=Path, dest="json_path", help="write the results here")
    parser.add_argument("--symbols", default="btcusdt,ethusdt")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--books", action="store_true", help="order books too (depth 100ms): resyncs, seconds to exact"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = faults.FaultConfig(
        rate=args.rate,
        duration=args.duration,
        outage=args.outage,
        symbols=tuple(s.strip().lower() for s in args.symbols.split(",") if s.strip()),
        seed=args.seed,
        depth=args.books,
    )
    names = [args.only] if args.only else list(faults.SCENARIOS)
    results: list[faults.ScenarioResult] = []
    errors: list[dict[str, str]] = []
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        try:
            servers = _Servers(stack)
        except START_ERRORS as exc:
            print(f"cryptopipe bench faults: {exc}", file=sys.stderr)
            return 1
        for name in names:
            _progress(
                f"scenario {name}: {config.rate:g} trades/s for {config.duration:g} s, "
                f"fault {config.outage:g} s"
            )
            runner = faults.RUNNERS[name]
            try:
                if name == "leader-kill":
                    with servers.cluster() as on_cluster:
                        results.append(runner(on_cluster, config, _progress))
                else:
                    results.append(runner(servers.proxied(), config, _progress))
            except _SCENARIO_FAILURES as exc:
                _progress(f"scenario {name} FAILED: {type(exc).__name__}: {exc}")
                errors.append({"fault": name, "error": f"{type(exc).__name__}: {exc}"})
    rows = [r.row() for r in results]
    print(_table(rows))
    output: dict[str, Any] = {
        "rate_msgs_per_s": config.rate,
        "duration_s": config.duration,
        "outage_s": config.outage,
        "books": config.depth,
        "elapsed_s": round(time.monotonic() - started, 1),
        "scenarios": rows,
    }
    if errors:
        output["errors"] = errors
    if args.json_path is not None:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(output, indent=2) + "\n")
    bad = [r for r in results if not r.ok]
    for result in bad:
        _progress(f"{result.fault}: " + "; ".join(result.problems or ["lost or duplicated trades"]))
    if errors:
        return 1
    return EXIT_UNBALANCED if bad else 0
