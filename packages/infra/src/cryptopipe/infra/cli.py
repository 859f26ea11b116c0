"""``cryptopipe kafka-cluster``: a real N-broker Apache Kafka cluster on 127.0.0.1, without Docker.

Starts :class:`~cryptopipe.infra.apache_kafka.KafkaCluster` (Apache Kafka 4.1.1 in KRaft mode from
Maven Central jars; each node is broker and controller, static quorum), prints progress on stderr
while it starts (the first run resolves the jars, about 45 s), then one line on stdout with the
bootstrap servers and how to use them, and runs until Ctrl-C, SIGTERM or ``--run-for``. Then it
stops every broker (all at once: a node that is left without a quorum would otherwise wait out
its grace period) and removes their data.

The cluster's defaults are a small production cluster's: replication factor ``min(N, 3)`` and
``min.insync.replicas`` one less (3 and 2 with three brokers), for our topics (created with the
broker's default replication) and the internal ones alike.

Exit status: 0 stopped cleanly; 1 a broker failed to start, or every broker died; 2 no usable
Java 17+, or the jars are neither cached nor downloadable (offline with a cold cache), or bad
arguments. Failures are one line on stderr, never a traceback (a start-up failure adds the
broker's last log lines).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptopipe.infra.apache_kafka import KAFKA_VERSION, MIN_JAVA, KafkaCluster, kafka_libs
from cryptopipe.infra.errors import InfraError, ServerStartError
from cryptopipe.infra.secure_kafka import GRANTS, SecureKafkaCluster
from cryptopipe.runtime import (
    Interrupted,
    Stop,
    positive_int,
    seconds_or_zero,
    stop_on_signals,
    write_json_atomic,
)
from cryptopipe.runtime.jvm import (
    ArtifactResolutionError,
    JavaNotFoundError,
    JavaRuntime,
    cache_root,
    find_java,
)

log = logging.getLogger(__name__)

PROG = "cryptopipe kafka-cluster"
EXIT_FAILED = 1
EXIT_UNAVAILABLE = 2
DEFAULT_HEAP = "384m"
_HEAP = re.compile(r"^[1-9]\d*[kKmMgG]?$")


def _heap(text: str) -> str:
    if not _HEAP.match(text):
        raise argparse.ArgumentTypeError(f"not a JVM heap size like 384m or 1g: {text!r}")
    return text


def _add_secure_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--secure",
        action="store_true",
        help=(
            "SASL_SSL (SCRAM-SHA-512) with TLS certificates made for the run, ACLs, the pipeline's topics "
            f"created, and one least-privilege principal per service ({', '.join(GRANTS)}); --json then "
            "also holds security_protocol, sasl_mechanism, ca_file and principals (user names and "
            "password files, never a password): KAFKA_PRINCIPALS_FILE reads it"
        ),
    )
    parser.add_argument(
        "--topic-prefix",
        default="",
        metavar="PREFIX",
        help="with --secure: the prefix of the topics created and granted (KAFKA_TOPIC_PREFIX of the run)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            f"Run a real Apache Kafka {KAFKA_VERSION} cluster (KRaft, every node broker and controller) on "
            "127.0.0.1 until Ctrl-C or SIGTERM. No Docker: the jars come from Maven Central once (needs "
            "Java 17+). Replication factor min(N,3), min.insync.replicas one less."
        ),
        epilog=(
            "Then, from another terminal: KAFKA_BOOTSTRAP_SERVERS=<the printed servers> "
            "uv run cryptopipe up. Exit status: 0 stopped cleanly; 1 a broker failed; 2 no Java 17+, "
            "or no jars (offline with a cold cache)."
        ),
    )
    parser.add_argument(
        "--brokers", type=positive_int, default=3, metavar="N", help="number of brokers (default: 3)"
    )
    parser.add_argument(
        "--heap",
        type=_heap,
        default=DEFAULT_HEAP,
        metavar="SIZE",
        help=f"JVM heap per broker (default: {DEFAULT_HEAP})",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="once ready, write {bootstrap_servers, brokers: [{node_id, port, pid, data_dir}], version} here",
    )
    _add_secure_arguments(parser)
    parser.add_argument(
        "--run-for",
        type=seconds_or_zero,
        default=None,
        metavar="SECONDS",
        help="stop cleanly this long after the cluster is ready (default: until Ctrl-C/SIGTERM)",
    )
    parser.add_argument(
        "--ready-timeout",
        type=seconds_or_zero,
        default=120.0,
        metavar="SECONDS",
        help="give up when the brokers are not ready after this long (default: 120)",
    )
    return parser


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class _Progress(threading.Thread):
    """Reports each broker as it becomes ready, and a heartbeat while the quorum forms."""

    def __init__(self, cluster: KafkaCluster, interval: float = 10.0) -> None:
        super().__init__(name="kafka-cluster-progress", daemon=True)
        self.cluster = cluster
        self.interval = interval
        self.done = threading.Event()
        self.started_at = time.monotonic()

    def run(self) -> None:
        reported: set[int] = set()
        next_heartbeat = self.started_at + self.interval
        while True:
            finished = self.done.wait(0.2)
            for broker in list(self.cluster.brokers):
                if broker.startup_seconds is not None and broker.node_id not in reported:
                    reported.add(broker.node_id)
                    _say(
                        f"node {broker.node_id} ready at {broker.bootstrap_servers} (pid {broker.pid}, "
                        f"{broker.startup_seconds:.1f} s) [{len(reported)}/{self.cluster.size}]"
                    )
            if finished:
                return
            now = time.monotonic()
            if now >= next_heartbeat:
                next_heartbeat = now + self.interval
                waiting = " (the controllers wait for a quorum)" if self.cluster.size > 1 else ""
                _say(
                    f"still starting after {now - self.started_at:.0f} s: "
                    f"{len(reported)}/{self.cluster.size} ready{waiting}"
                )


def _describe(cluster: KafkaCluster) -> dict[str, Any]:
    return {
        "bootstrap_servers": cluster.bootstrap_servers,
        "brokers": [
            {
                "node_id": broker.node_id,
                "port": broker.port,
                "pid": broker.pid,
                "data_dir": str(broker.workdir / "data") if broker.workdir is not None else None,
            }
            for broker in cluster.brokers
        ],
        "version": cluster.version,
    }


def _stop(cluster: KafkaCluster) -> float:
    """Signal every broker at once, then wait for each; returns the seconds it took.

    Stopping one node after another leaves the last one without a controller quorum, and it then
    waits out its whole grace period before it is killed.
    """
    started = time.monotonic()
    for broker in cluster.brokers:
        if broker.running() and broker.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(broker.pid, broker.stop_signal)
    cluster.stop()
    return time.monotonic() - started


def _serve(cluster: KafkaCluster, run_for: float | None, stop: Stop) -> int:
    """Wait for ``stop`` or ``run_for``; report brokers that die. Returns the exit status."""
    deadline = None if run_for is None else time.monotonic() + run_for
    dead: set[int] = set()
    while deadline is None or time.monotonic() < deadline:
        if stop.wait(0.25 if deadline is None else max(0.0, min(0.25, deadline - time.monotonic()))):
            return 0
        for broker in cluster.brokers:
            if broker.node_id not in dead and not broker.running():
                dead.add(broker.node_id)
                tail = " | ".join(line.strip() for line in broker.log_tail(3).splitlines())
                _say(
                    f"node {broker.node_id} (pid {broker.pid}) exited with code {broker.returncode()}"
                    + (f"; its log ends: {tail}" if tail else "")
                )
        if len(dead) == len(cluster.brokers):
            _say("every broker has exited")
            return EXIT_FAILED
    _say(f"--run-for {run_for:g} s is over")
    return 0


def _java_and_jars(cluster: KafkaCluster) -> JavaRuntime:
    """Java 17+ and the cluster's jars, resolved (and said so) on the first run; raises
    JavaNotFoundError or ArtifactResolutionError."""
    java = find_java(MIN_JAVA)
    libs = cache_root() / "kafka" / cluster.version / "libs"
    if not libs.is_dir():
        _say(
            f"first run: resolving Apache Kafka {cluster.version} from Maven Central into "
            f"{libs.parent} (about 45 MB, ~45 s; cached afterwards)"
        )
    kafka_libs(cluster.version, java=java)
    return java


def _shut_down(cluster: KafkaCluster, stop: Stop) -> None:
    """Stop every broker still running (all at once) and remove what the cluster left on disk."""
    with stop_on_signals(stop):
        running = [broker for broker in cluster.brokers if broker.running()]
        if running:
            _say(f"stopping {len(running)} broker(s)" + (f" ({stop.reason})" if stop.reason else ""))
            seconds = _stop(cluster)
            _say(f"stopped every broker in {seconds:.1f} s and removed their data")
        else:
            cluster.stop()  # idempotent: removes what a failed start or dead brokers left


def _ready_line(
    args: argparse.Namespace, cluster: KafkaCluster, secure: SecureKafkaCluster | None
) -> tuple[str, str]:
    """Writes ``--json`` (a secured cluster's always: its own directory when not asked) and says
    how to use the cluster: ``(what is ready, the variables to use it with)``. Never a password: a
    secured cluster's are in files."""
    description = _describe(cluster)
    use = f"KAFKA_BOOTSTRAP_SERVERS={cluster.bootstrap_servers}"
    if secure is not None:
        description.update(secure.describe())
        path = args.json if args.json is not None else secure.directory / "cluster.json"
        write_json_atomic(path, description, indent=2)
        use = f"KAFKA_PRINCIPALS_FILE={path}" + (
            f" KAFKA_TOPIC_PREFIX={args.topic_prefix}" if args.topic_prefix else ""
        )
    elif args.json is not None:
        write_json_atomic(args.json, description, indent=2)
    secured = " secured (SASL_SSL, SCRAM-SHA-512, ACLs)" if secure is not None else ""
    return f"{args.brokers}-broker{secured} Apache Kafka {cluster.version} cluster", use


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    secure = (
        SecureKafkaCluster(args.brokers, heap=args.heap, topic_prefix=args.topic_prefix)
        if args.secure
        else None
    )
    cluster = secure.cluster if secure is not None else KafkaCluster(args.brokers, heap=args.heap)
    stop = Stop()
    code = 0
    try:
        # The first signal interrupts a start under way too (it blocks for up to --ready-timeout).
        with stop_on_signals(stop, interrupt=True):
            try:
                java = _java_and_jars(cluster)
            except (JavaNotFoundError, ArtifactResolutionError) as exc:
                _say(_one_line(exc))
                return EXIT_UNAVAILABLE
            _say(
                f"starting {args.brokers} Apache Kafka {cluster.version} broker(s) on 127.0.0.1 "
                f"(Java {java.version}, heap {args.heap} each, replication factor {cluster.replication}, "
                f"min.insync.replicas {max(1, cluster.replication - 1)})"
            )
            progress = _Progress(cluster)
            progress.start()
            try:
                (secure or cluster).start(ready_timeout=args.ready_timeout)
            except ServerStartError as exc:
                _say(str(exc))
                return EXIT_FAILED
            except InfraError as exc:
                _say(_one_line(exc))
                unavailable = isinstance(exc, JavaNotFoundError | ArtifactResolutionError)
                return EXIT_UNAVAILABLE if unavailable else EXIT_FAILED
            finally:
                progress.done.set()
                progress.join()
            what, use = _ready_line(args, cluster, secure)
            elapsed = time.monotonic() - progress.started_at
            print(
                f"{PROG}: {what} ready at {cluster.bootstrap_servers} in {elapsed:.1f} s; Ctrl-C stops it. "
                f"Use it with: {use} uv run cryptopipe up",
                flush=True,
            )
            code = _serve(cluster, args.run_for, stop)
    except Interrupted:
        pass
    finally:
        _shut_down(cluster, stop)
        if secure is not None:
            secure.stop()  # its certificates and password files
    return code
