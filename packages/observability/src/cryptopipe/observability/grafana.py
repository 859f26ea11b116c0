"""Grafana dashboards and provisioning, generated from panel specs so PromQL is written once.

The committed JSON under compose/grafana/ is this module's output (a test keeps it equal), and
another test checks that every metric a panel queries exists in the catalogue. Panels read the
recorded series of :mod:`cryptopipe.observability.prometheus` where one exists, so a dashboard
shows exactly what the alerting rules and the summaries compute.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cryptopipe.observability.prometheus import LAG_SERIES, STALL_METRIC, WINDOW, histogram_series

#: The provisioned datasource's uid; every panel names it.
DATASOURCE_UID = "prometheus"
_DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
#: Where compose mounts compose/grafana/dashboards inside the Grafana container.
DASHBOARDS_PATH = "/var/lib/grafana/dashboards"


@dataclass(frozen=True, slots=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    width: int = 12


@dataclass(frozen=True, slots=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True, slots=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = field(default=("cryptopipe",))


def latency(metric: str, title: str, description: str, level: str = "all", by: str = "") -> Panel:
    """Mean, p95 and p99 of a seconds histogram over the recording window."""
    prefix = f"{{{{{by}}}}} " if by else ""
    queries = tuple(
        Query(histogram_series(metric, level, operation), f"{prefix}{operation}")
        for operation in ("mean", "p95", "p99")
    )
    return Panel(title, queries, unit="s", description=description)


def single(title: str, expr: str, legend: str, *, unit: str = "short", description: str = "") -> Panel:
    """A panel of one query."""
    return Panel(title, (Query(expr, legend),), unit=unit, description=description)


def _rate(level: str, metric: str) -> str:
    return f"{level}:{metric}:rate{WINDOW}"


# --- the four dashboards ---------------------------------------------------------------------
E2E = "cryptopipe_e2e_latency_seconds"
SYSTEM = "cryptopipe_system_latency_seconds"
NETWORK = "cryptopipe_network_latency_seconds"
NETWORK_CORRECTED = "cryptopipe_network_latency_corrected_seconds"
PRODUCER_LATENCY = "cryptopipe_kafka_producer_latency_seconds"

#: On both branches' dashboards: the prices and the alerts consumers run the same loop.
_CONSUMER_BATCH = latency(
    "cryptopipe_consumer_batch_seconds",
    "Consumer batch time",
    "Decode + Redis write of one batch.",
    level="consumer",
    by="consumer",
)

PRICES = Dashboard(
    uid="cryptopipe-prices",
    title="cryptopipe: prices branch",
    description="Exchange -> ingest -> Kafka -> prices consumer -> Redis: latency split, throughput, lag.",
    rows=(
        Row(
            f"Latency (mean / p95 / p99 over {WINDOW})",
            (
                latency(
                    E2E, "End-to-end latency", "Redis written minus exchange trade time (not skew-corrected)."
                ),
                latency(SYSTEM, "System latency", "Redis written minus local receive time: our own share."),
                Panel(
                    "Kafka producer: queue and broker round trip",
                    tuple(
                        Query(
                            f'max by (stage) ({PRODUCER_LATENCY}{{quantile="{quantile}"}})',
                            f"{{{{stage}}}} {quantile}",
                        )
                        for quantile in ("p50", "p99")
                    ),
                    unit="s",
                    description="librdkafka's own windows in ingest's trade producer "
                    "(INGEST_STATISTICS_INTERVAL_MS): queue = produce() until the record is in a request "
                    "(the linger), outbuf = a request waiting to be sent, rtt = a produce request until "
                    "the broker's answer. Where the system latency's broker leg goes.",
                ),
                latency(NETWORK, "Network latency", "Local receive time minus exchange trade time (raw)."),
                latency(
                    NETWORK_CORRECTED,
                    "Network latency, skew-corrected",
                    "Network latency plus the estimated clock offset.",
                ),
                single(
                    "End-to-end p99 by symbol",
                    histogram_series(E2E, "symbol", "p99"),
                    "{{symbol}}",
                    unit="s",
                ),
                Panel(
                    "System share of end-to-end latency",
                    (
                        Query(
                            f"{histogram_series(SYSTEM, 'all', 'mean')}"
                            f" / {histogram_series(E2E, 'all', 'mean')}",
                            "mean system / mean end-to-end",
                        ),
                        Query("cryptopipe_system_latency_share", "{{symbol}} last batch"),
                    ),
                    unit="percentunit",
                ),
            ),
        ),
        Row(
            "Throughput",
            (
                Panel(
                    "Trades per second",
                    (
                        Query(_rate("symbol", "cryptopipe_ingest_trades_received"), "{{symbol}} received"),
                        Query(_rate("symbol", "cryptopipe_ingest_trades_published"), "{{symbol}} published"),
                        Query(_rate("symbol", "cryptopipe_prices_written"), "{{symbol}} written to Redis"),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Consumer throughput",
                    (
                        Query(
                            _rate("consumer_topic", "cryptopipe_consumer_messages"), "{{consumer}} {{topic}}"
                        ),
                        Query(
                            "cryptopipe_consumer_throughput_msgs_per_second", "{{consumer}} (consumer's own)"
                        ),
                    ),
                    unit="ops",
                ),
            ),
        ),
        Row(
            "Lag, losses and internals",
            (
                single(
                    "Consumer lag (records)",
                    LAG_SERIES,
                    "{{consumer}} {{topic}} ({{source}})",
                    description="source=consumer: the consumers' own view; "
                    "source=broker: kafka-exporter's (compose).",
                ),
                Panel(
                    "Lost and dead-lettered",
                    (
                        Query(_rate("reason", "cryptopipe_ingest_trades_lost"), "lost: {{reason}}"),
                        Query(
                            f"sum by (component, reason) (rate(cryptopipe_dead_letters_total[{WINDOW}]))",
                            "dead-lettered: {{component}} {{reason}}",
                        ),
                        Query(_rate("symbol", "cryptopipe_ingest_gaps"), "gaps: {{symbol}}"),
                    ),
                    unit="ops",
                ),
                _CONSUMER_BATCH,
                latency(
                    "cryptopipe_redis_write_seconds",
                    "Redis write",
                    "One pipelined write.",
                    "consumer",
                    "consumer",
                ),
                single(
                    "Consumer stalled for",
                    f"max by (consumer) ({STALL_METRIC})",
                    "{{consumer}}",
                    unit="s",
                    description="Seconds records have been waiting (lag > 0) with none written to Redis; "
                    "0 while caught up. The consumer seeks back after its stall timeout (default 5 s), "
                    "recreates its Kafka consumer one timeout later; the ConsumerStalled alert fires "
                    "above 10 s.",
                ),
                Panel(
                    f"Consumer stalls and recoveries (per {WINDOW})",
                    (
                        Query(
                            f"sum by (consumer) (increase(cryptopipe_consumer_stalls_total[{WINDOW}]))",
                            "{{consumer}} stalls",
                        ),
                        Query(
                            "sum by (consumer, action) "
                            f"(increase(cryptopipe_consumer_stall_recoveries_total[{WINDOW}]))",
                            "{{consumer}} {{action}}",
                        ),
                    ),
                    description="seek: stalled partitions back to the last written offset; "
                    "recreate: commit, close and recreate the Kafka consumer, then resubscribe.",
                ),
            ),
        ),
    ),
)

BATCH = "cryptopipe_alerting_batch_duration_seconds"

ALERTS = Dashboard(
    uid="cryptopipe-alerts",
    title="cryptopipe: alerts branch",
    description="Kafka -> Spark structured streaming -> alerts topic -> alerts consumer -> Redis.",
    rows=(
        Row(
            "Spark micro-batches",
            (
                latency(
                    BATCH, "Micro-batch time", "Duration of one micro-batch (progress triggerExecution)."
                ),
                single(
                    "Micro-batch time by phase (p95)",
                    histogram_series("cryptopipe_alerting_batch_phase_seconds", "phase", "p95"),
                    "{{phase}}",
                    unit="s",
                    description="Spark's durationMs: addBatch, latestOffset, walCommit, commitOffsets ...",
                ),
                Panel(
                    "Input and output rate",
                    (
                        Query("cryptopipe_alerting_input_rows_per_second", "input rows/s (last batch)"),
                        Query(
                            "cryptopipe_alerting_processed_rows_per_second", "processed rows/s (last batch)"
                        ),
                        Query(_rate("all", "cryptopipe_alerting_input_rows"), f"rows read/s ({WINDOW})"),
                        Query(
                            _rate("rule_kind", "cryptopipe_alerting_alerts"), "alerts/s: {{rule}} {{kind}}"
                        ),
                    ),
                    unit="ops",
                ),
                Panel(
                    "Dropped rows",
                    (
                        Query(
                            _rate("all", "cryptopipe_alerting_rows_dropped_by_watermark"), "late (watermark)"
                        ),
                        Query(_rate("all", "cryptopipe_alerting_invalid_rows"), "not a trade"),
                    ),
                    unit="ops",
                ),
                single(
                    "Watermark delay",
                    "cryptopipe_alerting_watermark_delay_seconds",
                    "wall clock - watermark",
                    unit="s",
                ),
                single(
                    "Spark query lag (records)",
                    "cryptopipe_alerting_lag",
                    "{{topic}} partition {{partition}}",
                    description="Prices records the alerting query has not read: each partition's high "
                    "watermark (asked every second) minus the end offset of the query's last micro-batch.",
                ),
                Panel(
                    "State and restarts",
                    (
                        Query("cryptopipe_alerting_state_rows", "state rows (open windows)"),
                        Query(
                            f"increase(cryptopipe_alerting_query_restarts_total[{WINDOW}])", "query restarts"
                        ),
                    ),
                ),
            ),
        ),
        Row(
            "Alert latency",
            (
                latency(
                    "cryptopipe_alert_latency_seconds",
                    "Alert latency (to Redis)",
                    "Alert written to Redis minus receive time of the trade that closed (or crossed) it.",
                    level="kind",
                    by="kind",
                ),
                latency(
                    "cryptopipe_alerting_publish_latency_seconds",
                    "Alert publish latency (to Kafka)",
                    "Alert acknowledged by Kafka minus the same trade's receive time.",
                    level="kind",
                    by="kind",
                ),
                latency(
                    "cryptopipe_alerting_express_publish_latency_seconds",
                    "Express-lane publish latency (to Kafka)",
                    "Express-lane alert acknowledged by Kafka minus receive time of the trade deciding it.",
                    level="kind",
                    by="kind",
                ),
                single(
                    "Alerts consumer lag (records)",
                    f'{LAG_SERIES}{{topic=~".*alerts"}}',
                    "{{consumer}} {{topic}} ({{source}})",
                ),
                _CONSUMER_BATCH,
            ),
        ),
    ),
)

INFRASTRUCTURE = Dashboard(
    uid="cryptopipe-infrastructure",
    title="cryptopipe: infrastructure",
    description="CPU, memory, network and disk per component "
    "(psutil in the embedded mode, cAdvisor in compose).",
    rows=(
        Row(
            "Resources per component",
            (
                single(
                    "CPU (cores)",
                    f"component:cpu_usage_cores:rate{WINDOW}",
                    "{{component}}",
                    description="CPU seconds per second, incl. child processes (the Spark driver's JVM).",
                ),
                single(
                    "Memory (RSS)",
                    "component:memory_rss_bytes:max",
                    "{{component}}",
                    unit="bytes",
                ),
                Panel(
                    "Network",
                    (
                        Query(f"component:network_receive_bytes:rate{WINDOW}", "{{component}} received"),
                        Query(f"component:network_transmit_bytes:rate{WINDOW}", "{{component}} sent"),
                    ),
                    unit="Bps",
                    description="Embedded mode: TCP payload per component, component=host: all interfaces; "
                    "compose: per container.",
                ),
                Panel(
                    "Disk",
                    (
                        Query(f"component:disk_read_bytes:rate{WINDOW}", "{{component}} read"),
                        Query(f"component:disk_write_bytes:rate{WINDOW}", "{{component}} written"),
                    ),
                    unit="Bps",
                ),
                single("Scrape targets up", "up", "{{job}} {{instance}}"),
            ),
        ),
    ),
)

CLOCK = Dashboard(
    uid="cryptopipe-clock",
    title="cryptopipe: clock",
    description="Clock offset against the exchange and NTP, its uncertainty, "
    "and the exchange API's response time.",
    rows=(
        Row(
            "Clock",
            (
                single(
                    "Clock offset (reference minus local)",
                    "cryptopipe_clock_offset_seconds",
                    "{{reference}}",
                    unit="s",
                ),
                Panel(
                    "Offset uncertainty and round trip",
                    (
                        Query("cryptopipe_clock_offset_uncertainty_seconds", "{{reference}} uncertainty"),
                        Query("cryptopipe_clock_rtt_seconds", "{{reference}} round trip"),
                    ),
                    unit="s",
                ),
                latency(
                    "cryptopipe_api_response_seconds",
                    "Exchange API response time",
                    "REST request sent to body read, by endpoint.",
                    level="endpoint",
                    by="endpoint",
                ),
                Panel(
                    "Estimate age and staleness",
                    (
                        Query("cryptopipe_clock_estimate_age_seconds", "{{reference}} age (s)"),
                        Query("cryptopipe_clock_estimate_stale", "{{reference}} stale"),
                    ),
                ),
                Panel(
                    "Network latency p99: raw vs skew-corrected",
                    (
                        Query(histogram_series(NETWORK, "all", "p99"), "raw"),
                        Query(histogram_series(NETWORK_CORRECTED, "all", "p99"), "skew-corrected"),
                    ),
                    unit="s",
                ),
            ),
        ),
    ),
)

DASHBOARDS: dict[str, Dashboard] = {
    "prices": PRICES,
    "alerts": ALERTS,
    "infrastructure": INFRASTRUCTURE,
    "clock": CLOCK,
}


# --- rendering -------------------------------------------------------------------------------
_HEIGHT = 8


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": _DATASOURCE,
        "gridPos": {"h": _HEIGHT, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {
                "unit": panel.unit,
                "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0, "showPoints": "never"},
            },
            "overrides": [],
        },
        "options": {
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "showLegend": True,
                "calcs": ["lastNotNull", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "none"},
        },
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": _DATASOURCE, "expr": q.expr, "legendFormat": q.legend}
            for i, q in enumerate(panel.queries)
        ],
    }


def dashboard_json(dashboard: Dashboard) -> dict[str, Any]:
    """Grafana dashboard model (schemaVersion 39: Grafana 10.x/11.x)."""
    panels: list[dict[str, Any]] = []
    panel_id, y = 1, 0
    for row in dashboard.rows:
        panels.append(
            {
                "id": panel_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        panel_id, y, x = panel_id + 1, y + 1, 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y = 0, y + _HEIGHT
            panels.append(_panel_json(panel, panel_id, x, y))
            panel_id, x = panel_id + 1, x + panel.width
        y += _HEIGHT
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "editable": True,
        "graphTooltip": 1,
        "refresh": "5s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-15m", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "annotations": {"list": []},
        "templating": {"list": []},
        "panels": panels,
    }


def render_dashboard(dashboard: Dashboard) -> str:
    return json.dumps(dashboard_json(dashboard), indent=2) + "\n"


def expressions(dashboard: Dashboard) -> list[str]:
    return [query.expr for row in dashboard.rows for panel in row.panels for query in panel.queries]


def datasource_provisioning(url: str = "http://prometheus:9090") -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": DATASOURCE_UID,
                "type": "prometheus",
                "access": "proxy",
                "url": url,
                "isDefault": True,
                "editable": False,
                "jsonData": {"timeInterval": "5s"},
            }
        ],
    }


def dashboard_provisioning(path: str = DASHBOARDS_PATH) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "cryptopipe",
                "folder": "cryptopipe",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 30,
                "options": {"path": path, "foldersFromFilesStructure": False},
            }
        ],
    }
