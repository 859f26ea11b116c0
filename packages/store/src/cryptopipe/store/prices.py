"""Latest price and capped recent history per symbol, in Redis.

Keys (``{p}`` is ``RedisSettings.key_prefix``):

- ``{p}price:{SYMBOL}``   hash: price, quantity, trade_id, trade_time_us, event_time_us,
  receive_time_us, written_time_us, kind. Only ever moves forward in (trade_time_us, trade_id).
- ``{p}history:{SYMBOL}`` sorted set scored by trade_time_us; each member is the trade's compact
  JSON (intrinsic fields only, so a duplicate is the same member); trimmed by rank to the cap.
- ``{p}symbols``          set of symbols seen.

The "never backwards" rule is decided inside Redis by a Lua script, atomically per symbol, so
two consumers (a rebalance overlap, a replay) cannot interleave a read and a write.
"""

from __future__ import annotations

import time
from collections import defaultdict
from decimal import Decimal
from typing import Any

import msgspec
import redis

from cryptopipe.observability import metrics as m
from cryptopipe.schemas import Trade, TradeKind, decode_trade
from cryptopipe.store.sink import LuaScript, WriteResult, execute_with_scripts

DEFAULT_HISTORY_CAP = 1000

#: Fields per trade in the script's ARGV, after ARGV[1] (symbol) and ARGV[2] (cap).
_STRIDE = 8

