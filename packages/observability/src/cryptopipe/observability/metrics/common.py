"""Metrics every service exports: which build runs, its errors and its dead letters."""

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
