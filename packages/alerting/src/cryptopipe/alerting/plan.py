"""The streaming plan: trades in, one row per closed window (or early crossing) out.

Data flow::

    prices (Kafka) -> trades (symbol, trade_id, price, trade_time_us, receive_time_us,
                              kafka_partition, kafka_offset)
      -> observe(per-batch figures for metrics)
      -> one Python stateful operator per symbol (:class:`SymbolWindows`), trades in arrival
         order: late trades dropped and counted, every rule's windows kept (open/close = price
         at min/max of (trade_time_us, trade_id)), early windows fired once when the running
         change crosses the threshold, windows closed when the symbol's newest trade time
         passes their end + delay
    -> WINDOW_SCHEMA rows; thresholds of final rules are applied on the driver, exactly, in Decimal.

Lateness is decided per symbol in arrival order, not by Spark's watermark (which moves once per
micro-batch, so a trade far behind could still be counted when it arrived in the same batch as
the trades that moved event time on): the same replay at any speed, cut into any micro-batches,
raises the same alerts. The operator's state lives in the checkpoint, so a restart agrees with
an uninterrupted run.

Prices are DECIMAL(38,18) in Spark (exact; Binance sends at most 8 decimals) and strings on the
way out; ``pct_change`` is computed once, in Decimal, on the driver.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from cryptopipe.alerting.rules import Rule, price_rules

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.streaming.state import GroupState

#: What the plan emits; ``kind`` is ``final`` (a closed window; the threshold is applied by the
#: sink), ``early`` (already crossed) or ``late`` (``dropped`` late trades of a symbol, no alert).
#: ``trigger_receive_time_us`` is the receive time of the trade that fired or closed the window.
WINDOW_SCHEMA = (
    "rule STRING, symbol STRING, kind STRING, window_start_us BIGINT, open STRING, close STRING, "
    "trigger_receive_time_us BIGINT, dropped BIGINT"
)
#: Per symbol: the newest trade time seen and the open windows (JSON, see :class:`SymbolWindows`).
_STATE_SCHEMA = "newest_us BIGINT, windows STRING"
#: Name of the per-batch observation (see :func:`observe_input`).
OBSERVATION = "cryptopipe_input"


def trigger_column(window_us: int) -> str:
    return f"trigger_{window_us}"


def observe_input(trades: DataFrame, rules: Sequence[Rule], delay_ms: int) -> DataFrame:
    """Per-batch figures, read back from the query progress on the driver.

    For each window length L: the highest window end (as index ``g``) that a trade of the batch
    moves the watermark past, with the earliest receive time among the trades that do:
    ``min(struct(-g, receive_time_us))``. That receive time is when the trade that lets Spark
    close the window was ingested: the start of the alert-latency clock.
    """
    from pyspark.sql import functions as F

    figures: list[Column] = [
        F.count(F.lit(1)).alias("rows"),
        F.count_if(F.col("error").isNotNull()).alias("invalid"),
        F.max("trade_time_us").alias("max_trade_time_us"),
    ]
    passed_us = (F.floor(F.col("trade_time_us") / 1000) - delay_ms) * 1000
    for window_us in sorted({rule.window_us for rule in price_rules(rules)}):
        index = F.floor(passed_us / window_us)
        figures.append(
            F.min(
                F.when(
                    F.col("error").isNull(),
                    F.struct((-index).alias("g"), F.col("receive_time_us").alias("r")),
                )
            ).alias(trigger_column(window_us))
        )
    return trades.observe(OBSERVATION, *figures)


class SymbolState:
    """One symbol's windows, fed its trades in arrival order: the rule of :class:`SymbolWindows`.

    ``newest`` is the newest trade time seen (µs); ``windows`` maps ``"<rule>\\t<start>"`` to
    ``[first_t, first_id, first_price, last_t, last_id, last_price, fired]``. The Spark operator
    keeps both in its checkpointed state; the express lane (:mod:`cryptopipe.alerting.express`)
    keeps them in memory.
    """

    def __init__(
        self,
        symbol: str,
        rules: Sequence[Rule],
        delay_us: int,
        newest: int | None = None,
        windows: dict[str, list[Any]] | None = None,
    ) -> None:
        self.symbol = symbol
        self.rules = [rule for rule in rules if rule.applies_to(symbol)]
        self.lengths = {rule.name: rule.window_us for rule in rules}
        self.delay_us = delay_us
        self.newest = newest
        self.windows: dict[str, list[Any]] = {} if windows is None else windows

    def feed(self, t: int, i: int, p: str, r: int) -> list[tuple[Any, ...]] | None:
        """The rows this trade (time, id, price, receive time) emits, or None when it is late."""
        if self.newest is not None and self.newest - t > self.delay_us:
            return None
        self.newest = t if self.newest is None else max(self.newest, t)
        out: list[tuple[Any, ...]] = []
        for rule in self.rules:
            out.extend(self._add(rule, t, i, p, r))
        out.extend(self._close(r))
        return out

    def windows_json(self) -> str:
        return json.dumps(self.windows, separators=(",", ":"))

    def _add(self, rule: Rule, t: int, i: int, p: str, r: int) -> list[tuple[Any, ...]]:
        start = rule.window_start_us(t)
        name = f"{rule.name}\t{start}"
        window = self.windows.get(name)
        if window is None:
            window = self.windows[name] = [t, i, p, t, i, p, False]
        if (t, i) < (window[0], window[1]):
            window[0:3] = [t, i, p]
        if (t, i) >= (window[3], window[4]):
            window[3:6] = [t, i, p]
        if (
            rule.mode != "early"
            or window[6]
            or not rule.crosses(self.symbol, Decimal(window[2]), Decimal(window[5]))
        ):
            return []
        window[6] = True
        return [(rule.name, self.symbol, "early", start, window[2], window[5], r, 0)]

    def _close(self, r: int) -> list[tuple[Any, ...]]:
        assert self.newest is not None
        out = []
        for name in list(self.windows):
            rule_name, start_text = name.split("\t")
            start = int(start_text)
            if start + self.lengths[rule_name] + self.delay_us > self.newest:
                continue
            window = self.windows.pop(name)
            if not window[6]:
                out.append((rule_name, self.symbol, "final", start, window[2], window[5], r, 0))
        return out


class SymbolWindows:
    """``applyInPandasWithState`` function, one group per symbol, trades in arrival order.

    Arrival order is Kafka's: a symbol's trades share one partition (the key is the symbol), so
    ``(kafka_partition, kafka_offset)`` orders them. State (in the checkpoint): the newest trade
    time seen for the symbol and, per open (rule, window), the first and last trade by
    (trade time, trade id) and whether an early alert fired. Per trade, in that order
    (:class:`SymbolState`):

    - more than the delay behind the newest trade time seen: late, dropped and counted;
    - otherwise it joins its window of every rule for the symbol; an early rule fires the first
      time ``|last - first| / first`` exceeds the threshold;
    - windows whose end + delay the newest trade time reached close: one that has not fired is
      emitted as ``final`` (the sink applies the threshold), with this trade's receive time.

    Nothing depends on micro-batch boundaries: see :mod:`cryptopipe.alerting.reference`.
    """

    def __init__(self, rules: Sequence[Rule], delay_ms: int) -> None:
        self.rules = price_rules(rules)
        self.delay_us = delay_ms * 1000

    def __call__(
        self, key: tuple[Any, ...], batches: Iterator[pd.DataFrame], state: GroupState
    ) -> Iterator[pd.DataFrame]:
        saved = (int(state.get[0]), json.loads(state.get[1])) if state.exists else ()
        symbol = SymbolState(str(key[0]), self.rules, self.delay_us, *saved)
        columns = ("trade_time_us", "trade_id", "price", "receive_time_us")
        out, dropped = feed_in_order(
            batches, columns, lambda t, i, p, r: symbol.feed(int(t), int(i), str(p), int(r))
        )
        if symbol.newest is not None:
            state.update((symbol.newest, symbol.windows_json()))
        yield from window_frames(symbol.symbol, out, dropped)


def feed_in_order(
    batches: Iterator[pd.DataFrame], columns: Sequence[str], feed: Callable[..., list[tuple[Any, ...]] | None]
) -> tuple[list[tuple[Any, ...]], int]:
    """A group's rows in Kafka's order (a shuffle does not keep it; the offsets do), each row's
    ``columns`` fed to ``feed``: the rows it emits, and how many it found late (None)."""
    import pandas as pd

    frame = pd.concat(list(batches), ignore_index=True)
    frame = frame.sort_values(["kafka_partition", "kafka_offset"], kind="stable")
    out: list[tuple[Any, ...]] = []
    dropped = 0
    for values in zip(*(frame[c].tolist() for c in columns), strict=True):
        rows = feed(*values)
        if rows is None:
            dropped += 1
        else:
            out.extend(rows)
    return out, dropped


def window_frames(symbol: str, out: list[tuple[Any, ...]], dropped: int) -> Iterator[pd.DataFrame]:
    """An operator's output for one group: its rows, and a ``late`` row counting what it dropped."""
    import pandas as pd

    if dropped:
        out.append(("", symbol, "late", 0, "", "", 0, dropped))
    if out:
        yield pd.DataFrame.from_records(out, columns=WINDOW_COLUMNS)


