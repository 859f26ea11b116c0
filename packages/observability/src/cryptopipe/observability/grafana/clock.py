"""The clock offset against the exchange and NTP, and what it does to the network latency."""

from __future__ import annotations

from cryptopipe.observability.grafana.panels import (
    NETWORK,
    NETWORK_CORRECTED,
    Dashboard,
    Panel,
    Query,
    Row,
    latency,
    single,
)
from cryptopipe.observability.prometheus import histogram_series

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
