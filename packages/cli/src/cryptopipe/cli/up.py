"""``cryptopipe up``: the whole pipeline on this machine, in one command.

A thin command over :mod:`cryptopipe.pipeline`: flags become a :class:`PipelineConfig`, checked
before anything starts (servers that do not answer, replay files that are not recordings, bad
values: one line, exit 2); the pipeline starts, runs until a signal or ``--run-for``, drains front
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
from cryptopipe.pipeline import EXIT_UNBALANCED, Pipeline, PipelineConfig, books_of, progress_line
from cryptopipe.pipeline.drain import drain
from cryptopipe.pipeline.flags import add_pipeline_arguments, config_from_args, defaults_formatter
from cryptopipe.pipeline.runlog import RunLog
from cryptopipe.pipeline.say import say
from cryptopipe.pipeline.summary import summary
from cryptopipe.pipeline.tape import check_tape
from cryptopipe.runtime import Stop, stop_on_signals, write_json_atomic
from cryptopipe.schemas import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptopipe up",
        description="Run the whole pipeline on this machine. Servers it cannot find, it starts.",
        epilog=f"exit status: 0 the run went well and its books balance; 1 a server or service "
        f"failed; 2 bad configuration or Binance unreachable; {EXIT_UNBALANCED} the books do not "
        "balance (published trades or alerts never written to Redis)",
        formatter_class=defaults_formatter,
    )
    parser.add_argument(
        "--run-for",
        type=float,
        metavar="SECONDS",
        help="stop cleanly after this long, counted once every service is up (start-up and the "
        "drain come on top; the last line says how long each took); unset: until Ctrl-C",
    )
    parser.add_argument(
        "--summary-json", type=Path, metavar="PATH", help="write the run's figures here at exit"
    )
    parser.add_argument(
        "--exit-on-finish",
        action="store_true",
        help="with --source replay: drain and stop once the tape has played to its end (without it, "
        "ingest stops there and the rest runs on until Ctrl-C or --run-for)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show every service's log lines, not only warnings"
    )
    parser.add_argument(
        "--log-file",
        type=Path,
        metavar="PATH",
        help="the run's full log (unset: a new file per run, path printed)",
    )
    add_pipeline_arguments(parser)
    return parser


def _watch(
    pipeline: Pipeline, stop: Stop, run_for: float | None, *, exit_on_finish: bool
) -> tuple[int, float]:
    """Watch the running pipeline until a signal, ``run_for``, the tape's end (``exit_on_finish``)
    or a service dies; returns the exit status so far and how long it ran."""
    say(f"cryptopipe up: running ({', '.join(pipeline.state.services)}); Ctrl-C stops cleanly")
    started = time.monotonic()
    next_progress = started + 5
    next_tape = started + 1
    while not stop.wait(0.2):
        elapsed = time.monotonic() - started
        if run_for is not None and elapsed >= run_for:
            break
        if time.monotonic() >= next_tape:
            next_tape += 1
            if check_tape(pipeline) and exit_on_finish:
                break
        dead = pipeline.dead_service()
        if dead is not None:
            say(f"cryptopipe up: {dead.name} exited with code {dead.returncode()}; stopping")
            return 1, time.monotonic() - started
        if time.monotonic() >= next_progress:
            say(progress_line(pipeline, elapsed))
            next_progress += 5
    return 0, time.monotonic() - started


def _rules_line(config: PipelineConfig) -> str | None:
    settings = config.alerting.settings
    if not config.alerting.enabled or settings is None:
        return None
    rules = ", ".join(str(rule) for rule in settings.rules)
    return f"cryptopipe up: alert rules in force: {rules} (--rule or ALERTING_RULES sets others)"


def run(
    config: PipelineConfig,
    log: RunLog,
    *,
    run_for: float | None = None,
    summary_json: Path | None = None,
    exit_on_finish: bool = False,
) -> int:
    """Start, run, drain and reconcile one pipeline; returns ``up``'s exit status."""
    stop = Stop()
    began = time.monotonic()
    with (
        stop_on_signals(stop),
        tempfile.TemporaryDirectory(prefix="cryptopipe-up-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        pipeline = Pipeline(config, stack, Path(tmp), log=log.child)
        try:
            pipeline.start()
        except ConfigError as exc:
            say(f"cryptopipe up: {'; '.join(exc.problems)}")
            return 2
        except START_ERRORS as exc:
            say(f"cryptopipe up: {exc}")
            return 1
        startup = time.monotonic() - began
        exit_code, ran = _watch(pipeline, stop, run_for, exit_on_finish=exit_on_finish)
        say("cryptopipe up: draining")
        drained = time.monotonic()
        drain(pipeline)
        books = books_of(pipeline)
        figures = summary(pipeline, ran, books)
    say(
        f"cryptopipe up: ran {ran:.0f} s; start-up took {startup:.0f} s, the drain and stop "
        f"{time.monotonic() - drained:.0f} s"
    )
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
        if args.run_for is not None and args.run_for < 0:
            raise ConfigError(f"--run-for must be 0 seconds or more, got {args.run_for:g}")
        config = config_from_args(args)
        config.check()
    except ConfigError as exc:
        say(f"cryptopipe up: {'; '.join(exc.problems)}")
        return 2
    with RunLog(args.log_file, verbose=args.verbose) as log:
        say(f"cryptopipe up: the full log is in {log.path}" + ("" if args.verbose else " (-v shows it here)"))
        rules = _rules_line(config)
        if rules is not None:
            say(rules)
        return run(
            config,
            log,
            run_for=args.run_for,
            summary_json=args.summary_json,
            exit_on_finish=args.exit_on_finish,
        )
