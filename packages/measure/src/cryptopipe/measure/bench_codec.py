"""``cryptopipe bench codec``: the measurement behind the wire-format choice (JSON vs MessagePack).

Both encodings use msgspec with the same ``Trade`` type; the floor is a bare ``bytes`` copy of
the encoded payload, so the ratio says what the codec costs beyond moving the bytes at all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path

import msgspec

from cryptopipe.measure.floors import bench_parser
from cryptopipe.schemas import Trade, decode_trade, encode


def _sample(n: int) -> list[Trade]:
    return [
        Trade(
            symbol="BTCUSDT",
            trade_id=3735683259 + i,
            price=Decimal("61837.63000000") + i,
            quantity=Decimal("0.02000000"),
            buyer_is_maker=i % 2 == 0,
            trade_time_us=1723161255342000 + i,
            event_time_us=1723161255343000 + i,
            receive_time_us=1723161254087896 + i,
            kind="aggTrade",
            first_trade_id=100 + i,
            last_trade_id=105 + i,
        )
        for i in range(n)
    ]


def _time_per_item(fn: Callable[[], object], items: int, repeat: int) -> list[float]:
    """Microseconds per item, one figure per repeat."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - start) / items / 1000)
    return out


def _pct(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": round(pick(0.5), 4), "p95": round(pick(0.95), 4), "p99": round(pick(0.99), 4)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_parser("codec", __doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--json", type=Path, dest="json_path")
    args = parser.parse_args(argv)

    trades = _sample(args.messages)
    packer = msgspec.msgpack.Encoder(decimal_format="string")
    unpacker = msgspec.msgpack.Decoder(Trade)
    json_payloads = [encode(t) for t in trades]
    pack_payloads = [packer.encode(t) for t in trades]
    n, r = args.messages, args.repeat
    results = {
        "floor_copy_us": _pct(_time_per_item(lambda: [bytes(bytearray(p)) for p in json_payloads], n, r)),
        "json_encode_us": _pct(_time_per_item(lambda: [encode(t) for t in trades], n, r)),
        "json_decode_us": _pct(_time_per_item(lambda: [decode_trade(p) for p in json_payloads], n, r)),
        "msgpack_encode_us": _pct(_time_per_item(lambda: [packer.encode(t) for t in trades], n, r)),
        "msgpack_decode_us": _pct(_time_per_item(lambda: [unpacker.decode(p) for p in pack_payloads], n, r)),
        "json_bytes_mean": sum(map(len, json_payloads)) / n,
        "msgpack_bytes_mean": sum(map(len, pack_payloads)) / n,
    }
    json_round_trip = results["json_encode_us"]["p50"] + results["json_decode_us"]["p50"]
    pack_round_trip = results["msgpack_encode_us"]["p50"] + results["msgpack_decode_us"]["p50"]
    results["throughput_json_round_trips_per_s"] = round(1e6 / json_round_trip)
    results["throughput_msgpack_round_trips_per_s"] = round(1e6 / pack_round_trip)
    results["ratio_json_to_msgpack_p50"] = round(json_round_trip / pack_round_trip, 3)
    results["ratio_json_p50_to_floor"] = round(json_round_trip / results["floor_copy_us"]["p50"], 3)
    for key, value in results.items():
        print(f"{key:40} {value}")
    if args.json_path is not None:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(results, indent=2) + "\n")
    return 0
