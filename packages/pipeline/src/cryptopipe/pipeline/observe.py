"""The run's own observability: the orchestrator's ``/metrics`` (the broker's and Redis' resources),
Prometheus when installed, and the dashboard."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from cryptopipe.dashboard.settings import DashboardSettings
from cryptopipe.infra.prometheus import start_embedded_prometheus
from cryptopipe.observability import serve_metrics
from cryptopipe.observability.process import ProcessMonitor
from cryptopipe.pipeline.names import component_of
from cryptopipe.pipeline.priority import lower_priority
from cryptopipe.pipeline.say import say
from cryptopipe.runtime import free_port
from cryptopipe.schemas import load_settings

if TYPE_CHECKING:
    from cryptopipe.pipeline.pipeline import Pipeline


def scrape_targets(pipeline: Pipeline, orchestrator_port: int) -> dict[str, list[str]]:
    """Every service's /metrics address by component, ours included."""
    targets: dict[str, list[str]] = {}
    for name, service in pipeline.state.services.items():
        if service.metrics_port is not None:
            targets.setdefault(component_of(name), []).append(f"127.0.0.1:{service.metrics_port}")
    for name, port in pipeline.planned_ports.items():  # ingest: started last
        targets.setdefault(component_of(name), []).append(f"127.0.0.1:{port}")
    if pipeline.config.exchange.source == "replay" and pipeline.rest_url:  # its REST port serves /metrics
        targets["replay-exchange"] = [pipeline.rest_url.removeprefix("http://").rstrip("/")]
    targets["orchestrator"] = [f"127.0.0.1:{orchestrator_port}"]
    return targets


def _source_labels(pipeline: Pipeline) -> dict[str, str]:
    """What the dashboard says it shows: live Binance, or what is replayed, how and at what pace."""
    exchange = pipeline.config.exchange
    if exchange.source == "binance":
        return {"source": "binance"}
    replay = exchange.replay_settings()
    if replay.replay_files:
        names = ", ".join(Path(str(spec)).name for spec in replay.replay_files)
        pace = "as fast as it goes" if math.isinf(float(replay.speed)) else f"at {float(replay.speed):g}x"
        data = f"{names} {pace}"
    else:
        data = f"synthetic, {replay.rate:g} msg/s"
    return {"source": "replay", "replay_clock": replay.clock, "replay_data": data}


def start_observability(pipeline: Pipeline) -> None:
    """Our own /metrics, Prometheus (unless turned off, and when installed), the dashboard."""
    options = pipeline.config.observability
    port = serve_metrics("orchestrator", pipeline.ports.of("orchestrator"), monitor_process=False)
    monitor = ProcessMonitor(
        {name: server.pid for name, server in pipeline.servers.items() if server is not None and server.pid},
        host_network=True,
    ).start()
    pipeline.stack.callback(monitor.stop)
    exchange = pipeline.state.services.get("replay-exchange")
    if exchange is not None and exchange.pid:  # it serves no process metrics of its own
        monitor.add("replay-exchange", exchange.pid)
    targets = scrape_targets(pipeline, port)
    if options.prometheus:
        pipeline.prometheus = start_embedded_prometheus(
            targets,
            directory=pipeline.workdir / "prometheus",
            retention=options.prometheus_retention,
            retention_size=options.prometheus_retention_size,
        )
        if pipeline.prometheus is not None:
            pipeline.stack.callback(pipeline.prometheus.stop)
            if pipeline.prometheus.pid:
                monitor.add("prometheus", pipeline.prometheus.pid)
                lower_priority(
                    pipeline.prometheus.pid,
                    pipeline.config.background_nice,
                    pipeline.config.background_cpus,
                    pipeline.config.background_sched,
                )
            say(f"cryptopipe up: prometheus at {pipeline.prometheus.url}")
    if not options.dashboard:
        return
    dashboard_port = options.dashboard_port or free_port()
    state = pipeline.state
    settings = load_settings(
        DashboardSettings,
        port=dashboard_port,
        symbols="" if state.symbols == ["all"] else ",".join(state.symbols),
        metrics_urls=",".join(
            f"http://{address}/metrics" for addresses in targets.values() for address in addresses
        ),
        prometheus_url=pipeline.prometheus.url if pipeline.prometheus is not None else None,
        runtime_info={"broker": state.broker, "redis": state.redis, "spark": state.spark},
        **_source_labels(pipeline),
    )
    env = pipeline.service_env(settings, pipeline.workdir / "dashboard-stats.json")
    dashboard = pipeline.launch("dashboard", ["dashboard"], env=env, ready_port=dashboard_port)
    if dashboard.pid:
        monitor.add("dashboard", dashboard.pid)
        lower_priority(
            dashboard.pid,
            pipeline.config.background_nice,
            pipeline.config.background_cpus,
            pipeline.config.background_sched,
        )
    say(f"cryptopipe up: dashboard at http://127.0.0.1:{dashboard_port}")
