"""``cryptopipe bench <name>``: benchmark commands. Each prints p50/p95/p99 and throughput, and
writes JSON with ``--json PATH``. Figures are reported next to a floor measured in the same run
(:mod:`cryptopipe.measure.floors`)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

BENCHES = {
    "prices": ("cryptopipe.measure.bench_prices:main", "replay -> ingest -> Kafka -> consumer -> Redis"),
    "alerting": ("cryptopipe.measure.bench_alerting:main", "Kafka -> Spark alert job -> alerts"),
    "ingest-producer": (
        "cryptopipe.measure.bench_ingest:main",
        "produce -> delivery report per linger.ms/compression",
    ),
    "books": (
        "cryptopipe.measure.bench_books:main",
        "order books: event to Redis latency, resyncs, max sustained, books exact",
    ),
    "soak": (
        "cryptopipe.measure.bench_soak:main",
        "the whole pipeline for hours: memory per process, latency windows, books",
    ),
    "codec": ("cryptopipe.measure.bench_codec:main", "wire-format encode/decode: JSON vs MessagePack"),
    "faults": (
        "cryptopipe.measure.bench_faults:main",
        "five faults on the prices path: trades lost/duplicated",
    ),
    "skew": (
        "cryptopipe.measure.bench_skew:main",
        "clock offset under jitter, asymmetry, drift, steps: error, coverage",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in BENCHES:
        names = "\n".join(f"  {name:16} {help_}" for name, (_, help_) in BENCHES.items())
        wanted = bool(args) and args[0] in ("-h", "--help")
        print(
            f"usage: cryptopipe bench {{{','.join(BENCHES)}}} [options]\n\n{names}",
            file=sys.stdout if wanted else sys.stderr,
        )
        return 0 if wanted else 2
    module_name, _, function = BENCHES[args[0]][0].partition(":")
    handler = getattr(importlib.import_module(module_name), function)
    return int(handler(args[1:]))
