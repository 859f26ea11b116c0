"""Prometheus configuration and rules, generated from the code, and the one client of its HTTP API.

Nothing here is a hand-kept list. Scrape targets come from whoever chose the ports (the
orchestrator passes ``{component: ["127.0.0.1:PORT"]}``; compose uses :data:`DEFAULT_METRICS_PORTS`).
Recording rules cover every histogram in :func:`~cryptopipe.observability.metrics.catalogue`, so a
new histogram gets its mean/p95/p99 series without anyone remembering to add them. The committed
files under compose/prometheus/ are this package's output; a test keeps them equal. Running a
Prometheus process is infra's job (``cryptopipe.infra.prometheus``).

``config`` renders prometheus.yml, ``recording`` and ``alerts`` the two rule files, and ``api``
reads a running Prometheus back; :func:`write_config_dir` puts the three files in one directory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptopipe.observability.prometheus.alerts import BATCH_DURATION as BATCH_DURATION
from cryptopipe.observability.prometheus.alerts import STALL_METRIC as STALL_METRIC
from cryptopipe.observability.prometheus.alerts import AlertBounds as AlertBounds
from cryptopipe.observability.prometheus.alerts import alerting_rules as alerting_rules
from cryptopipe.observability.prometheus.api import PrometheusError as PrometheusError
from cryptopipe.observability.prometheus.api import all_rules_healthy as all_rules_healthy
from cryptopipe.observability.prometheus.api import api_get as api_get
from cryptopipe.observability.prometheus.api import instant_query as instant_query
from cryptopipe.observability.prometheus.api import target_health as target_health
from cryptopipe.observability.prometheus.config import COMPOSE_EXTRA_TARGETS as COMPOSE_EXTRA_TARGETS
from cryptopipe.observability.prometheus.config import COMPOSE_UNSCRAPED as COMPOSE_UNSCRAPED
from cryptopipe.observability.prometheus.config import DEFAULT_METRICS_PORTS as DEFAULT_METRICS_PORTS
from cryptopipe.observability.prometheus.config import RULE_FILES as RULE_FILES
from cryptopipe.observability.prometheus.config import compose_targets as compose_targets
from cryptopipe.observability.prometheus.config import duration as duration
from cryptopipe.observability.prometheus.config import render_config as render_config
from cryptopipe.observability.prometheus.config import render_rules as render_rules
from cryptopipe.observability.prometheus.recording import INFRASTRUCTURE_SERIES as INFRASTRUCTURE_SERIES
from cryptopipe.observability.prometheus.recording import LAG_SERIES as LAG_SERIES
from cryptopipe.observability.prometheus.recording import QUANTILES as QUANTILES
from cryptopipe.observability.prometheus.recording import WINDOW as WINDOW
from cryptopipe.observability.prometheus.recording import histogram_series as histogram_series
from cryptopipe.observability.prometheus.recording import rate_series as rate_series
from cryptopipe.observability.prometheus.recording import recording_rules as recording_rules


def write_config_dir(
    directory: Path,
    targets: Mapping[str, Sequence[str]],
    scrape_interval: str = "2s",
    bounds: AlertBounds | None = None,
) -> Path:
    """Write prometheus.yml plus rules/ into ``directory``; returns the config file's path."""
    (directory / "rules").mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    config.write_text(render_config(targets, scrape_interval), "utf-8")
    (directory / RULE_FILES[0]).write_text(render_rules(recording_rules()), "utf-8")
    (directory / RULE_FILES[1]).write_text(render_rules(alerting_rules(bounds)), "utf-8")
    return config
