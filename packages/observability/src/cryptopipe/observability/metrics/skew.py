"""Metrics of the clock offset against Binance / NTP (sign: reference clock minus local clock).

The skew-corrected network latency is ingest's, but it exists only because of the offset.
"""

from __future__ import annotations

from cryptopipe.observability.metrics.define import gauge, histogram

CLOCK_OFFSET = gauge(
    "cryptopipe_clock_offset_seconds",
    "Estimated reference clock minus local clock (NTP's sign), from the line fitted over the recent "
    "intervals.",
    ("reference",),
    "skew",
)
CLOCK_OFFSET_UNCERTAINTY = gauge(
    "cryptopipe_clock_offset_uncertainty_seconds",
    "Half-width of the reported offset interval (95 %): statistical + resolution + asymmetry parts.",
    ("reference",),
    "skew",
)
CLOCK_RTT = gauge(
    "cryptopipe_clock_rtt_seconds",
    "Shortest round trip of the last interval (the sample nearest the truth whatever the asymmetry).",
    ("reference",),
    "skew",
)
CLOCK_ESTIMATE_AGE = gauge(
    "cryptopipe_clock_estimate_age_seconds",
    "Seconds since the last good estimate (since start while there is none).",
    ("reference",),
    "skew",
)
CLOCK_ESTIMATE_STALE = gauge(
    "cryptopipe_clock_estimate_stale",
    "1 while the last attempt failed or the estimate is too old (the last good one stays in use), else 0.",
    ("reference",),
    "skew",
)
API_RESPONSE = histogram(
    "cryptopipe_api_response_seconds",
    "Exchange REST response time (request sent to body read), by endpoint.",
    ("endpoint",),
    "skew",
)
NETWORK_LATENCY_CORRECTED = histogram(
    "cryptopipe_network_latency_corrected_seconds",
    "Receive time minus exchange trade time plus the estimated clock offset (skew-corrected).",
    ("symbol",),
    "ingest",
)