# KEYS: latest hash, history zset, symbols set. ARGV: symbol, cap, then per trade in consumed
# order: trade_time_us, trade_id, price, quantity, event_time_us, receive_time_us, kind, member.
# Applies the trades one after another: each is added to the history; it becomes the latest if
# it is newer, by (trade_time_us, trade_id), than the latest so far. Returns the 1-based
# positions of the trades that were not newer (stale).
PRICE_SCRIPT = LuaScript(
    """
local cur = redis.call('HMGET', KEYS[1], 'trade_time_us', 'trade_id')
local best_t = tonumber(cur[1])
local best_id = tonumber(cur[2])
local best = nil
local stale = {}
local n = 0
for i = 3, #ARGV, 8 do
  n = n + 1
  local t = tonumber(ARGV[i])
  local id = tonumber(ARGV[i + 1])
  redis.call('ZADD', KEYS[2], t, ARGV[i + 7])
  if best_t == nil or t > best_t or (t == best_t and id > best_id) then
    best_t = t
    best_id = id
    best = i
  else
    stale[#stale + 1] = n
  end
end
if best then
  local now = redis.call('TIME')
  redis.call('HSET', KEYS[1],
    'price', ARGV[best + 2], 'quantity', ARGV[best + 3], 'trade_id', ARGV[best + 1],
    'trade_time_us', ARGV[best], 'event_time_us', ARGV[best + 4],
    'receive_time_us', ARGV[best + 5], 'kind', ARGV[best + 6],
    'written_time_us', now[1] .. string.format('%06d', tonumber(now[2])))
end
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[2]) + 1))
redis.call('SADD', KEYS[3], ARGV[1])
return stale
"""
)


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One history member: only fields intrinsic to the trade, so a duplicate encodes identically."""

    trade_id: int
    price: str
    quantity: str
    trade_time_us: int
    buyer_is_maker: bool
    kind: TradeKind


_MEMBER_ENCODER = msgspec.json.Encoder()
_MEMBER_DECODER = msgspec.json.Decoder(HistoryEntry)


def history_member(trade: Trade) -> bytes:
    """The sorted-set member for ``trade`` (compact JSON, stable for a given trade)."""
    return _MEMBER_ENCODER.encode(
        HistoryEntry(
            trade_id=trade.trade_id,
            price=format(trade.price, "f"),
            quantity=format(trade.quantity, "f"),
            trade_time_us=trade.trade_time_us,
            buyer_is_maker=trade.buyer_is_maker,
            kind=trade.kind,
        )
    )


def price_keys(prefix: str, symbol: str) -> tuple[str, str, str]:
    """(latest hash, history sorted set, symbols set) for ``symbol``."""
    return f"{prefix}price:{symbol}", f"{prefix}history:{symbol}", f"{prefix}symbols"


def _script_args(trades: list[Trade]) -> list[Any]:
    args: list[Any] = []
    for t in trades:
        args += (
            t.trade_time_us,
            t.trade_id,
            format(t.price, "f"),
            format(t.quantity, "f"),
            t.event_time_us,
            t.receive_time_us,
            t.kind,
            history_member(t),
        )
    return args


class _SymbolMetrics:
    """Metric children for one symbol label (a symbol, or ``other`` for the folded ones), looked up
    once (labels() costs more than observe())."""

    __slots__ = ("e2e", "label", "share", "stale", "system", "written")

    def __init__(self, label: str) -> None:
        self.label = label
        self.written = m.PRICES_WRITTEN.labels(symbol=label)
        self.stale = m.STALE_PRICES.labels(symbol=label)
        self.system = m.SYSTEM_LATENCY.labels(symbol=label)
        self.e2e = m.E2E_LATENCY.labels(symbol=label)
        self.share = m.SYSTEM_SHARE.labels(symbol=label)


class PriceSink:
    """Writes trades from the ``prices`` topic: latest price (never backwards) and history.

    One pipeline per batch, one EVALSHA per symbol carrying that symbol's trades in consumed
    order (``per_trade=True`` sends one EVALSHA per trade instead; kept for the measurement
    that chose the default, see ``cryptopipe.store.bench``).
    """

    name = "prices"

    def __init__(
        self,
        client: redis.Redis,
        *,
        key_prefix: str = "cryptopipe:",
        history_cap: int = DEFAULT_HISTORY_CAP,
        per_trade: bool = False,
    ) -> None:
        if history_cap < 1:
            raise ValueError(f"history_cap must be >= 1, got {history_cap}")
        self.client = client
        self.key_prefix = key_prefix
        self.history_cap = history_cap
        self.per_trade = per_trade
        self._metrics: dict[str, _SymbolMetrics] = {}
        self._metrics_by_label: dict[str, _SymbolMetrics] = {}

    def decode(self, value: bytes) -> Trade:
        return decode_trade(value)

    def _symbol_metrics(self, symbol: str) -> _SymbolMetrics:
        found = self._metrics.get(symbol)
        if found is None:
            label = m.symbol_label(symbol)
            found = self._metrics_by_label.get(label)
            if found is None:
                found = self._metrics_by_label[label] = _SymbolMetrics(label)
            self._metrics[symbol] = found
        return found

    def write(self, batch: list[Trade]) -> WriteResult:
        by_symbol: dict[str, list[Trade]] = defaultdict(list)
        for trade in batch:
            by_symbol[trade.symbol].append(trade)
        groups: list[tuple[str, list[Trade]]] = []
        for symbol, trades in by_symbol.items():
            if self.per_trade:
                groups += [(symbol, [t]) for t in trades]
            else:
                groups.append((symbol, trades))

        pipe = self.client.pipeline(transaction=False)
        for symbol, trades in groups:
            PRICE_SCRIPT.queue(
                pipe, price_keys(self.key_prefix, symbol), [symbol, self.history_cap, *_script_args(trades)]
            )
        started = time.perf_counter()
        results = execute_with_scripts(self.client, pipe, [PRICE_SCRIPT])
        redis_seconds = time.perf_counter() - started
        written_us = time.time_ns() // 1000

        written = stale_total = 0
        latencies: list[int] = []
        e2e_latencies: list[int] = []
        shares: dict[str, list[float]] = defaultdict(list)
        for (symbol, trades), stale_positions in zip(groups, results, strict=True):
            metrics = self._symbol_metrics(symbol)
            stale = {int(p) - 1 for p in stale_positions}
            if stale:
                metrics.stale.inc(len(stale))
                stale_total += len(stale)
            fresh = len(trades) - len(stale)
            if fresh:
                metrics.written.inc(fresh)
                written += fresh
            system_s: list[float] = []
            e2e_s: list[float] = []
            for i, trade in enumerate(trades):
                if i in stale or trade.backfilled:
                    continue
                system_us = written_us - trade.receive_time_us
                e2e_us = written_us - trade.trade_time_us
                latencies.append(system_us)
                e2e_latencies.append(e2e_us)
                system_s.append(system_us / 1e6)
                e2e_s.append(e2e_us / 1e6)
                if e2e_us > 0:
                    shares[metrics.label].append(system_us / e2e_us)
            m.observe_many(metrics.system, system_s)
            m.observe_many(metrics.e2e, e2e_s)
        for label, values in shares.items():
            self._metrics_by_label[label].share.set(sum(values) / len(values))
        return WriteResult(
            written=written,
            stale=stale_total,
            written_time_us=written_us,
            redis_seconds=redis_seconds,
            latencies_us=latencies,
            e2e_latencies_us=e2e_latencies,
        )


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


_INT_FIELDS = ("trade_id", "trade_time_us", "event_time_us", "receive_time_us", "written_time_us")


class PriceStore:
    """Read side for the dashboard and the CLI. Works with bytes or ``decode_responses`` clients."""

    def __init__(self, client: redis.Redis, key_prefix: str = "cryptopipe:") -> None:
        self.client = client
        self.key_prefix = key_prefix

    def latest(self, symbol: str) -> dict[str, Any] | None:
        """The latest price of ``symbol``, or None if never written.

        ``{"symbol", "price": Decimal, "quantity": Decimal, "trade_id": int, "trade_time_us": int,
        "event_time_us": int, "receive_time_us": int, "written_time_us": int, "kind": str}``
        """
        raw = self.client.hgetall(price_keys(self.key_prefix, symbol)[0])
        if not raw:
            return None
        fields = {_text(k): _text(v) for k, v in raw.items()}
        out: dict[str, Any] = {"symbol": symbol}
        for key, value in fields.items():
            if key in _INT_FIELDS:
                out[key] = int(value)
            elif key in ("price", "quantity"):
                out[key] = Decimal(value)
            else:
                out[key] = value
        return out

    def history(self, symbol: str, limit: int = DEFAULT_HISTORY_CAP) -> list[dict[str, Any]]:
        """The newest ``limit`` trades of ``symbol``, oldest first (ready to plot).

        Each: ``{"trade_id", "price": Decimal, "quantity": Decimal, "trade_time_us",
        "buyer_is_maker", "kind"}``.
        """
        if limit <= 0:
            return []
        members: list[bytes | str] = self.client.zrange(  # type: ignore[assignment]
            price_keys(self.key_prefix, symbol)[1], -limit, -1
        )
        out = []
        for member in members:
            entry = _MEMBER_DECODER.decode(member)
            row = msgspec.structs.asdict(entry)
            row["price"] = Decimal(entry.price)
            row["quantity"] = Decimal(entry.quantity)
            out.append(row)
        return out

    def symbols(self) -> list[str]:
        """Every symbol with a stored price, sorted."""
        return sorted(_text(s) for s in self.client.smembers(f"{self.key_prefix}symbols"))
