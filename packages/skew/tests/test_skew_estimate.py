"""The estimator's arithmetic, on synthetic exchanges with known offsets and path delays."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptopipe.skew import Estimate, Sample, best_sample, estimate_from_samples, smooth

NS_PER_MS = 1_000_000
T0 = 1_723_100_000_000_000_000  # 2024-08-08, ns

offsets = st.integers(-60_000 * NS_PER_MS, 60_000 * NS_PER_MS)
one_way = st.integers(0, 2_000 * NS_PER_MS)
holding = st.integers(0, 50 * NS_PER_MS)


def exchange(t0: int, offset: int, out: int, back: int, hold: int, resolution: int = 0) -> Sample:
    """A request out ``out`` ns, held ``hold`` ns by a reference ``offset`` ns ahead, back ``back`` ns."""
    t1 = t0 + out + offset
    t2 = t1 + hold
    t3 = t2 - offset + back
    return Sample(t0, t1, t2, t3, resolution_ns=resolution)


def binance_like(t0: int, offset: int, out: int, back: int, resolution: int) -> Sample:
    """One truncated stamp used as both t1 and t2, read as the middle of its tick (as the client does)."""
    server = t0 + out + offset
    stamp = server // resolution * resolution + resolution // 2
    return Sample(t0, stamp, stamp, t0 + out + back, resolution_ns=resolution)


@given(offset=offsets, d0=one_way, hold=holding, data=st.data())
def test_min_delay_sample_with_symmetric_path_recovers_the_offset_exactly(
    offset: int, d0: int, hold: int, data: st.DataObject
) -> None:
    samples = [exchange(T0, offset, d0, d0, hold)]
    for i in range(data.draw(st.integers(0, 10), label="others")):
        total = 2 * d0 + data.draw(st.integers(1, 3_000 * NS_PER_MS), label="extra")
        out = data.draw(st.integers(0, total), label="out")
        samples.append(exchange(T0 + (i + 1) * 10**8, offset, out, total - out, hold))
    order = data.draw(st.permutations(samples), label="order")

    estimate = estimate_from_samples(order, "test", T0 // 1000)

    assert best_sample(order) == samples[0]
    assert estimate.offset_ms * NS_PER_MS == pytest.approx(offset, abs=1)
    assert estimate.rtt_ms * NS_PER_MS == pytest.approx(2 * d0, abs=1)
    assert estimate.uncertainty_ms == pytest.approx(estimate.rtt_ms / 2)
    assert estimate.samples == len(samples)


@given(offset=offsets, out=one_way, back=one_way, hold=holding)
def test_asymmetric_path_error_is_half_the_asymmetry_and_within_the_uncertainty(
    offset: int, out: int, back: int, hold: int
) -> None:
    sample = exchange(T0, offset, out, back, hold)

    error = Fraction(int(sample.offset_ns * 2) - 2 * offset, 2)

    assert error == Fraction(out - back, 2)  # no two-way method can tell this apart from an offset
    assert abs(error) <= Fraction(sample.delay_ns, 2) == Fraction(out + back, 2)


@given(
    offset=offsets,
    out=one_way,
    back=one_way,
    resolution=st.sampled_from([1_000, NS_PER_MS]),
    t0=st.integers(T0, T0 + 10**12),
)
def test_true_offset_lies_within_the_reported_uncertainty_for_truncated_stamps(
    offset: int, out: int, back: int, resolution: int, t0: int
) -> None:
    sample = binance_like(t0, offset, out, back, resolution)
    estimate = estimate_from_samples([sample], "binance", t0 // 1000)

    assert abs(estimate.offset_ms * NS_PER_MS - offset) <= estimate.uncertainty_ms * NS_PER_MS + 1e-3


@given(
    good=st.lists(st.floats(-1000, 1000, allow_nan=False), min_size=3, max_size=9),
    outlier=st.floats(-1e6, 1e6, allow_nan=False),
)
def test_one_outlier_interval_cannot_push_the_median_outside_the_good_ones(
    good: list[float], outlier: float
) -> None:
    window = [Estimate(v, 1.0, 2.0, "x", 8, i) for i, v in enumerate([*good, outlier])]

    chosen = smooth(window)

    assert min(good) <= chosen.offset_ms <= max(good)
    assert chosen.offset_ms in [*good, outlier]  # a real estimate, with its own uncertainty and round trip
    assert chosen.taken_at_us == len(good)
    assert chosen.samples == 8 * (len(good) + 1)


def test_corrected_latency_adds_the_offset_to_the_raw_figure() -> None:
    # Exchange clock 250 ms ahead; a trade stamped at send, on the wire 40 ms.
    estimate = Estimate(250.0, 0.1, 0.2, "binance", 8, 0)
    sent_local_us = T0 // 1000
    trade_time_us = sent_local_us + 250_000
    receive_us = sent_local_us + 40_000

    assert receive_us - trade_time_us == -210_000  # raw: off by the offset
    assert estimate.corrected_latency_us(receive_us, trade_time_us) == 40_000


def test_no_samples_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        estimate_from_samples([], "x", 0)
    with pytest.raises(ValueError, match="nothing"):
        smooth([])
