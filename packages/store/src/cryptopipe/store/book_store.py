"""Order books in Redis: the key layout, the write that never goes backwards, and the read side.

Keys (``{p}`` is ``RedisSettings.key_prefix``):

- ``{p}book:{SYMBOL}``  hash, the top of the symbol's book as one consistent state:
  ``epoch``, ``update_id``, ``event_time_us`` (empty when the book has not moved since its snapshot),
  ``receive_time_us``, ``written_time_us`` (Redis' clock), ``levels`` (N), ``bids`` and ``asks``
  (JSON ``[["price", "qty"], ...]``, best first, at most N each), ``best_bid``, ``best_bid_qty``,
  ``best_ask``, ``best_ask_qty``, ``spread``, ``mid`` (decimal strings), ``spread_bps`` (a float, 6
  significant digits); a side's fields are empty when the side is.
- ``{p}book-symbols``   set of symbols with a book.

:data:`BOOK_SCRIPT` writes a state only when its (epoch, update_id) is newer than the stored one,
comparing the integers exactly (as digit strings, not Lua doubles): an older or equal state never
overwrites, so a replay after a crash changes nothing, and two consumers cannot move a book back.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec
import redis

from cryptopipe.schemas import Level, OrderBook
from cryptopipe.store.sink import LuaScript

DEFAULT_BOOK_LEVELS = 20

# KEYS: book hash, symbols set. ARGV: symbol, epoch, update_id, then field, value pairs.
# Returns 1 when written, 0 when the stored (epoch, update_id) is the same or newer.
BOOK_SCRIPT = LuaScript(
    """
local function cmp(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  if a == b then return 0 end
  return a < b and -1 or 1
end
local cur = redis.call('HMGET', KEYS[1], 'epoch', 'update_id')
if cur[1] and cur[2] then
  local by_epoch = cmp(ARGV[2], cur[1])
  if by_epoch < 0 or (by_epoch == 0 and cmp(ARGV[3], cur[2]) <= 0) then
    return 0
  end
end
local now = redis.call('TIME')
local fields = {'epoch', ARGV[2], 'update_id', ARGV[3],
  'written_time_us', now[1] .. string.format('%06d', tonumber(now[2]))}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""
)

_LEVELS = msgspec.json.Encoder()
_LEVELS_DECODER = msgspec.json.Decoder(list[tuple[str, str]])


def book_keys(prefix: str, symbol: str) -> tuple[str, str]:
    """(book hash, symbols set) for ``symbol``."""
    return f"{prefix}book:{symbol}", f"{prefix}book-symbols"


def _text(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def book_fields(book: OrderBook, levels: int, receive_time_us: int) -> list[str]:
    """The hash fields (after epoch and update_id) for the top ``levels`` of ``book``, flat."""
    top = book.top(levels)
    bid, ask = book.best_bid(), book.best_ask()
    spread = mid = bps = None
    if bid is not None and ask is not None:
        spread, mid = ask[0] - bid[0], (ask[0] + bid[0]) / 2
        bps = format(float(spread / mid) * 10_000, ".6g")
    fields = {
        "event_time_us": "" if book.event_time_us is None else str(book.event_time_us),
        "receive_time_us": str(receive_time_us),
        "levels": str(levels),
        "bids": _LEVELS.encode([(_text(p), _text(q)) for p, q in top.bids]).decode(),
        "asks": _LEVELS.encode([(_text(p), _text(q)) for p, q in top.asks]).decode(),
        "best_bid": _text(bid and bid[0]),
        "best_bid_qty": _text(bid and bid[1]),
        "best_ask": _text(ask and ask[0]),
        "best_ask_qty": _text(ask and ask[1]),
        "spread": _text(spread),
        "mid": _text(mid),
        "spread_bps": bps or "",
    }
    return [item for pair in fields.items() for item in pair]


@dataclass(frozen=True, slots=True)
class BookView:
    """A symbol's book as Redis holds it: the top levels, best first, and what they imply."""

    symbol: str
    epoch: int
    update_id: int
    event_time_us: int | None
    receive_time_us: int
    written_time_us: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    best_bid: Level | None
    best_ask: Level | None
    spread: Decimal | None
    spread_bps: float | None
    mid: Decimal | None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types: decimals as strings, levels as [[price, qty], ...]."""

        def level(value: Level | None) -> list[str] | None:
            return None if value is None else [_text(value[0]), _text(value[1])]

        return {
            "symbol": self.symbol,
            "epoch": self.epoch,
            "update_id": self.update_id,
            "event_time_us": self.event_time_us,
            "receive_time_us": self.receive_time_us,
            "written_time_us": self.written_time_us,
            "bids": [level(x) for x in self.bids],
            "asks": [level(x) for x in self.asks],
            "best_bid": level(self.best_bid),
            "best_ask": level(self.best_ask),
            "spread": None if self.spread is None else _text(self.spread),
            "spread_bps": self.spread_bps,
            "mid": None if self.mid is None else _text(self.mid),
        }


def _str(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _decimal(text: str) -> Decimal | None:
    return Decimal(text) if text else None


def _level(price: str, quantity: str) -> Level | None:
    return (Decimal(price), Decimal(quantity)) if price else None


def _levels(text: str) -> tuple[Level, ...]:
    return tuple((Decimal(p), Decimal(q)) for p, q in _LEVELS_DECODER.decode(text))


class BookStore:
    """Read side for the dashboard and ``cryptopipe book`` (bytes or ``decode_responses`` clients)."""

    def __init__(self, client: redis.Redis, key_prefix: str = "cryptopipe:") -> None:
        self.client = client
        self.key_prefix = key_prefix

    def book(self, symbol: str, levels: int | None = None) -> BookView | None:
        """``symbol``'s book (its best ``levels`` per side, all stored if None), or None if never written."""
        raw = self.client.hgetall(book_keys(self.key_prefix, symbol)[0])
        if not raw:
            return None
        f = {_str(k): _str(v) for k, v in raw.items()}
        bids, asks = _levels(f["bids"]), _levels(f["asks"])
        if levels is not None:
            bids, asks = bids[:levels], asks[:levels]
        return BookView(
            symbol=symbol,
            epoch=int(f["epoch"]),
            update_id=int(f["update_id"]),
            event_time_us=int(f["event_time_us"]) if f["event_time_us"] else None,
            receive_time_us=int(f["receive_time_us"]),
            written_time_us=int(f["written_time_us"]),
            bids=bids,
            asks=asks,
            best_bid=_level(f["best_bid"], f["best_bid_qty"]),
            best_ask=_level(f["best_ask"], f["best_ask_qty"]),
            spread=_decimal(f["spread"]),
            spread_bps=float(f["spread_bps"]) if f["spread_bps"] else None,
            mid=_decimal(f["mid"]),
        )

    def symbols(self) -> list[str]:
        """Every symbol with a book in Redis, sorted."""
        return sorted(_str(s) for s in self.client.smembers(book_keys(self.key_prefix, "")[1]))
