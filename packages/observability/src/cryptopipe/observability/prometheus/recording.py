"""Recording rules: every catalogue histogram's mean/p95/p99, pipeline rates, lag and resources.

Recorded series follow Prometheus' ``level:metric:operation`` convention. For a histogram ``H``
with labels ``L``: ``L:H:mean1m``, ``L:H:p95_1m``, ``L:H:p99_1m`` (labels joined by ``_``) and the
same for ``all:H:*`` aggregated over every label.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryptopipe.observability import metrics as m

#: Window of every recorded rate and quantile.
WINDOW = "1m"
QUANTILES = (("p95", 0.95), ("p99", 0.99))


def _sum(labels: Sequence[str]) -> str:
    return f"sum by ({', '.join(labels)}) " if labels else "sum"


def _level(labels: Sequence[str]) -> str:
    return "_".join(labels) if labels else "all"


def histogram_series(metric: str, level: str, operation: str) -> str:
    """Recorded series name, e.g. ``histogram_series(H, "symbol", "p99")`` -> ``symbol:H:p99_1m``."""
    suffix = f"mean{WINDOW}" if operation == "mean" else f"{operation}_{WINDOW}"
    return f"{level}:{metric}:{suffix}"


def _histogram_rules(entry: m.CatalogueEntry) -> list[dict[str, str]]:
    name = entry.name
    levels = [entry.labels, ()] if entry.labels else [()]
    rules = []
    for labels in levels:
        level = _level(labels)
        total, count = f"rate({name}_sum[{WINDOW}])", f"rate({name}_count[{WINDOW}])"
        rules.append(
            {
                "record": histogram_series(name, level, "mean"),
                "expr": f"{_sum(labels)}({total}) / {_sum(labels)}({count})",
            }
        )
        buckets = f"{_sum(('le', *labels))}(rate({name}_bucket[{WINDOW}]))"
        rules.extend(
            {"record": histogram_series(name, level, label), "expr": f"histogram_quantile({q}, {buckets})"}
            for label, q in QUANTILES
        )
    return rules


_SERVICE_LABEL = "container_label_com_docker_compose_service"


def _from_cadvisor(metric: str, rate: bool) -> str:
    inner = f'{metric}{{{_SERVICE_LABEL}!=""}}'
    if rate:
        inner = f"rate({inner}[{WINDOW}])"
    return f'sum by (component) (label_replace({inner}, "component", "$1", "{_SERVICE_LABEL}", "(.+)"))'


def _from_process(metric: str, rate: bool) -> str:
    # max, not sum: the same component exported by two monitors by mistake must not double.
    inner = f"rate({metric}[{WINDOW}])" if rate else metric
    return f"max by (component) ({inner})"


#: (recorded series, cAdvisor metric, our metric, is a counter) — cAdvisor wins where both exist.
INFRASTRUCTURE_SERIES: tuple[tuple[str, str, str, bool], ...] = (
    (
        f"component:cpu_usage_cores:rate{WINDOW}",
        "container_cpu_usage_seconds_total",
        "cryptopipe_process_cpu_seconds_total",
        True,
    ),
    (
        "component:memory_rss_bytes:max",
        "container_memory_rss",
        "cryptopipe_process_resident_memory_bytes",
        False,
    ),
    (
        f"component:network_receive_bytes:rate{WINDOW}",
        "container_network_receive_bytes_total",
        "cryptopipe_process_network_receive_bytes_total",
        True,
    ),
    (
        f"component:network_transmit_bytes:rate{WINDOW}",
        "container_network_transmit_bytes_total",
        "cryptopipe_process_network_transmit_bytes_total",
        True,
    ),
    (
        f"component:disk_read_bytes:rate{WINDOW}",
        "container_fs_reads_bytes_total",
        "cryptopipe_process_disk_read_bytes_total",
        True,
    ),
    (
        f"component:disk_write_bytes:rate{WINDOW}",
        "container_fs_writes_bytes_total",
        "cryptopipe_process_disk_write_bytes_total",
        True,
    ),
)

#: Consumer lag per consumer and topic from both sides: ``source="consumer"`` (our consumers,
#: everywhere, and the Spark alerting query as ``consumer="alerting"``) and ``source="broker"``
#: (kafka-exporter's view of the consumer groups, compose; Spark keeps its offsets in its
#: checkpoint, not in a group, so only its own figure exists).
LAG_SERIES = "consumer_topic:kafka_consumer_lag:sum"


def _lag_rules() -> list[dict[str, Any]]:
    return [
        {
            "record": LAG_SERIES,
            "expr": "sum by (consumer, topic) (cryptopipe_consumer_lag)",
            "labels": {"source": "consumer"},
        },
        {
            "record": LAG_SERIES,
            "expr": "sum by (consumer, topic) "
            '(label_replace(cryptopipe_alerting_lag, "consumer", "alerting", "topic", ".*"))',
            "labels": {"source": "consumer"},
        },
        {
            "record": LAG_SERIES,
            "expr": 'sum by (consumer, topic) (label_replace(kafka_consumergroup_lag, "consumer", "$1", '
            '"consumergroup", "(.+)"))',
            "labels": {"source": "broker"},
        },
    ]


def _rate_rules() -> list[dict[str, str]]:
    rules = []
    for entry in m.catalogue():
        if entry.type == "counter" and entry.component in {
            "ingest",
            "consumer",
            "books-consumer",
            "alerting",
        }:
            rules.append(
                {
                    "record": rate_series(entry),
                    "expr": f"{_sum(entry.labels)}(rate({entry.name}_total[{WINDOW}]))",
                }
            )
    return rules


def rate_series(entry: m.CatalogueEntry) -> str:
    """Recorded per-second rate of a pipeline counter, by its own labels."""
    return f"{_level(entry.labels)}:{entry.name}:rate{WINDOW}"


def recording_rules() -> dict[str, Any]:
    """The recording-rule groups (a Prometheus rule file as a dict)."""
    histograms = [
        rule for entry in m.catalogue() if entry.type == "histogram" for rule in _histogram_rules(entry)
    ]
    infrastructure = [
        {"record": record, "expr": f"{_from_cadvisor(cadvisor, rate)} or {_from_process(ours, rate)}"}
        for record, cadvisor, ours, rate in INFRASTRUCTURE_SERIES
    ]
    return {
        "groups": [
            {"name": "cryptopipe-latency", "rules": histograms},
            {"name": "cryptopipe-throughput", "rules": [*_rate_rules(), *_lag_rules()]},
            {"name": "cryptopipe-infrastructure", "rules": infrastructure},
        ]
    }
