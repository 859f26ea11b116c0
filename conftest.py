from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

import pytest
from prometheus_client.metrics import MetricWrapperBase

from cryptopipe.observability import metrics as m

pytest_plugins = ["cryptopipe.infra.testing", "cryptopipe.replay.testing", "cryptopipe.dashboard.testing"]

# A test process labels thousands of symbols over a session (one ingest test plans 1,030) and tests
# read their own symbols' series: no METRICS_SYMBOL_LIMIT here, nor in the services tests start
# (they inherit it), unless a test asks for one with the `symbol_limit` fixture.
os.environ["METRICS_SYMBOL_LIMIT"] = "0"
m.SYMBOL_LABELS.configure(0)


def _symbol_series() -> dict[MetricWrapperBase, set[Sequence[str]]]:
    """The label values of every child of each symbol-labelled catalogue metric."""
    return {
        metric: set(metric._metrics)  # prometheus_client's children, by label values
        for metric in vars(m).values()
        if isinstance(metric, MetricWrapperBase) and "symbol" in metric._labelnames
    }


@pytest.fixture
def symbol_limit() -> Iterator[Callable[[int], m.SymbolLabels]]:
    """``symbol_limit(n)``: this process's symbol labels start over with limit ``n``. At teardown
    the symbol series created meanwhile are removed and the tests' no-limit is back."""
    before = _symbol_series()

    def limit(n: int) -> m.SymbolLabels:
        m.SYMBOL_LABELS.configure(n)
        return m.SYMBOL_LABELS

    yield limit
    m.SYMBOL_LABELS.configure(0)
    for metric, children in _symbol_series().items():
        for labels in children - before[metric]:
            metric.remove(*labels)
