"""The prices consumers' exact latency samples: read from their files, merged into one uniform
sample, and the system latency split where each trade was fetched."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from cryptopipe.observability import exact_percentiles_ms

S = TypeVar("S")


def merge_samples(parts: Sequence[tuple[int, list[S]]], seed: int = 0) -> list[S]:
    """Several consumers' latency samples as one uniform sample: ``(seen, samples)`` each. Below
    the reservoirs' capacity every sample is kept (exact); otherwise each part is thinned to the
    smallest kept fraction, so a busy consumer weighs as much as its share of the trades."""
    fraction = min((len(samples) / seen for seen, samples in parts if seen > 0), default=1.0)
    if fraction >= 1.0:
        return [value for _, samples in parts for value in samples]
    rng = random.Random(seed)
    merged: list[S] = []
    for seen, samples in parts:
        merged += rng.sample(samples, min(len(samples), round(seen * fraction)))
    return merged


def read_samples(path: Path) -> tuple[int, list[tuple[int, int | None]]]:
    """``(seen, [(system latency, fetch-to-written part or None), ...])`` from one consumer's
    ``--latency-samples`` file (none when it is missing)."""
    if not path.exists():
        return 0, []
    data = json.loads(path.read_text())
    samples: list[int] = data.get("samples_us", [])
    in_consumer: list[int] = data.get("fetch_to_written_samples_us") or []
    if len(in_consumer) != len(samples):
        return int(data.get("seen", len(samples))), [(value, None) for value in samples]
    return int(data.get("seen", len(samples))), list(zip(samples, in_consumer, strict=True))


def latency_stages(rows: Sequence[tuple[int, int | None]]) -> dict[str, Any] | None:
    """System latency split where the consumer's poll returned each trade: ``receive_to_fetch``
    (ingest, its producer, the broker and the fetch) and ``fetch_to_written`` (decode and the
    Redis write), as percentiles in ms; ``p99_tail_mean_ms`` is each part's mean over the trades
    at or above the system p99, so it says which stage the tail is made of. None when the
    consumers did not write the split."""
    paired = [(system, part) for system, part in rows if part is not None]
    if not paired:
        return None
    system = exact_percentiles_ms(value for value, _ in paired)
    tail = [(value, part) for value, part in paired if value / 1000 >= (system["p99"] or 0.0)]
    return {
        "receive_to_fetch": exact_percentiles_ms(value - part for value, part in paired),
        "fetch_to_written": exact_percentiles_ms(part for _, part in paired),
        "p99_tail_mean_ms": {
            "receive_to_fetch": round(sum(v - p for v, p in tail) / len(tail) / 1000, 3),
            "fetch_to_written": round(sum(p for _, p in tail) / len(tail) / 1000, 3),
        },
    }
