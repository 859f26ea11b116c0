"""``cryptopipe dashboard``: serve the live page with Streamlit.

Runs ``streamlit run`` on :mod:`cryptopipe.dashboard.app` in a child process (through
:mod:`cryptopipe.dashboard.serve`, which keeps the price history), bound to 127.0.0.1 unless told
otherwise. Flags override environment variables; the resulting settings
reach the page as environment variables (never on the command line, so the Redis password in
``REDIS_URL`` stays out of ``ps``).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptopipe.dashboard.settings import DashboardSettings
from cryptopipe.runtime import (
    Stop,
    add_run_arguments,
    configured,
    free_port,
    run_service,
    run_settings_from,
    stop_process,
)
from cryptopipe.schemas import load_settings

logger = logging.getLogger(__name__)

APP = Path(__file__).with_name("app.py")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptopipe dashboard",
        description="Live prices, alerts and pipeline health in the browser (Streamlit). "
        "Redis comes from REDIS_URL / REDIS_KEY_PREFIX; flags override the DASHBOARD_* variables.",
    )
    parser.add_argument("--host", help="address to bind (env DASHBOARD_HOST, default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, help="port; 0 picks a free one (env DASHBOARD_PORT, default 8501)"
    )
    parser.add_argument(
        "--symbols",
        help="comma list of symbols, cards in this order (env DASHBOARD_SYMBOLS; default: all in Redis)",
    )
    parser.add_argument(
        "--refresh",
        type=float,
        metavar="SECONDS",
        help="refresh period (env DASHBOARD_REFRESH_SECONDS, default 1)",
    )
    parser.add_argument(
        "--stale",
        type=float,
        metavar="SECONDS",
        help="mark a symbol stale after this long without trades (env DASHBOARD_STALE_SECONDS, default 10)",
    )
    parser.add_argument(
        "--metrics-urls", help="comma list of the services' /metrics URLs (env DASHBOARD_METRICS_URLS)"
    )
    parser.add_argument("--prometheus-url", help="query this Prometheus instead (env PROMETHEUS_URL)")
    add_run_arguments(parser)
    return parser


def settings_from_args(args: argparse.Namespace) -> DashboardSettings:
    """Environment (and .env) first, then the flags that were given on top; raises ConfigError."""
    return load_settings(
        DashboardSettings,
        host=args.host,
        port=args.port,
        symbols=args.symbols,
        refresh_seconds=args.refresh,
        stale_seconds=args.stale,
        metrics_urls=args.metrics_urls,
        prometheus_url=args.prometheus_url,
    )


def streamlit_argv(settings: DashboardSettings, port: int) -> list[str]:
    """The ``streamlit run`` command line, through :mod:`cryptopipe.dashboard.serve` (which keeps the
    price history from the start): no secrets, no browser, no telemetry, no file watcher."""
    return [
        sys.executable,
        "-m",
        "cryptopipe.dashboard.serve",
        "run",
        str(APP),
        "--server.address",
        settings.host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--client.showErrorDetails",
        "type",
    ]


def run(settings: DashboardSettings, stop: Stop) -> dict[str, Any]:
    """Serve the page until ``stop`` is set or Streamlit exits; ``{"port", "exit_code"}``.

    The settings reach the Streamlit process as environment variables; a set ``stop`` terminates
    it (exit code None then: we stopped it, it did not fail).
    """
    port = settings.port or free_port(settings.host)
    env = {**os.environ, **settings.to_env(), "DASHBOARD_PORT": str(port)}
    if not env.get("REDIS_URL"):
        logger.warning("REDIS_URL is not set: the page will say so until it is (cryptopipe up sets it)")
    proc = subprocess.Popen(streamlit_argv(settings, port), env=env)
    logger.info("dashboard on http://%s:%d (pid %d)", settings.host, port, proc.pid)
    try:
        while proc.poll() is None and not stop.wait(0.2):
            pass
    finally:
        if stop_process(proc, grace=10.0):
            logger.warning("streamlit (pid %d) ignored SIGTERM for 10 s; killed it", proc.pid)
    code = None if stop.is_set() else proc.returncode
    if code:
        logger.error("streamlit exited with code %d", code)
    return {"port": port, "exit_code": code}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    loaded = configured("dashboard", lambda: (settings_from_args(args), run_settings_from(args)))
    if loaded is None:
        return 2
    settings, run_settings = loaded
    stats = run_service("dashboard", run, settings, run_settings=run_settings)
    return int(stats["exit_code"] or 0)
