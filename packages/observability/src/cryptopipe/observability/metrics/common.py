"""Metrics every service exports: which build runs, its errors, its dead letters and its symbol labels."""

from __future__ import annotations

from cryptopipe.observability.metrics.define import counter, gauge

BUILD_INFO = gauge(
    "cryptopipe_build_info",
    "Always 1; labels say which component and version runs.",
    ("component", "version"),
    "all",
)
ERRORS = counter(
    "cryptopipe_errors",
    "Errors by component and reason (each also logged).",
    ("component", "reason"),
    "all",
)
DEAD_LETTERS = counter(
    "cryptopipe_dead_letters",
    "Messages that could not be processed and were sent to the dead-letter topic, by reason.",
    ("component", "reason"),
    "all",
)
METRICS_SYMBOLS = gauge(
    "cryptopipe_metrics_symbols",
    "Distinct symbols this process has put in a symbol label: state=labelled have series of their own, "
    'state=folded (every one after the first METRICS_SYMBOL_LIMIT) share symbol="other".',
    ("component", "state"),
    "all",
)
