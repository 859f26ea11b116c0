"""The comparison report reads like one: real tables, each run's details, readable charts, and
``experiment run``'s closing lines."""

from __future__ import annotations

import itertools
import json
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytest

from cryptopipe.dashboard.testing import ARTIFACTS
from cryptopipe.measure.experiment import read_result, write_result
from cryptopipe.measure.experiment.charts import CHARTS, figure_latency, figure_over_time, log_ticks
from cryptopipe.measure.experiment.compare import compare
from cryptopipe.measure.experiment.details import headline
from cryptopipe.measure.experiment.run import PROGRESS, java_version
from cryptopipe.measure.experiment.summarize import summarize
from cryptopipe.runtime.jvm import JavaRuntime

from .test_measure_experiment_result import _write


class Elements(HTMLParser):
    """Tags and text of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture
def report(tmp_path: Path) -> Path:
    dirs = [_write(tmp_path / n, n, ms, i) for i, (n, ms) in enumerate((("tokyo", 180.0), ("local5", 5.0)))]
    compare(dirs, tmp_path / "report")
    return tmp_path / "report"


def test_the_page_has_tables_not_markdown(report: Path) -> None:
    page = Elements((report / "index.html").read_text())
    text = " ".join(page.text)
    assert "pre" not in page.tags
    assert page.tags.count("table") == 3  # ranking, differences, run details
    assert "**" not in text
    assert "|" not in text
    assert "local5" in text
    assert "real" in text  # the verdict of 175 ms


def test_the_page_gives_each_runs_details(report: Path) -> None:
    text = " ".join(Elements((report / "index.html").read_text()).text)
    for detail in (
        "Run details",
        "2026-01-01 00:00:00 UTC",
        "2026-01-01 00:00:05 UTC",
        "5 s",
        "300 received, 300 published, 300 written, 0 lost",
        "books balance: 300 trades received",
        "host-local5 (2 CPUs)",
        "env=tokyo",
        "java 17.0.13 (broker: /usr/bin/java)",
        "replay, +180 ms network delay",
    ):
        assert detail in text, detail
    assert "## Run details" in (report / "summary.md").read_text()


def test_the_page_says_the_bars_are_side_by_side_and_do_not_add(report: Path) -> None:
    text = (report / "index.html").read_text()
    assert '<img src="latency_parts.png"' in text
    assert "Percentiles do not add" in text


def _boxes(figure: Any) -> tuple[list[Any], list[Any], list[Any]]:
    """After drawing: every axis' window box, every legend's, and every visible tick label's per axis."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    axes = [axis.get_window_extent(renderer) for axis in figure.axes]
    legends = [legend.get_window_extent(renderer) for legend in figure.legends]
    legends += [a.get_legend().get_window_extent(renderer) for a in figure.axes if a.get_legend()]
    ticks = [
        [t.get_window_extent(renderer) for t in axis.get_xticklabels() if t.get_visible() and t.get_text()]
        for axis in figure.axes
    ]
    return axes, legends, ticks


def _results(tmp_path: Path) -> list[Any]:
    """Two runs whose latencies sit in a narrow range (1.5 to 4 ms) and with no Kafka lag at all."""
    out = []
    for i, name in enumerate(("a-rather-long-environment-name", "b")):
        rng = np.random.default_rng(i)
        samples = [
            {"metric": kind, "symbol": "x", "trade_id": j, "trade_time_us": j, "value_ms": float(v)}
            for kind in ("network_corrected", "system", "e2e")
            for j, v in enumerate(rng.uniform(1.5, 4.0, 200))
        ]
        metrics = [
            {"time_s": float(t), "service": "c", "metric": metric, "labels": "{}", "value": value}
            for t in range(10)
            for metric, value in (
                ("cryptopipe_consumer_lag", 0.0),
                ("cryptopipe_consumer_messages_total", 20.0 * t),
            )
        ]
        meta = {
            "name": name,
            "labels": {},
            "start_utc": "2026-01-01T00:00:00",
            "end_utc": "2026-01-01T00:00:10",
        }
        tables = {"samples": samples, "metrics": metrics, "summary": summarize(metrics, samples)}
        out.append(read_result(write_result(tmp_path / name, meta, tables)))
    return out