WINDOW_COLUMNS = [
    "rule",
    "symbol",
    "kind",
    "window_start_us",
    "open",
    "close",
    "trigger_receive_time_us",
    "dropped",
]


def symbol_windows(trades: DataFrame, rules: Sequence[Rule], delay_ms: int) -> DataFrame:
    from pyspark.sql.streaming.state import GroupStateTimeout

    columns = [
        "symbol",
        "trade_id",
        "price",
        "trade_time_us",
        "receive_time_us",
        "kafka_partition",
        "kafka_offset",
    ]
    return (
        trades.select(*columns)
        .groupBy("symbol")
        .applyInPandasWithState(
            SymbolWindows(rules, delay_ms),
            WINDOW_SCHEMA,
            _STATE_SCHEMA,
            "append",
            GroupStateTimeout.NoTimeout,
        )
    )


def alert_windows(trades: DataFrame, rules: Sequence[Rule], delay_ms: int) -> DataFrame:
    """The whole plan from a trades stream (:data:`~cryptopipe.alerting.kafka_source.TRADE_SCHEMA`)."""
    from pyspark.sql import functions as F

    observed = observe_input(trades, rules, delay_ms)
    return symbol_windows(observed.where(F.col("error").isNull()), rules, delay_ms)


def native_trades(spark: SparkSession, options: dict[str, str]) -> DataFrame:
    """Trades through Spark's own Kafka source (needs spark-sql-kafka on the classpath)."""
    from pyspark.sql import functions as F

    raw = spark.readStream.format("kafka").options(**options).load()
    payload = F.from_json(
        F.col("value").cast("string"),
        "v INT, symbol STRING, trade_id BIGINT, price STRING, trade_time_us BIGINT, receive_time_us BIGINT",
    )
    parsed = raw.select(
        payload.alias("t"), F.col("partition").alias("kafka_partition"), F.col("offset").alias("kafka_offset")
    )
    ok = (
        (F.col("t.v") == 1)
        & F.col("t.symbol").isNotNull()
        & F.col("t.trade_id").isNotNull()
        & F.col("t.price").cast("decimal(38,18)").isNotNull()
        & F.col("t.trade_time_us").isNotNull()
        & F.col("t.receive_time_us").isNotNull()
    )
    return parsed.select(
        F.col("t.symbol").alias("symbol"),
        F.col("t.trade_id").alias("trade_id"),
        F.col("t.price").alias("price"),
        F.col("t.trade_time_us").alias("trade_time_us"),
        F.col("t.receive_time_us").alias("receive_time_us"),
        "kafka_partition",
        "kafka_offset",
        F.when(ok, F.lit(None).cast("string")).otherwise(F.lit("invalid_trade")).alias("error"),
    )
