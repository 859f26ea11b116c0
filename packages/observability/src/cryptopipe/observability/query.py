"""Read metrics back from a running service's /metrics endpoint.

The orchestrator's summary and the benchmarks read figures from where they live — the services'
own endpoints — and compute quantiles the way Prometheus' ``histogram_quantile`` does, so a
number in a summary file is the number a Grafana panel would show.
"""

from __future__ import annotations

import math
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping

from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

#: A series by its sample name (``cryptopipe_prices_written_total``) or its catalogue metric
#: (``metrics.PRICES_WRITTEN``: a counter is read as its ``_total`` series).
Series = str | MetricWrapperBase


def series_name(series: Series) -> str:
    """The sample name that a catalogue metric (or a name) is scraped under."""
    if isinstance(series, str):
        return series
    family = next(iter(series.describe()))
    return f"{family.name}_total" if family.type == "counter" else family.name


class Scrape:
    """One scrape of one or more endpoints: samples by name, with their labels."""

    def __init__(self, samples: Iterable[Sample]) -> None:
        self._by_name: dict[str, list[Sample]] = defaultdict(list)
        for sample in samples:
            self._by_name[sample.name].append(sample)

    @classmethod
    def merged(cls, *scrapes: Scrape) -> Scrape:
        """One scrape holding every sample of ``scrapes`` (several processes of one component)."""
        return cls(sample for scrape in scrapes for samples in scrape._by_name.values() for sample in samples)

    @classmethod
    def from_text(cls, *texts: str) -> Scrape:
        return cls(
            s for text in texts for family in text_string_to_metric_families(text) for s in family.samples
        )

    @classmethod
    def from_urls(cls, *urls: str, timeout: float = 5.0) -> Scrape:
        texts = []
        for url in urls:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                texts.append(response.read().decode("utf-8"))
        return cls.from_text(*texts)

    def samples(self, name: Series, **match: str) -> list[Sample]:
        found = self._by_name.get(series_name(name), [])
        return [s for s in found if all(s.labels.get(k) == v for k, v in match.items())]

    def total(self, name: Series, **match: str) -> float:
        """Sum of a counter or gauge over every label set that matches."""
        return sum(s.value for s in self.samples(name, **match))

    def buckets(self, histogram: Series, **match: str) -> list[tuple[float, float]]:
        """Cumulative (upper bound, count) pairs, summed over every matching label set."""
        merged: dict[float, float] = defaultdict(float)
        for s in self.samples(series_name(histogram) + "_bucket", **match):
            merged[float(s.labels["le"])] += s.value
        return sorted(merged.items())

    def quantile(self, q: float, histogram: Series, **match: str) -> float | None:
        return histogram_quantile(q, self.buckets(histogram, **match))

    def percentiles_ms(self, histogram: Series, **match: str) -> dict[str, float | None]:
        """``{p50, p95, p99}`` in milliseconds of a seconds histogram (None when it is empty)."""
        out: dict[str, float | None] = {}
        for label, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            value = self.quantile(q, histogram, **match)
            out[label] = None if value is None else round(value * 1000, 3)
        return out


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding rank q*n."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower_bound
            if count == lower_count:
                return upper
            return lower_bound + (upper - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = upper, count
    return lower_bound


def exact_percentiles_ms(
    samples_us: Iterable[int], quantiles: Mapping[str, float] | None = None
) -> dict[str, float | None]:
    """Exact nearest-rank percentiles of microsecond samples, in milliseconds (benchmarks)."""
    ordered = sorted(samples_us)
    wanted = quantiles or {"p50": 0.5, "p95": 0.95, "p99": 0.99}
    if not ordered:
        return dict.fromkeys(wanted)
    out: dict[str, float | None] = {}
    for label, q in wanted.items():
        index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
        out[label] = round(ordered[index] / 1000, 3)
    return out
