"""The comparison report's ``index.html``: real tables (ranking, differences, run details) and
the charts with what each shows. No Markdown: ``summary.md`` is the Markdown copy."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptopipe.measure.experiment.charts import CHARTS
from cryptopipe.measure.experiment.details import run_details
from cryptopipe.measure.experiment.result import Result

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:0.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:0.3rem 0.6rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.real{color:#b00020;font-weight:600}
figure{margin:1.5rem 0}
img{max-width:100%}
figcaption{color:#555}
"""


def table(head: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    """An HTML table; the cells of the ``numeric`` columns are right-aligned. Cells are escaped
    unless they are :class:`Markup`."""
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = []
    for row in rows:
        tds = "".join(
            f"<td{' class=num' if i in numeric else ''}>{_cell(value)}</td>" for i, value in enumerate(row)
        )
        body.append(f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class Markup(str):
    """Cell content that is HTML already."""


def _cell(value: Any) -> str:
    return value if isinstance(value, Markup) else html.escape(str(value))


def _ms(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if sign else f"{value:.1f}"


def ranking_table(data: dict[str, Any]) -> str:
    rows = []
    for i, name in enumerate(data["ranking"], 1):
        env = data["environments"][name]
        rows.append(
            [
                i,
                name,
                _ms(env["e2e_mean_ms"]),
                *(
                    _ms(env[f"{k}_{s}"])
                    for k in ("network_corrected", "system")
                    for s in ("p50_ms", "p95_ms", "p99_ms")
                ),
            ]
        )
    head = ["rank", "environment", "E2E mean (ms)"]
    head += [f"{k} {s} (ms)" for k in ("network corrected", "system") for s in ("p50", "p95", "p99")]
    return table(head, rows, numeric=range(2, 9))


def differences_table(data: dict[str, Any]) -> str:
    rows = []
    for d in data["differences"]:
        low, high = d["ci95_ms"]
        wide_low, wide_high = d["ci95_with_clock_ms"]
        word = html.escape(d["verdict"])
        verdict = Markup(f'<span class="real">{word}</span>') if d["real"] else word
        interval, widened = f"[{low:+.2f}, {high:+.2f}]", f"[{wide_low:+.2f}, {wide_high:+.2f}]"
        rows.append([d["name"], d["metric"], _ms(d["estimate_ms"], True), interval, widened, verdict])
    head = ["environment", "latency", "difference (ms)", "95% CI (ms)", "with the clock's error bar (ms)"]
    return table([*head, "verdict"], rows, numeric=(2, 3, 4))


def details_table(results: Sequence[Result]) -> str:
    rows = [[label, *cells] for label, cells in run_details(results)]
    return table(["", *(r.name for r in results)], rows)


def figures(charts: Sequence[str]) -> str:
    out = []
    for stem, (_, caption) in CHARTS.items():
        if f"{stem}.png" not in charts:
            continue
        out.append(
            f'<figure><img src="{stem}.png" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)} '
            f'<a href="{stem}.svg">SVG</a></figcaption></figure>'
        )
    return "\n".join(out)


def write_html(out: Path, data: dict[str, Any], ranked: Sequence[Result], charts: Sequence[str]) -> None:
    baseline = html.escape(data["baseline"])
    without = [n for n in data["ranking"] if not data["environments"][n]["raw_samples"]]
    note = ""
    if without:
        names = html.escape(", ".join(without))
        note = f"<p>Without raw samples (figures from histograms, no intervals): {names}</p>"
    body = [
        "<h1>Environment comparison</h1>",
        f"<p>{len(ranked)} environments, ranked by mean end-to-end latency (exchange trade time to "
        "Redis).</p>",
        ranking_table(data),
        note,
        f"<h2>Differences against the fastest, <strong>{baseline}</strong></h2>",
        "<p>Median difference per trade, with a bootstrap 95% confidence interval. A skew-corrected "
        "network latency also carries both runs' clock-offset error bars (95 %), which widen its "
        "interval: <em>real</em> when the widened interval excludes 0, otherwise noise.</p>",
        differences_table(data) if data["differences"] else "<p>No run with raw samples to compare.</p>",
        "<h2>Run details</h2>",
        details_table(ranked),
        "<h2>Charts</h2>",
        figures(charts),
    ]
    (out / "index.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>cryptopipe experiment report</title>"
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
