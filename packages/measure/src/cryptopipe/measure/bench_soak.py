"""``cryptopipe bench soak``: the whole pipeline, as ``cryptopipe up`` runs it, for a long time.

It takes ``up``'s flags (on the replay exchange at ``--rate`` trades per second by default) and
watches two things that only show over hours:

- memory: every process's resident memory (with its children: the Spark JVM and its Python
  workers count with the alerting job), sampled every ``--sample-every`` seconds; ``components``
  gives each one's RSS at the end of the warm-up and at the end, its peak, and its slope after
  the warm-up in MB per hour;
- latency drift: ``windows`` holds one entry per ``--window`` seconds with the system and E2E
  latency percentiles of the trades written in it (from the consumers' histograms' deltas,
  interpolated inside a bucket as Prometheus does).

The books are balanced at the end as ``up`` balances them: ``lost``, ``unwritten`` and
``alerting_unread`` are in the JSON, and the exit status is 3 when the books do not balance.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptopipe.measure.floors import bench_parser
from cryptopipe.measure.soak import MemoryTrace, window_percentiles_ms
from cryptopipe.observability import Scrape
from cryptopipe.observability import metrics as m
from cryptopipe.pipeline import EXIT_UNBALANCED, Pipeline, books_of
from cryptopipe.pipeline.drain import drain
from cryptopipe.pipeline.flags import add_pipeline_arguments, config_from_args
from cryptopipe.pipeline.progress import record_lag
from cryptopipe.pipeline.summary import summary
from cryptopipe.runtime import Stop, stop_on_signals, write_json_atomic
from cryptopipe.schemas import ConfigError


def _progress(text: str) -> None:
    print(f"bench soak: {text}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = bench_parser("soak", __doc__)
    parser.add_argument("--duration", type=float, default=3600.0, metavar="SECONDS", help="how long (3600)")
    parser.add_argument(
        "--window", type=float, default=300.0, metavar="SECONDS", help="one latency window per (300)"
    )
    parser.add_argument(
        "--warmup", type=float, default=300.0, metavar="SECONDS", help="memory slopes start after (300)"
    )
    parser.add_argument(
        "--sample-every", type=float, default=5.0, metavar="SECONDS", help="memory sampled every (5)"
    )
    parser.add_argument("--json", type=Path, dest="json_path", help="write the results here")
    add_pipeline_arguments(parser)
    parser.set_defaults(source="replay", rate=2000.0, metrics_base_port=0)
    return parser


def _pids(pipeline: Pipeline) -> dict[str, int]:
    pids = {name: s.pid for name, s in pipeline.state.services.items() if s.pid is not None}
    for name, server in pipeline.servers.items():
        if server is not None and server.pid is not None:
            pids[name] = server.pid
    if pipeline.prometheus is not None and pipeline.prometheus.pid:
        pids["prometheus"] = pipeline.prometheus.pid
    return pids


def _window(start_s: float, before: Scrape, after: Scrape) -> dict[str, Any]:
    return {
        "start_s": round(start_s, 1),
        "trades_written": int(after.total(m.PRICES_WRITTEN) - before.total(m.PRICES_WRITTEN)),
        "system_latency_ms": window_percentiles_ms(before, after, m.SYSTEM_LATENCY),
        "e2e_latency_ms": window_percentiles_ms(before, after, m.E2E_LATENCY),
    }


def watch(
    pipeline: Pipeline, args: argparse.Namespace, stop: Stop
) -> tuple[MemoryTrace, list[dict[str, Any]]]:
    """Sample memory and close latency windows until ``--duration`` (or a signal)."""
    trace = MemoryTrace()
    windows: list[dict[str, Any]] = []
    consumers = pipeline.members("prices-consumer")
    started = time.monotonic()
    window_start, window_scrape = 0.0, pipeline.scrape(*consumers)
    while not stop.wait(args.sample_every):
        elapsed = time.monotonic() - started
        trace.sample(elapsed, _pids(pipeline))
        scrape = pipeline.scrape()
        record_lag(pipeline, scrape, "consumer", m.CONSUMER_LAG)
        record_lag(pipeline, scrape, "alerting", m.ALERTING_LAG)
        dead = pipeline.dead_service()
        if dead is not None:
            raise RuntimeError(f"{dead.name} exited with code {dead.returncode()}: {dead.log_tail()}")
        if elapsed - window_start >= args.window or elapsed >= args.duration:
            now = pipeline.scrape(*consumers)
            windows.append(_window(window_start, window_scrape, now))
            _progress(f"{elapsed:7.0f} s  window {len(windows)}: {windows[-1]}")
            window_start, window_scrape = elapsed, now
        if elapsed >= args.duration:
            break
    return trace, windows


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        config.check()
    except ConfigError as exc:
        _progress("; ".join(exc.problems))
        return 2
    stop = Stop()
    with (
        stop_on_signals(stop),
        tempfile.TemporaryDirectory(prefix="cryptopipe-soak-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        pipeline = Pipeline(config, stack, Path(tmp))
        pipeline.start()
        _progress(
            f"running at {args.rate:g} msg/s for {args.duration:g} s ({', '.join(pipeline.state.services)})"
        )
        trace, windows = watch(pipeline, args, stop)
        drain(pipeline)
        books = books_of(pipeline)
        figures = summary(pipeline, args.duration, books)
    result = {
        "rate_msgs_per_s": args.rate,
        "duration_s": args.duration,
        "window_s": args.window,
        "warmup_s": args.warmup,
        "components": trace.report(args.warmup),
        "windows": windows,
        **{key: figures[key] for key in ("lost", "unwritten", "alerting_unread")},
        **{key: figures[key] for key in ("consumer_lag_max", "alerting_lag_max", "trades_published")},
        "system_latency_ms": figures["system_latency_ms"],
        "reconciliation": figures["reconciliation"],
    }
    if args.json_path is not None:
        write_json_atomic(args.json_path, result, indent=2)
    _progress(books.line())
    return 0 if books.balanced else EXIT_UNBALANCED
