"""Metrics of how far the clock offset can be believed: its interval and the parts of it, the
frequency drift, clock steps, and whether two references agree (sign: reference minus local)."""

from __future__ import annotations

from cryptopipe.observability.metrics.define import counter, gauge

CLOCK_OFFSET_INTERVAL = gauge(
    "cryptopipe_clock_offset_interval_seconds",
    "Ends of the reported offset interval (95 %): the offset minus (lower) and plus (upper) its uncertainty.",
    ("reference", "end"),
    "skew",
)
CLOCK_UNCERTAINTY_COMPONENT = gauge(
    "cryptopipe_clock_offset_uncertainty_component_seconds",
    "Parts of the offset uncertainty: statistical (the fit's 95 % spread), resolution (half a stamp "
    "tick), asymmetry (half the assumed path asymmetry, capped by the round trip), and "
    "round_trip_bound (the most any asymmetry can hide; not added).",
    ("reference", "component"),
    "skew",
)
CLOCK_DRIFT = gauge(
    "cryptopipe_clock_drift_ppm",
    "Estimated frequency drift of the reference clock against the local one, in parts per million.",
    ("reference",),
    "skew",
)
CLOCK_SAMPLES_IN_FIT = gauge(
    "cryptopipe_clock_samples_in_fit",
    "Exchanges the offset and drift are fitted over (the last SKEW_WINDOW intervals, trimmed).",
    ("reference",),
    "skew",
)
CLOCK_STEPS = counter(
    "cryptopipe_clock_steps",
    "Clock steps detected (two intervals in a row off the fitted line by the same amount).",
    ("reference",),
    "skew",
)
CLOCK_LAST_STEP = gauge(
    "cryptopipe_clock_last_step_seconds",
    "Size of the last clock step detected (reference minus local, after minus before).",
    ("reference",),
    "skew",
)
CLOCK_OUTLIER_INTERVALS = counter(
    "cryptopipe_clock_outlier_intervals",
    "Intervals dropped because they sat off the fitted line alone (no step followed).",
    ("reference",),
    "skew",
)
CLOCK_REFERENCE_DIFFERENCE = gauge(
    "cryptopipe_clock_reference_difference_seconds",
    "Offset against reference minus offset against other: what the two paths' asymmetries differ by.",
    ("reference", "other"),
    "skew",
)
CLOCK_REFERENCES_DISAGREE = gauge(
    "cryptopipe_clock_references_disagree",
    "1 while two references differ by more than their combined statistical uncertainty (an asymmetric path).",
    ("reference", "other"),
    "skew",
)
CLOCK_DISAGREEMENTS = counter(
    "cryptopipe_clock_disagreements",
    "Times two references started to disagree by more than their combined statistical uncertainty.",
    ("reference", "other"),
    "skew",
)
