"""Dashboards and rules cannot drift from the code: committed = generated, and every name exists."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from cryptopipe.observability import Scrape, drift, grafana
from cryptopipe.observability.generate import generated_files, main, stale_files

REPO = Path(__file__).resolve().parents[3]
REGENERATE = "uv run python -m cryptopipe.observability.generate"


def committed_files() -> dict[str, str]:
    return {
        relative: (REPO / relative).read_text("utf-8")
        for relative in generated_files()
        if (REPO / relative).exists()
    }


def test_committed_files_are_the_generated_ones() -> None:
    assert stale_files(REPO) == [], f"generated files are stale; run: {REGENERATE}"
    assert main(["--root", str(REPO), "--check"]) == 0


def test_generator_writes_what_check_accepts(tmp_path: Path) -> None:
    assert main(["--root", str(tmp_path), "--check"]) == 1
    assert main(["--root", str(tmp_path)]) == 0
    assert stale_files(tmp_path) == []


def test_every_queried_metric_is_in_the_catalogue() -> None:
    files = committed_files()
    assert len(files) == len(generated_files())
    resolution = drift.check_files(files)
    assert resolution.problems == []
    assert set(resolution.external) <= set(drift.EXTERNAL_METRICS)
    # Each dashboard reads something of ours; the check is not vacuous.
    rules = {path: text for path, text in files.items() if "/rules/" in path}
    for name in grafana.DASHBOARDS:
        path = f"compose/grafana/dashboards/{name}.json"
        assert drift.queried_metrics({path: files[path], **rules}, dashboards_only=True), name


def test_the_prices_dashboard_shows_stalls_and_recoveries() -> None:
    panels = {panel.title: panel for row in grafana.PRICES.rows for panel in row.panels}
    clock = panels["Consumer stalled for"]
    assert clock.unit == "s"
    assert [q.expr for q in clock.queries] == [
        "max by (consumer) (cryptopipe_consumer_seconds_since_progress)"
    ]
    (counts,) = [p for title, p in panels.items() if title.startswith("Consumer stalls and recoveries")]
    names = set().union(*(drift.metric_names(q.expr) for q in counts.queries))
    assert names == {"cryptopipe_consumer_stalls_total", "cryptopipe_consumer_stall_recoveries_total"}


def test_drift_is_reported() -> None:
    files = {
        "x/rules/r.yml": yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "g",
                        "rules": [{"record": "all:thing:rate1m", "expr": "rate(cryptopipe_nope_total[1m])"}],
                    }
                ]
            }
        ),
        "x/dashboards/d.json": json.dumps(
            {
                "panels": [
                    {
                        "title": "p",
                        "targets": [
                            {"expr": "all:thing:rate1m + all:missing:rate1m"},
                            {"expr": "cryptopipe_e2e_latency_seconds"},
                        ],
                    }
                ]
            }
        ),
    }
    problems = "\n".join(drift.check_files(files).problems)
    assert "cryptopipe_nope_total is not in the metrics catalogue" in problems
    assert "all:missing:rate1m is not defined" in problems
    assert "cryptopipe_e2e_latency_seconds is a histogram: query it with _bucket/_sum/_count" in problems


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le, symbol) (rate(cryptopipe_x_bucket{symbol="btcusdt"}[1m]))', {"cryptopipe_x_bucket"}),
        ("histogram_quantile(0.99, sum(rate(a_bucket[5m])) by (le))", {"a_bucket"}),
        ('label_replace(rate(container_memory_rss{container_label_x!=""}[1m]), "c", "$1", "l", "(.+)")',
         {"container_memory_rss"}),
        ("a:b:rate1m / on (symbol) group_left (x) c offset 5m > bool 1e3", {"a:b:rate1m", "c"}),
        ("(sum(increase(t_total[60s])) or vector(0)) == 0 and up", {"t_total", "up"}),
    ],
)  # fmt: skip
def test_metric_names_ignores_labels_functions_and_strings(expr: str, names: set[str]) -> None:
    assert drift.metric_names(expr) == names


def test_dashboards_are_well_formed() -> None:
    uids = set()
    for dashboard in grafana.DASHBOARDS.values():
        model = grafana.dashboard_json(dashboard)
        uids.add(model["uid"])
        ids = [panel["id"] for panel in model["panels"]]
        assert len(ids) == len(set(ids))
        for panel in model["panels"]:
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": "prometheus", "uid": grafana.DATASOURCE_UID}
                assert panel["targets"], panel["title"]
    assert len(uids) == len(grafana.DASHBOARDS)
    datasource = grafana.datasource_provisioning()["datasources"][0]
    assert (datasource["uid"], datasource["url"]) == ("prometheus", "http://prometheus:9090")
    provider = grafana.dashboard_provisioning()["providers"][0]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == grafana.DASHBOARDS_PATH


@pytest.fixture
def live_registry() -> Iterator[str]:
    registry = CollectorRegistry()
    Histogram("cryptopipe_e2e_latency_seconds", "e2e", ("symbol",), registry=registry).labels(
        "btcusdt"
    ).observe(0.01)
    Counter("cryptopipe_prices_written", "written", ("symbol",), registry=registry).labels("btcusdt").inc()
    Gauge(
        "cryptopipe_consumer_lag", "lag", ("consumer", "topic", "partition"), registry=registry
    )  # no label set yet
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_assert_exported_against_a_live_endpoint(live_registry: str) -> None:
    scrape = Scrape.from_urls(live_registry)
    drift.assert_exported(scrape, ["cryptopipe_e2e_latency_seconds", "cryptopipe_prices_written"])
    drift.assert_exported(
        scrape, ["cryptopipe_e2e_latency_seconds_bucket", "cryptopipe_prices_written_total"]
    )
    with pytest.raises(AssertionError, match=r"cryptopipe_consumer_lag\b.*initialise"):
        drift.assert_exported(scrape, ["cryptopipe_prices_written", "cryptopipe_consumer_lag"])


def test_queried_metrics_are_exposed_names() -> None:
    names = drift.queried_metrics()
    exposed = drift.exposed_names()
    assert names <= set(exposed)
    assert "cryptopipe_e2e_latency_seconds_bucket" in names
    assert "cryptopipe_process_cpu_seconds_total" in names
    assert drift.queried_metrics(dashboards_only=True) <= names
