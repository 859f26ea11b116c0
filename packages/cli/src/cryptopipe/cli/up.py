"""``cryptopipe up``: the whole pipeline on this machine, in one command.

A thin command over :mod:`cryptopipe.pipeline`: flags become a :class:`PipelineConfig`, checked
before anything starts; the pipeline starts, runs until a signal or ``--run-for``, drains front
to back, and balances its books. The last line says whether they balance.

Exit status: 0 the run went well and the books balance; 1 a server or service failed;
2 bad configuration, or Binance unreachable; 3 (:data:`EXIT_UNBALANCED`) the books do not
balance: trades (or alerts) were published and never accounted for in Redis.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from cryptopipe.infra.errors import START_ERRORS
from cryptopipe.pipeline import (
    EXIT_UNBALANCED,
    Pipeline,
    PipelineConfig,
    books_of,
    progress_line,
)
from cryptopipe.pipeline.drain import drain
from cryptopipe.pipeline.flags import add_pipeline_arguments, config_from_args
from cryptopipe.pipeline.say import say
from cryptopipe.pipeline.summary import summary
from cryptopipe.runtime import Stop, stop_on_signals, write_json_atomic
from cryptopipe.schemas import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptopipe up",
        description="Run the whole pipeline on this machine. Servers it cannot find, it starts.",
        epilog=f"exit status: 0 the run went well and its books balance; 1 a server or service "
        f"failed; 2 bad configuration or Binance unreachable; {EXIT_UNBALANCED} the books do not "
        "balance (published trades or alerts never written to Redis)",
    )
    parser.add_argument("--run-for", type=float, metavar="SECONDS", help="stop cleanly after this long")
    parser.add_argument(
        "--summary-json", type=Path, metavar="PATH", help="write the run's figures here at exit"
    )
    add_pipeline_arguments(parser)
    return parser


def _run(pipeline: Pipeline, stop: Stop, run_for: float | None) -> tuple[int, float]:
    """Watch the running pipeline until a signal, ``run_for`` or a service dies; returns the exit
    status so far and when the run started (``--run-for`` counts from the moment all is up)."""
    say(f"cryptopipe up: running ({', '.join(pipeline.state.services)}); Ctrl-C stops cleanly")
    started = time.monotonic()
    next_progress = started + 5
    while not stop.wait(0.2):
        elapsed = time.monotonic() - started
        if run_for is not None and elapsed >= run_for:
            break
        dead = pipeline.dead_service()
        if dead is not None:
            say(f"cryptopipe up: {dead.name} exited with code {dead.returncode()}; stopping")
            return 1, started
        if time.monotonic() >= next_progress:
            say(progress_line(pipeline, elapsed))
            next_progress += 5
    return 0, started


def run(config: PipelineConfig, *, run_for: float | None = None, summary_json: Path | None = None) -> int:
    """Start, run, drain and reconcile one pipeline; returns ``up``'s exit status."""
    stop = Stop()
    with (
        stop_on_signals(stop),
        tempfile.TemporaryDirectory(prefix="cryptopipe-up-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        pipeline = Pipeline(config, stack, Path(tmp))
        try:
            pipeline.start()
        except ConfigError as exc:
            say(f"cryptopipe up: {exc}")
            return 2
        except START_ERRORS as exc:
            say(f"cryptopipe up: {exc}")
            return 1
        exit_code, started = _run(pipeline, stop, run_for)
        say("cryptopipe up: draining")
        drain(pipeline)
        books = books_of(pipeline)
        figures = summary(pipeline, time.monotonic() - started, books)
    if summary_json is not None:
        write_json_atomic(summary_json, figures, indent=2)
        say(f"cryptopipe up: summary written to {summary_json}")
    say(f"cryptopipe up: {books.line()}")
    if not books.balanced:
        # A service that died (1) is the cause worth reporting; otherwise the books decide.
        exit_code = exit_code or EXIT_UNBALANCED
    return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        config.check()
    except ConfigError as exc:
        say(f"cryptopipe up: {exc}")
        return 2
    return run(config, run_for=args.run_for, summary_json=args.summary_json)
