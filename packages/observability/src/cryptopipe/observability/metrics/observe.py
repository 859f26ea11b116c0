"""Recording into catalogue metrics cheaply: label sets primed up front, observations in batches."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as _Tally
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram


def prime(metric: Counter | Gauge | Histogram, *label_sets: dict[str, str]) -> None:
    """Create label sets up front so their series exist (at 0) before the first event.

    A labelled metric exports nothing until a label set is used; rare-event counters (gaps,
    losses, dead letters) would read "no data" instead of 0 in panels, rules and rate().
    """
    for labels in label_sets:
        metric.labels(**labels)


def observe_many(histogram: Histogram, values: Iterable[float]) -> None:
    """``histogram.observe(v)`` for each of ``values``, at one lock per bucket touched.

    ``Histogram.observe`` walks the bucket bounds and takes two locks per value, which costs more
    than everything else a hot path does with a trade. Here the bucket of each value is found
    by bisection and each touched bucket is incremented once, so a batch of trades costs a few
    increments. ``histogram`` is a child (labels already applied). The exported series are the
    same as with ``observe``: a value lands in the first bucket whose bound is >= it.
    """
    bounds = histogram._upper_bounds  # prometheus_client's own fields; pinned by the test of this
    total = 0.0
    tally: _Tally[int] = _Tally()
    for value in values:
        total += value
        tally[bisect_left(bounds, value)] += 1
    if not tally:
        return
    histogram._raise_if_not_observable()  # type: ignore[no-untyped-call]
    histogram._sum.inc(total)
    for index, count in tally.items():
        histogram._buckets[index].inc(count)


class HistogramBatch:
    """Observations of one histogram child, kept in a list and observed together by :meth:`flush`.

    For a path that sees one value at a time at thousands per second (ingest, per trade): the
    owner calls :meth:`flush` on a timer and when it stops, so the series lag by that period.
    """

    __slots__ = ("child", "values")

    def __init__(self, child: Histogram) -> None:
        self.child = child
        self.values: list[float] = []

    def add(self, value: float) -> None:
        self.values.append(value)

    def flush(self) -> None:
        if self.values:
            values, self.values = self.values, []
            observe_many(self.child, values)
