"""``cryptopipe skew-monitor``: estimate the local clock's offset against Binance (and NTP).

``--once --json`` prints one JSON object and exits (0; 2 when a reference does not answer);
without ``--once`` it keeps estimating every ``--interval`` seconds and serves the
``cryptopipe_clock_*`` gauges on ``/metrics`` until SIGINT/SIGTERM: a service on the runtime kit,
:func:`run` (settings, stop) returning the last estimate per reference (``--stats-json`` or
CRYPTOPIPE_STATS_JSON writes it at exit, with the final metrics).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from cryptopipe.runtime import Stop, add_run_arguments, run_service, run_settings_from
from cryptopipe.schemas import ConfigError
from cryptopipe.skew.combine import Consensus, combine
from cryptopipe.skew.errors import ReferenceUnavailable
from cryptopipe.skew.estimate import Estimate
from cryptopipe.skew.estimator import SkewEstimator, publish
from cryptopipe.skew.references import BinanceTimeReference, NtpReference, TimeReference
from cryptopipe.skew.settings import SkewSettings, load_settings

logger = logging.getLogger(__name__)

EXIT_UNAVAILABLE = 2


#: The numeric flags: (flag, settings field, type, metavar, help). Unset, each comes from the environment.
_NUMBERS: tuple[tuple[str, str, type[int] | type[float], str, str], ...] = (
    ("--interval", "interval_s", float, "S", "seconds between estimates (env SKEW_INTERVAL_S; default 10)"),
    ("--samples", "samples", int, "N", "exchanges per interval (env SKEW_SAMPLES; default 20)"),
    ("--window", "window", int, "K", "fit over the last K intervals (env SKEW_WINDOW; default 150)"),
    (
        "--assumed-asymmetry-ms",
        "assumed_asymmetry_ms",
        float,
        "MS",
        "path asymmetry the interval allows for (env SKEW_ASSUMED_ASYMMETRY_MS; default 10)",
    ),
    ("--timeout", "timeout_s", float, "S", "timeout of one exchange (env SKEW_TIMEOUT_S; default 2)"),
    ("--metrics-port", "metrics_port", int, "P", "env SKEW_METRICS_PORT; default 9105"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptopipe skew-monitor",
        description=(
            "Estimate the local clock's offset (reference - local, NTP's sign) against Binance's "
            "GET /api/v3/time and optionally an NTP server. Flags override environment variables."
        ),
    )
    parser.add_argument("--once", action="store_true", help="take one estimate, print it and exit")
    parser.add_argument("--json", action="store_true", help="with --once: print one JSON object")
    parser.add_argument(
        "--binance-url",
        default=None,
        metavar="URL",
        help="Binance-compatible REST base (env BINANCE_REST_URL; default https://api.binance.com)",
    )
    parser.add_argument(
        "--no-binance",
        dest="use_binance",
        action="store_false",
        default=None,
        help="do not ask Binance (NTP only; needs --ntp-server)",
    )
    parser.add_argument(
        "--ntp-server",
        default=None,
        metavar="HOST[:PORT]",
        help="also ask this NTP server (env SKEW_NTP_SERVER)",
    )
    for flag, dest, kind, metavar, text in _NUMBERS:
        parser.add_argument(flag, dest=dest, type=kind, default=None, metavar=metavar, help=text)
    parser.add_argument(
        "--no-drift",
        dest="fit_drift",
        action="store_false",
        default=None,
        help="do not fit the frequency drift (env SKEW_FIT_DRIFT; default: fit it)",
    )
    parser.add_argument(
        "--metrics-host", default=None, metavar="HOST", help="env SKEW_METRICS_HOST; default 127.0.0.1"
    )
    add_run_arguments(parser)
    return parser


def _references(settings: SkewSettings) -> list[TimeReference]:
    refs: list[TimeReference] = []
    if settings.use_binance:
        refs.append(BinanceTimeReference(settings.binance_url, timeout_s=settings.timeout_s))
    ntp = settings.ntp_host_port()
    if ntp is not None:
        refs.append(NtpReference(ntp[0], ntp[1], timeout_s=settings.timeout_s))
    return refs


def _estimators(settings: SkewSettings, refs: list[TimeReference]) -> list[SkewEstimator]:
    return [
        SkewEstimator(
            ref,
            samples=settings.samples,
            interval_s=settings.interval_s,
            window=settings.window,
            assumed_asymmetry_ms=settings.assumed_asymmetry_ms,
            fit_drift=settings.fit_drift,
        )
        for ref in refs
    ]


async def _once(estimators: list[SkewEstimator]) -> list[Estimate]:
    try:
        results = await asyncio.gather(*(e.sample_once() for e in estimators), return_exceptions=True)
    finally:
        for estimator in estimators:
            await estimator.aclose()
    estimates: list[Estimate] = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        estimates.append(result)
    return estimates


def _once_output(estimates: list[Estimate], as_json: bool) -> str:
    comparisons = Consensus().check(estimates)
    if as_json:
        primary: dict[str, Any] = estimates[0].to_json()
        for extra in estimates[1:]:
            key = "ntp" if extra.reference.startswith("ntp") else extra.reference
            primary[key] = extra.to_json()
        if comparisons:
            primary["disagree"] = any(c.disagree for c in comparisons)
        return json.dumps(primary)
    return "\n".join(
        f"{e.reference}: offset {e.offset_ms:+.3f} ms ± {e.uncertainty_ms:.3f} ms "
        f"(rtt {e.rtt_ms:.3f} ms, {e.samples} samples; offset = reference - local)"
        for e in estimates
    )


def run(settings: SkewSettings, stop: Stop) -> dict[str, Any]:
    """Estimate against every reference until ``stop``; the last estimate of each (None: none yet)."""
    estimators = _estimators(settings, _references(settings))
    asyncio.run(_monitor(estimators, stop))
    return {
        "estimates": {
            e.reference.name: (e.current.to_json() if e.current is not None else None) for e in estimators
        }
    }


async def _monitor(estimators: list[SkewEstimator], stopping: Stop) -> None:
    stop = stopping.asyncio_event()
    consensus = Consensus()

    def compare() -> None:
        currents = [e.current for e in estimators if e.current is not None]
        if len(currents) > 1:
            consensus.check(currents)
            publish(combine(currents), sum(c.samples for c in currents))

    async def report(estimator: SkewEstimator) -> None:
        last: int | None = None
        while not stop.is_set():
            current = estimator.current
            if current is not None and current.taken_at_us != last:
                last = current.taken_at_us
                logger.info(
                    "%s: offset %+.3f ms ± %.3f ms (95 %%; drift %+.2f ppm, rtt %.3f ms)",
                    current.reference,
                    current.offset_ms,
                    current.uncertainty_ms,
                    current.drift_ppm,
                    current.rtt_ms,
                )
                compare()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    try:
        await asyncio.gather(*(e.run(stop) for e in estimators), *(report(e) for e in estimators))
    finally:
        for estimator in estimators:
            await estimator.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(
            binance_url=args.binance_url,
            use_binance=args.use_binance,
            ntp_server=args.ntp_server,
            interval_s=args.interval_s,
            samples=args.samples,
            window=args.window,
            assumed_asymmetry_ms=args.assumed_asymmetry_ms,
            fit_drift=args.fit_drift,
            timeout_s=args.timeout_s,
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
        )
        run_settings = run_settings_from(args)
    except ConfigError as exc:
        parser.error(str(exc))
    refs = _references(settings)
    if not refs:
        parser.error("no reference to ask: --no-binance needs --ntp-server")
    if args.json and not args.once:
        parser.error("--json needs --once")
    if args.once:
        try:
            estimates = asyncio.run(_once(_estimators(settings, refs)))
        except ReferenceUnavailable as exc:
            print(f"cryptopipe skew-monitor: {exc}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        print(_once_output(estimates, args.json))
        return 0
    run_service(
        "skew-monitor",
        run,
        settings,
        run_settings=run_settings,
    )
    return 0
