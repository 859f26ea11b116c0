"""observe_many exports exactly what one observe() per value would."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from cryptopipe.observability.metrics import LATENCY_BUCKETS, observe_many


def _samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    [family] = histogram.collect()
    return {(s.name, s.labels.get("le", "")): s.value for s in family.samples}


def _pair() -> tuple[Histogram, Histogram]:
    registry = CollectorRegistry()
    one = Histogram("one", "per value", ["symbol"], buckets=LATENCY_BUCKETS, registry=registry)
    many = Histogram("many", "batched", ["symbol"], buckets=LATENCY_BUCKETS, registry=registry)
    return one.labels(symbol="BTCUSDT"), many.labels(symbol="BTCUSDT")


values = st.lists(
    st.one_of(
        st.floats(min_value=-1.0, max_value=1e4, allow_nan=False),
        st.sampled_from([*LATENCY_BUCKETS[:-1], 0.0]),  # exactly on a bound: the bound's own bucket
    ),
    max_size=200,
)


@given(values)
def test_observe_many_matches_observe_one_by_one(batch: list[float]) -> None:
    one, many = _pair()
    for value in batch:
        one.observe(value)
    observe_many(many, batch)
    expected = {(name.replace("one", "many", 1), le): v for (name, le), v in _samples(one).items()}
    got = _samples(many)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert math.isclose(got[key], value, rel_tol=1e-9, abs_tol=1e-9), key


def test_observe_many_of_nothing_changes_nothing() -> None:
    _, many = _pair()
    before = _samples(many)
    observe_many(many, [])
    assert _samples(many) == before
