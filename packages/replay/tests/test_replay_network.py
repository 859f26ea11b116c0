"""The replay exchange's network conditions, each on its own: seeded draws, no wall-clock timing."""

from __future__ import annotations

import random
from collections.abc import Callable
from statistics import NormalDist

import pytest

from cryptopipe.replay.network import Delay, NetworkConditions, Sampler, ServerClock

N = 20_000


def _draws(delay: Delay, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return sorted(delay.draw_ms(rng) for _ in range(N))


def _ks(draws: list[float], cdf: Callable[[float], float]) -> float:
    """Kolmogorov-Smirnov distance of sorted draws from ``cdf``, over the draws above 0."""
    return max(max(abs((i + 1) / N - cdf(x)), abs(i / N - cdf(x))) for i, x in enumerate(draws) if x > 0)


def test_normal_jitter_follows_the_normal_distribution() -> None:
    draws = _draws(Delay(40.0, 20.0, "normal"))
    normal = NormalDist(40.0, 20.0)

    # The draw is cut at 0: the 2.3 % below it sit at 0, the rest follow the normal.
    assert _ks(draws, normal.cdf) < 1.36 / N**0.5 * 1.5  # KS at 5 %, with room
    assert min(draws) == 0.0
    assert draws.count(0.0) / N == pytest.approx(normal.cdf(0.0), abs=0.005)
    z = 40.0 / 20.0
    cut_mean = 40.0 * NormalDist().cdf(z) + 20.0 * NormalDist().pdf(z)  # E[max(0, X)]
    assert sum(draws) / N == pytest.approx(cut_mean, abs=0.6)


def test_pareto_jitter_has_the_floor_the_mean_and_the_heavy_tail() -> None:
    delay = Delay(40.0, 20.0, "pareto")
    draws = _draws(delay)
    shape, scale = 2.0, 20.0  # Lomax: scale = (shape - 1) * mean excess

    def cdf(x: float) -> float:
        return 0.0 if x < 40.0 else 1.0 - (1.0 + (x - 40.0) / scale) ** -shape

    assert _ks(draws, cdf) < 1.36 / N**0.5 * 1.5
    assert min(draws) >= 40.0
    for q in (0.5, 0.9, 0.99):
        assert draws[int(q * N)] == pytest.approx(delay.quantile_ms(q), rel=0.1)
    # heavy: the 99.9th percentile is far beyond a normal's with the same mean excess
    assert draws[int(0.999 * N)] > 40.0 + 10 * 20.0


def test_no_jitter_is_the_fixed_delay() -> None:
    assert set(_draws(Delay(40.0))) == {40.0}


def test_each_direction_has_its_own_delay() -> None:
    net = NetworkConditions.build(40.0, 2.0, rest_request_ms=45.0, rest_response_ms=35.0, ws_ms=10.0)
    sampler = Sampler(net, seed=1)

    requests = [sampler.rest_request_s() * 1000 for _ in range(2000)]
    responses = [sampler.rest_response_s() * 1000 for _ in range(2000)]

    assert sum(requests) / 2000 == pytest.approx(45.0, abs=0.3)
    assert sum(responses) / 2000 == pytest.approx(35.0, abs=0.3)
    assert net.ws == Delay(10.0, 2.0)
    assert NetworkConditions.build(40.0).rest_request == Delay(40.0)
    assert not NetworkConditions().active


def test_ws_frames_keep_their_order_whatever_the_jitter() -> None:
    sampler = Sampler(NetworkConditions.build(40.0, 30.0, "pareto"), seed=3)

    dues = [sampler.ws_due(i * 0.001) for i in range(5000)]

    assert dues == sorted(dues)
    assert all(due >= i * 0.001 + 0.040 for i, due in enumerate(dues))  # never before the floor


def test_a_drifting_clock_gains_ppm_times_elapsed() -> None:
    start = 1_723_100_000 * 10**9
    clock = ServerClock(offset_ms=250.0, drift_ppm=50.0, start_ns=start)

    assert clock.offset_at_ns(start) == pytest.approx(250e6)
    assert clock.offset_at_ns(start + 100 * 10**9) == pytest.approx(250e6 + 5e6)  # 50 ppm of 100 s
    assert clock.at_ns(start + 10**9) == start + 10**9 + 250_050_000


def test_a_stepping_clock_steps_once_at_its_time() -> None:
    start = 1_723_100_000 * 10**9
    clock = ServerClock(offset_ms=250.0, step_ms=100.0, step_after_s=30.0, start_ns=start)

    assert clock.offset_at_ns(start + 29_999_999_999) == pytest.approx(250e6)
    assert clock.offset_at_ns(start + 30 * 10**9) == pytest.approx(350e6)
    assert clock.offset_at_ns(start + 3600 * 10**9) == pytest.approx(350e6)


def test_now_reads_the_local_clock_it_is_given() -> None:
    now = [1_000_000_000_000]
    clock = ServerClock(offset_ms=-80.0, local_ns=lambda: now[0])

    assert clock.now_us() == (now[0] - 80_000_000) // 1000


def test_bad_conditions_are_refused() -> None:
    with pytest.raises(ValueError, match="distribution"):
        Delay(1.0, 1.0, "uniform")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        Delay(-1.0)
    with pytest.raises(ValueError, match="shape"):
        Delay(1.0, 1.0, "pareto", shape=1.0)
