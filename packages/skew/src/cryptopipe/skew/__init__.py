"""Clock-skew estimation against Binance and NTP.

Sign convention (NTP's): ``offset = reference clock - local clock``; skew-corrected network
latency = ``(receive_local - event_time_reference) + offset``. See :mod:`cryptopipe.skew.estimator`.
"""

from cryptopipe.skew.errors import ReferenceUnavailable, SkewError
from cryptopipe.skew.estimate import Estimate, Sample, best_sample, estimate_from_samples, smooth
from cryptopipe.skew.estimator import SkewEstimator, measure_once
from cryptopipe.skew.references import BinanceTimeReference, NtpReference, TimeReference

__all__ = [
    "BinanceTimeReference",
    "Estimate",
    "NtpReference",
    "ReferenceUnavailable",
    "Sample",
    "SkewError",
    "SkewEstimator",
    "TimeReference",
    "best_sample",
    "estimate_from_samples",
    "measure_once",
    "smooth",
]
