"""The page's pipeline-health section: latency table, tiles that fit their figures, consumers, and
what runs (figures from :func:`cryptopipe.dashboard.data.load_health`)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cryptopipe.dashboard import data
from cryptopipe.dashboard.fmt import fmt_ms
from cryptopipe.dashboard.settings import DashboardSettings

TILES_PER_ROW = 3


def show_problem(problem: data.Problem) -> None:
    st.error(problem.message(), icon="⚠️")


def reference_name(reference: str, settings: DashboardSettings) -> str:
    """The clock a skew is measured against: ingest labels the exchange ``binance`` whichever it is."""
    if reference == "binance" and settings.source == "replay":
        return "replay exchange"
    return reference


def tiles(health: data.Health, settings: DashboardSettings) -> list[tuple[str, str]]:
    """The health tiles, (label, value), each short enough to show whole."""
    spark = health.spark_batch_ms
    out = [
        ("Throughput (prices)", "n/a" if health.throughput is None else f"{health.throughput:,.0f} msg/s"),
        ("Kafka lag", "n/a" if health.lag is None else f"{health.lag:,.0f} records"),
        ("Spark query lag", "n/a" if health.spark_lag is None else f"{health.spark_lag:,.0f} records"),
        ("Spark micro-batch p50", fmt_ms(spark.get("p50"))),
        ("Spark micro-batch p95", fmt_ms(spark.get("p95"))),
    ]
    offsets = sorted(health.clock_offset_ms.items())
    out += [
        (f"Clock skew ({reference_name(ref, settings)} - local)", f"{ms:+,.1f} ms") for ref, ms in offsets
    ]
    if not offsets:
        out.append(("Clock skew (exchange - local)", "n/a"))
    return out


def _latency_table(health: data.Health) -> pd.DataFrame:
    return pd.DataFrame(
        {
            label: [fmt_ms(values.get(p)) for p, _ in data.PERCENTILES]
            for label, values in health.latency_ms.items()
        },
        index=[p for p, _ in data.PERCENTILES],
    ).T


def _runs_on(runtime: dict[str, str]) -> str:
    if not runtime:
        return "**Runs on** — not reported (CRYPTOPIPE_RUNTIME_INFO is set by `cryptopipe up`)."
    order: list[str] = [name for name in ("broker", "redis", "spark") if name in runtime]
    order += [name for name in runtime if name not in order]
    return "**Runs on** — " + " · ".join(f"{name}: `{runtime[name]}`" for name in order)


def health_section(settings: DashboardSettings) -> None:
    health = data.load_health(
        prometheus_url=settings.prometheus_url,
        metrics_urls=settings.metrics_urls,
        window=settings.prometheus_window,
        timeout=settings.metrics_timeout_seconds,
        runtime=settings.runtime_info,
    )
    for problem in health.problems:
        show_problem(problem)
    st.caption(f"Source: {health.source}")
    shown = tiles(health, settings)
    for start in range(0, len(shown), TILES_PER_ROW):
        for column, (label, value) in zip(
            st.columns(TILES_PER_ROW), shown[start : start + TILES_PER_ROW], strict=False
        ):
            column.metric(label, value)
    left, right = st.columns([3, 2])
    with left:
        st.table(_latency_table(health))
        st.caption(
            "E2E: exchange trade time to Redis · System: local receive to Redis · Network: exchange trade "
            "time to local receive · Alert: triggering trade received to alert in Redis. Clock skew: the "
            "exchange's clock minus this machine's, as ingest estimates it."
        )
    with right:
        for consumer in health.stalled:
            st.warning(consumer.warning(), icon="⏸️")
        if health.consumers:
            st.markdown(
                "**Consumers** — " + " · ".join(f"{c.consumer}: {c.status()}" for c in health.consumers)
            )
        st.markdown(_runs_on(health.runtime))
        if health.memory_mb:
            st.markdown("**Memory per process** (resident, MB; a process with its children)")
            st.bar_chart(memory_frame(health.memory_mb), x="process", y="MB", horizontal=True, height=220)


def memory_frame(memory_mb: dict[str, float]) -> pd.DataFrame:
    """The memory chart's rows, largest first."""
    return pd.DataFrame({"process": list(memory_mb), "MB": list(memory_mb.values())})
