"""``cryptopipe book SYMBOL [--levels N] [--json]``: the order book the pipeline holds in Redis.

Prints the update id, the event time, the top bids and asks, the best bid and ask and the spread, as
the books consumer wrote them (:class:`~cryptopipe.store.book_store.BookStore`). Redis comes from
REDIS_URL and REDIS_KEY_PREFIX, as for every command. Exit 0 with a book, 1 (one line on stderr) when
Redis holds no book for the symbol or cannot be reached, 2 for a wrong configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import redis

from cryptopipe import schemas
from cryptopipe.runtime import configured
from cryptopipe.schemas import Level, RedisSettings, redact_url
from cryptopipe.store.book_store import DEFAULT_BOOK_LEVELS, BookStore, BookView
from cryptopipe.store.errors import ConfigError
from cryptopipe.store.sink import connect_redis


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryptopipe book", description="Print the order book the pipeline holds in Redis for SYMBOL."
    )
    parser.add_argument("symbol", help="e.g. BTCUSDT (case does not matter)")
    parser.add_argument(
        "--levels",
        type=int,
        default=10,
        help=f"levels per side to print (default 10; Redis keeps {DEFAULT_BOOK_LEVELS})",
    )
    parser.add_argument("--json", action="store_true", help="print the book as one JSON object")
    return parser


def _load_redis() -> RedisSettings:
    settings = schemas.load_settings(RedisSettings)
    if not settings.url.get_secret_value():
        raise ConfigError("REDIS_URL", "is empty; set it to the Redis URL, e.g. redis://127.0.0.1:6379/0")
    return settings


def _time(time_us: int | None) -> str:
    if time_us is None:
        return "none (no event since the snapshot)"
    return datetime.fromtimestamp(time_us / 1e6, UTC).isoformat(timespec="microseconds")


def _plain(value: Decimal | None) -> str:
    return "-" if value is None else format(value, "f")


def _cells(level: Level | None, empty: str = "") -> tuple[str, str]:
    """(price, quantity) as plain decimal strings."""
    return (empty, empty) if level is None else (format(level[0], "f"), format(level[1], "f"))


def render(view: BookView) -> str:
    """The book as text: a header, the touch and spread, then bids beside asks, best first."""
    bid, ask = _cells(view.best_bid, "-"), _cells(view.best_ask, "-")
    bps = "-" if view.spread_bps is None else f"{view.spread_bps:.4g} bps"
    lines = [
        f"{view.symbol}  update id {view.update_id}  epoch {view.epoch}",
        f"event time {_time(view.event_time_us)}  written {_time(view.written_time_us)}",
        f"best bid {bid[0]} x {bid[1]}  best ask {ask[0]} x {ask[1]}",
        f"spread {_plain(view.spread)} ({bps})  mid {_plain(view.mid)}",
        "",
    ]
    rows = [("bid qty", "bid", "ask", "ask qty")]
    for i in range(max(len(view.bids), len(view.asks))):
        bid_price, bid_qty = _cells(view.bids[i] if i < len(view.bids) else None)
        ask_price, ask_qty = _cells(view.asks[i] if i < len(view.asks) else None)
        rows.append((bid_qty, bid_price, ask_price, ask_qty))
    widths = [max(len(row[c]) for row in rows) for c in range(4)]
    for row in rows:
        left = f"{row[0]:>{widths[0]}}  {row[1]:>{widths[1]}}"
        right = f"{row[2]:<{widths[2]}}  {row[3]:<{widths[3]}}"
        lines.append(f"{left} | {right}".rstrip())
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``cryptopipe book``."""
    args = build_parser().parse_args(argv)
    if args.levels < 1:
        print(f"cryptopipe book: --levels must be at least 1, got {args.levels}", file=sys.stderr)
        return 2
    settings = configured("book", _load_redis)
    if settings is None:
        return 2
    symbol = args.symbol.upper()
    client = connect_redis(settings.url.get_secret_value())
    try:
        view = BookStore(client, settings.key_prefix).book(symbol, args.levels)
    except redis.RedisError as exc:
        url = redact_url(settings.url.get_secret_value())
        print(f"cryptopipe book: cannot read Redis at {url}: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    if view is None:
        print(
            f"cryptopipe book: no book for {symbol} in Redis (key prefix {settings.key_prefix!r})",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(view.to_json(), indent=2) if args.json else render(view))
    return 0


if __name__ == "__main__":
    sys.exit(main())
