"""Per-symbol series are bounded: the first symbols a process labels have their own, the rest share
``other``, and sums over the label stay exact."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest

from cryptopipe.observability import Scrape
from cryptopipe.observability import metrics as m

SYMBOLS = ("AUSDT", "BUSDT", "CUSDT", "DUSDT", "EUSDT")


def _count_through(labels: m.SymbolLabels, counts: dict[str, int]) -> Scrape:
    registry = CollectorRegistry()
    counter = Counter("symbols_test", "counted per symbol label", ["symbol"], registry=registry)
    for symbol, count in counts.items():
        counter.labels(symbol=labels(symbol)).inc(count)
    return Scrape.from_text(generate_latest(registry).decode())


def test_the_first_symbols_keep_their_own_series_and_the_rest_share_other(
    caplog: pytest.LogCaptureFixture,
) -> None:
    labels = m.SymbolLabels(3)
    counts = dict(zip(SYMBOLS, (1, 2, 3, 4, 5), strict=True))
    with caplog.at_level(logging.INFO, logger="cryptopipe.observability"):
        scrape = _count_through(labels, counts)
        assert [labels(s) for s in SYMBOLS] == ["AUSDT", "BUSDT", "CUSDT", "other", "other"]
    by_symbol = {s.labels["symbol"]: s.value for s in scrape.samples("symbols_test_total")}
    assert by_symbol == {"AUSDT": 1, "BUSDT": 2, "CUSDT": 3, "other": 4 + 5}
    assert scrape.total("symbols_test_total") == sum(counts.values())
    assert (labels.labelled, labels.folded) == (3, 2)
    folding = [r for r in caplog.records if "METRICS_SYMBOL_LIMIT=3" in r.getMessage()]
    assert len(folding) == 1, "said once, when the first symbol is folded"
    assert folding[0].levelno == logging.INFO
    assert "DUSDT" in folding[0].getMessage()


def test_the_counts_are_exported_per_component() -> None:
    labels = m.SymbolLabels(3)
    labels.export("symbols-test")
    for symbol in SYMBOLS:
        labels(symbol)
    scrape = Scrape.from_text(generate_latest(REGISTRY).decode())
    exported = {
        s.labels["state"]: s.value for s in scrape.samples(m.METRICS_SYMBOLS, component="symbols-test")
    }
    assert exported == {"labelled": 3, "folded": 2}


def test_limit_zero_folds_nothing() -> None:
    labels = m.SymbolLabels(0)
    many = [f"S{i:04d}USDT" for i in range(1500)]
    assert [labels(s) for s in many] == many
    assert (labels.labelled, labels.folded) == (1500, 0)


def test_starting_over_forgets_the_symbols_met() -> None:
    labels = m.SymbolLabels(1)
    assert [labels(s) for s in SYMBOLS[:2]] == ["AUSDT", "other"]
    labels.configure(1)
    assert labels("BUSDT") == "BUSDT"
    with pytest.raises(ValueError, match=">= 0"):
        labels.configure(-1)


def test_priming_creates_each_own_label_and_other_once(symbol_limit: Callable[[int], m.SymbolLabels]) -> None:
    symbol_limit(2)
    assert m.symbol_labels(SYMBOLS) == ["AUSDT", "BUSDT", "other"]
    assert m.symbol_labels(["BUSDT", "AUSDT"]) == ["BUSDT", "AUSDT"]
