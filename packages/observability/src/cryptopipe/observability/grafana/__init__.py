"""Grafana dashboards and provisioning, generated from panel specs so PromQL is written once.

The committed JSON under compose/grafana/ is this package's output (a test keeps it equal), and
another test checks that every metric a panel queries exists in the catalogue. Panels read the
recorded series of :mod:`cryptopipe.observability.prometheus` where one exists, so a dashboard
shows exactly what the alerting rules and the summaries compute.

One module per dashboard (``prices``, ``alerts``, ``infrastructure``, ``clock``, ``books``) builds
it from the vocabulary in ``panels``; ``render`` turns it into Grafana's JSON.
"""

from __future__ import annotations

from cryptopipe.observability.grafana.alerts import ALERTS as ALERTS
from cryptopipe.observability.grafana.books import BOOKS as BOOKS
from cryptopipe.observability.grafana.clock import CLOCK as CLOCK
from cryptopipe.observability.grafana.infrastructure import INFRASTRUCTURE as INFRASTRUCTURE
from cryptopipe.observability.grafana.panels import Dashboard as Dashboard
from cryptopipe.observability.grafana.panels import Panel as Panel
from cryptopipe.observability.grafana.panels import Query as Query
from cryptopipe.observability.grafana.panels import Row as Row
from cryptopipe.observability.grafana.panels import latency as latency
from cryptopipe.observability.grafana.panels import single as single
from cryptopipe.observability.grafana.prices import PRICES as PRICES
from cryptopipe.observability.grafana.render import DASHBOARDS_PATH as DASHBOARDS_PATH
from cryptopipe.observability.grafana.render import DATASOURCE_UID as DATASOURCE_UID
from cryptopipe.observability.grafana.render import dashboard_json as dashboard_json
from cryptopipe.observability.grafana.render import dashboard_provisioning as dashboard_provisioning
from cryptopipe.observability.grafana.render import datasource_provisioning as datasource_provisioning
from cryptopipe.observability.grafana.render import expressions as expressions
from cryptopipe.observability.grafana.render import render_dashboard as render_dashboard

DASHBOARDS: dict[str, Dashboard] = {
    "prices": PRICES,
    "alerts": ALERTS,
    "infrastructure": INFRASTRUCTURE,
    "clock": CLOCK,
    "books": BOOKS,
}
