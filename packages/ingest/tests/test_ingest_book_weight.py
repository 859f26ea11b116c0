"""The REST weight budget of the depth snapshots: never over the limit in any minute, never stuck."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptopipe.ingest.book.weight import MAX_DEPTH_LIMIT, WeightBudget, depth_weight


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("limit", "weight"),
    [(1, 5), (100, 5), (101, 25), (500, 25), (501, 50), (1000, 50), (1001, 250), (5000, 250)],
)
def test_depth_weight_follows_binance_table(limit: int, weight: int) -> None:
    assert depth_weight(limit) == weight


@pytest.mark.parametrize("limit", [0, -1, MAX_DEPTH_LIMIT + 1])
def test_depth_weight_rejects_limits_binance_refuses(limit: int) -> None:
    with pytest.raises(ValueError, match="depth limit"):
        depth_weight(limit)


#: One step of a run: wait some seconds, then either try to spend a weight or report a usage.
Step = tuple[float, str, int]
steps = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=30, allow_nan=False),
        st.sampled_from(["spend", "spend", "spend", "report", "block"]),
        st.integers(min_value=1, max_value=250),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(limit=st.integers(min_value=250, max_value=6000), run=steps)
def test_no_window_ever_holds_more_than_the_limit(limit: int, run: list[Step]) -> None:
    """Own spending: any 60 s window holds at most ``limit``; after a report of U, at most
    ``limit - U`` more is spent until that minute is surely over; nothing during a Retry-After."""
    clock = FakeClock()
    budget = WeightBudget(limit, clock=clock)
    spent: list[tuple[float, int, int]] = []  # (when, weight, step)
    reports: list[tuple[float, int, int]] = []  # (when, used, step)
    blocked_until = 0.0
    for step, (wait, action, amount) in enumerate(run):
        clock.now += wait
        if action == "report":
            used = amount * 20
            budget.observe_used(used)
            reports.append((clock.now, used, step))
        elif action == "block":
            budget.block(amount / 50)
            blocked_until = max(blocked_until, clock.now + amount / 50)
        elif budget.try_spend(amount) == 0.0:
            assert clock.now >= blocked_until, "spent during a Retry-After"
            spent.append((clock.now, amount, step))
    for start, _, _ in spent:
        assert sum(w for at, w, _ in spent if start <= at < start + 60) <= limit
    for at_report, used, reported_step in reports:
        after = sum(w for at, w, step in spent if step > reported_step and at < at_report + 60)
        assert used + after <= max(limit, used), "spent past the exchange's own count"


@settings(max_examples=200, deadline=None)
@given(limit=st.integers(min_value=250, max_value=6000), weights=st.lists(st.integers(1, 250), max_size=60))
def test_a_refused_spend_succeeds_once_its_wait_has_passed(limit: int, weights: list[int]) -> None:
    """Liveness: the wait returned is enough; whatever is asked, it is spent in the end."""
    clock = FakeClock()
    budget = WeightBudget(limit, clock=clock)
    waits = 0
    for weight in weights:
        wait = budget.try_spend(weight)
        if wait > 0:
            waits += 1
            clock.now += wait
            assert budget.try_spend(weight) == 0.0
    assert waits <= len(weights)


def test_the_exchange_count_holds_spending_back_until_its_minute_is_over() -> None:
    clock = FakeClock()
    budget = WeightBudget(1000, clock=clock)
    assert budget.try_spend(50) == 0.0
    budget.observe_used(980)  # other clients on the IP spent most of the minute
    wait = budget.try_spend(50)
    assert wait == pytest.approx(60.0)
    clock.now += wait
    assert budget.try_spend(50) == 0.0


def test_retry_after_blocks_every_spend() -> None:
    clock = FakeClock()
    budget = WeightBudget(1000, clock=clock)
    budget.block(7.5)
    assert budget.blocked()
    assert budget.try_spend(5) == pytest.approx(7.5)
    clock.now += 7.5
    assert not budget.blocked()
    assert budget.try_spend(5) == 0.0


def test_a_weight_above_the_limit_is_a_bug_not_a_wait() -> None:
    with pytest.raises(ValueError, match="weight"):
        WeightBudget(100).try_spend(250)