@pytest.mark.parametrize("stem", sorted(CHARTS))
def test_no_legend_over_the_data_and_no_tick_labels_over_each_other(tmp_path: Path, stem: str) -> None:
    figure = CHARTS[stem][0](_results(tmp_path))
    axes, legends, ticks = _boxes(figure)
    for legend, axis in itertools.product(legends, axes):
        assert not legend.overlaps(axis), f"{stem}: a legend covers a panel"
    for labels in ticks:
        for one, other in itertools.combinations(labels, 2):
            assert not one.overlaps(other), f"{stem}: tick labels overlap"
    plt.close(figure)


def test_an_all_zero_lag_panel_says_no_lag(tmp_path: Path) -> None:
    figure = figure_over_time(_results(tmp_path))
    lag_panel = figure.axes[1]
    assert [t.get_text() for t in lag_panel.texts] == ["no lag: 0 messages behind throughout, in every run"]
    assert list(lag_panel.get_yticks()) == []
    plt.close(figure)


def test_latency_bars_stand_side_by_side(tmp_path: Path) -> None:
    figure = figure_latency(_results(tmp_path))
    for axis in figure.axes:
        bars = axis.patches
        assert bars
        assert all(bar.get_y() == 0 for bar in bars)  # none stacked on another
        spans = sorted((bar.get_x(), bar.get_x() + bar.get_width()) for bar in bars)
        assert all(left[1] <= right[0] + 1e-9 for left, right in itertools.pairwise(spans))
    plt.close(figure)


@pytest.mark.parametrize(("low", "high"), [(1.5, 4.0), (0.02, 5000.0), (130.0, 131.0), (3.0, 3.0)])
def test_log_ticks_are_few_plain_and_inside(low: float, high: float) -> None:
    ticks = log_ticks(low, high)
    assert (2 if high > low else 1) <= len(ticks) <= 7
    assert all(low * 0.95 <= t <= high * 1.05 for t in ticks)


def test_experiment_run_ends_with_the_headline_figures_and_the_books(tmp_path: Path) -> None:
    result = read_result(_write(tmp_path / "local5", "local5", 5.0, 1))
    lines = headline(result.metadata, result.stat)
    assert lines[0] == (
        "local5: measured 5 s, 2026-01-01 00:00:00 UTC to 2026-01-01 00:00:05 UTC; source replay, "
        "+5 ms network delay"
    )
    assert lines[1] == "trades: 300 received, 300 published, 300 written, 0 lost"
    system = next(line for line in lines if line.startswith("system latency"))
    assert system.endswith("ms over 300 trades")
    assert lines[-1].startswith("books: books balance: 300 trades received")


def test_the_progress_bar_counts_seconds_measured_not_a_rate() -> None:
    from tqdm import tqdm

    assert "rate" not in PROGRESS
    assert tqdm.format_meter(3, 10, 3.1, bar_format=PROGRESS, prefix="experiment x").endswith(
        "3 of 10 s measured"
    )


def test_java_is_the_brokers_when_the_run_started_one(tmp_path: Path) -> None:
    runtime = JavaRuntime("/usr/lib/jvm/17/bin/java", "17.0.13", 17, tmp_path)
    with_broker = SimpleNamespace(kafka=SimpleNamespace(server=SimpleNamespace(java=runtime)), java=None)
    assert java_version(with_broker) == "17.0.13 (broker: /usr/lib/jvm/17/bin/java)"  # type: ignore[arg-type]
    configured = SimpleNamespace(kafka=SimpleNamespace(server=None), java=None)
    assert java_version(configured) is None  # type: ignore[arg-type]
    json.dumps(java_version(with_broker))  # type: ignore[arg-type]


#: Per table: whether its content is wider than its box; per image: whether it loaded.
_PAGE_JS = """
() => ({
  tables: Array.from(document.querySelectorAll('table')).map(t => t.rows.length),
  wide: Array.from(document.querySelectorAll('table, figure')).filter(
    el => el.getBoundingClientRect().right > document.body.getBoundingClientRect().right + 1).length,
  images: Array.from(document.images).map(i => i.complete && i.naturalWidth > 0),
  pre: document.querySelectorAll('pre').length,
})
"""


@pytest.mark.slow
def test_the_report_in_a_real_browser(report: Path, page: Any) -> None:
    page.goto(f"file://{report / 'index.html'}")
    page.wait_for_load_state("load")
    seen = page.evaluate(_PAGE_JS)
    assert seen["pre"] == 0
    assert seen["tables"] == [3, 3, 12]  # header + 2 runs, header + 2 differences, header + 11 details
    assert seen["wide"] == 0, "a table or chart runs past the page"
    assert seen["images"] == [True] * len(CHARTS)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "experiment-report.png"), full_page=True)
