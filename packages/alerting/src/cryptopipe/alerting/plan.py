"""The streaming plan: trades in, one row per closed window (or early crossing) out.

Data flow::

    prices (Kafka) -> trades (symbol, trade_id, price, trade_time_us, receive_time_us)
      -> observe(per-batch figures for metrics and alert latency)
      -> withWatermark(event_time, delay)
      -> one row per (trade, rule that applies to its symbol), with the rule's window
      -> only final rules: native aggregation per (rule, symbol, window): open/close = price
         at min/max of (trade_time_us, trade_id); emitted in append mode when the watermark
         passes the window end
      -> any early rule: a Python stateful operator per (rule, symbol, window) for all rules,
         which fires early windows once when the running change crosses the threshold and
         emits the others at the close (one operator, so Kafka is read once per micro-batch:
         a union of two operators would scan the source twice)
    -> WINDOW_SCHEMA rows; thresholds of final rules are applied on the driver, exactly, in Decimal.

Every rule shares one aggregation: the window end is computed per row from the rule's length
and marked as the event-time column of the aggregation (Spark's own ``window()`` does the same
internally), so Spark evicts a (rule, symbol, window) group, and drops trades for it, exactly when
``window_end <= watermark``: Spark's semantics for windowed aggregations. The late-trade count
is Spark's ``numRowsDroppedByWatermark``.

Prices are DECIMAL(38,18) in Spark (exact; Binance sends at most 8 decimals) and strings on the
way out; ``pct_change`` is computed once, in Decimal, on the driver.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from cryptopipe.alerting.rules import Rule

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.streaming.state import GroupState

#: What the plan emits; ``kind`` is ``final`` (a closed window; the threshold is applied by the
#: sink) or ``early`` (already crossed). ``trigger_receive_time_us`` is 0 when unknown.
WINDOW_SCHEMA = (
    "rule STRING, symbol STRING, kind STRING, window_start_us BIGINT, open STRING, close STRING, "
    "trigger_receive_time_us BIGINT"
)
_EARLY_STATE_SCHEMA = (
    "open_time_us BIGINT, open_id BIGINT, open STRING, close_time_us BIGINT, close_id BIGINT, close STRING, "
    "fired BOOLEAN, trades BIGINT"
)
#: Name of the per-batch observation (see :func:`observe_input`).
OBSERVATION = "cryptopipe_input"
_WATERMARK_DELAY_KEY = "spark.watermarkDelayMs"


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
    for window_us in sorted({rule.window_us for rule in rules}):
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


def _per_rule(trades: DataFrame, rules: Sequence[Rule], delay_ms: int) -> DataFrame:
    """One row per (trade, applicable rule) with the window it falls in.

    The rules are literals exploded per row (no join: a broadcast join would run a Spark job of
    its own in every micro-batch).
    """
    from pyspark.sql import functions as F

    candidates = []
    for rule in rules:
        entry = F.struct(
            F.lit(rule.name).alias("rule"), F.lit(rule.window_us).cast("bigint").alias("window_us")
        )
        if rule.symbols is not None:
            entry = F.when(F.col("symbol").isin(sorted(rule.symbols)), entry)
        candidates.append(entry)
    exploded = (
        trades.withColumn("applicable", F.explode(F.array_compact(F.array(*candidates))))
        .select("*", "applicable.*")
        .drop("applicable")
    )
    start = F.col("trade_time_us") - F.pmod(F.col("trade_time_us"), F.col("window_us"))
    return exploded.withColumn("window_start_us", start).withColumn(
        "window_end",
        F.timestamp_micros(F.col("window_start_us") + F.col("window_us")).alias(
            "window_end", metadata={_WATERMARK_DELAY_KEY: delay_ms}
        ),
    )


def final_windows(per_rule: DataFrame) -> DataFrame:
    """Closed windows of final-mode rules, all of them (the sink applies thresholds)."""
    from pyspark.sql import functions as F

    key = F.struct("trade_time_us", "trade_id", F.col("price").cast("decimal(38,18)").alias("price"))
    return (
        per_rule.groupBy("rule", "symbol", "window_end", "window_start_us")
        .agg(F.min(key).alias("first"), F.max(key).alias("last"))
        .select(
            "rule",
            "symbol",
            F.lit("final").alias("kind"),
            "window_start_us",
            F.col("first.price").cast("string").alias("open"),
            F.col("last.price").cast("string").alias("close"),
            F.lit(0).cast("bigint").alias("trigger_receive_time_us"),
        )
    )


class StatefulWindows:
    """``applyInPandasWithState`` function, one group per (rule, symbol, window); used when any
    rule is in early mode (for every rule, so that Kafka is scanned once per micro-batch).

    State: the first and last trade seen by (trade time, trade id), whether the window fired.
    For early-mode rules, trades are taken in (trade time, trade id) order within a micro-batch;
    the first one after which ``|last - first| / first`` exceeds the threshold fires the early
    alert. When the watermark passes the window end (event-time timeout), a window that never
    fired is emitted as ``final`` for the sink's threshold check; one that fired is dropped.
    """

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.thresholds = {rule.name: (rule.threshold, dict(rule.overrides)) for rule in rules}
        self.windows_us = {rule.name: rule.window_us for rule in rules}
        self.early = {rule.name for rule in rules if rule.mode == "early"}

    def __call__(
        self, key: tuple[Any, ...], batches: Iterator[pd.DataFrame], state: GroupState
    ) -> Iterator[pd.DataFrame]:
        import pandas as pd

        rule, symbol, start_us = str(key[0]), str(key[1]), int(key[2])
        if state.hasTimedOut:
            saved = state.get
            state.remove()
            if not saved[6]:
                yield _rows(pd, [(rule, symbol, "final", start_us, saved[2], saved[5], 0)])
            return
        frame = pd.concat(list(batches), ignore_index=True).sort_values(["trade_time_us", "trade_id"])
        if state.exists:
            open_t, open_id, open_p, close_t, close_id, close_p, fired, count = state.get
        else:
            first = frame.iloc[0]
            open_t, open_id, open_p = int(first.trade_time_us), int(first.trade_id), str(first.price)
            close_t, close_id, close_p = open_t, open_id, open_p
            fired, count = False, 0
        default, overrides = self.thresholds[rule]
        threshold = overrides.get(symbol, default)
        early = rule in self.early
        out: list[tuple[Any, ...]] = []
        times = frame["trade_time_us"].tolist()
        ids = frame["trade_id"].tolist()
        prices = frame["price"].tolist()
        receives = frame["receive_time_us"].tolist()
        for t, i, p, r in zip(times, ids, prices, receives, strict=True):
            if (t, i) < (open_t, open_id):
                open_t, open_id, open_p = t, i, p
            if (t, i) >= (close_t, close_id):
                close_t, close_id, close_p = t, i, p
            count += 1
            if early and not fired:
                first_price, last_price = Decimal(open_p), Decimal(close_p)
                if first_price > 0 and abs(last_price - first_price) > threshold * first_price:
                    fired = True
                    out.append((rule, symbol, "early", start_us, open_p, close_p, int(r)))
        state.update((open_t, open_id, open_p, close_t, close_id, close_p, fired, count))
        state.setTimeoutTimestamp((start_us + self.windows_us[rule]) // 1000 - 1)
        if out:
            yield _rows(pd, out)


def _rows(pd: Any, rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    columns = ["rule", "symbol", "kind", "window_start_us", "open", "close", "trigger_receive_time_us"]
    return pd.DataFrame.from_records(rows, columns=columns)


def stateful_windows(per_rule: DataFrame, rules: Sequence[Rule]) -> DataFrame:
    from pyspark.sql.streaming.state import GroupStateTimeout

    columns = [
        "rule",
        "symbol",
        "window_start_us",
        "window_end",
        "trade_time_us",
        "trade_id",
        "price",
        "receive_time_us",
    ]
    return (
        per_rule.select(*columns)
        .groupBy("rule", "symbol", "window_start_us")
        .applyInPandasWithState(
            StatefulWindows(rules),
            WINDOW_SCHEMA,
            _EARLY_STATE_SCHEMA,
            "append",
            GroupStateTimeout.EventTimeTimeout,
        )
    )


def alert_windows(trades: DataFrame, rules: Sequence[Rule], delay_ms: int) -> DataFrame:
    """The whole plan from a trades stream (:data:`~cryptopipe.alerting.kafka_source.TRADE_SCHEMA`)."""
    from pyspark.sql import functions as F

    observed = observe_input(trades, rules, delay_ms)
    valid = (
        observed.where(F.col("error").isNull())
        .select("symbol", "trade_id", "price", "trade_time_us", "receive_time_us")
        .withColumn("event_time", F.timestamp_micros("trade_time_us"))
        .withWatermark("event_time", f"{delay_ms} milliseconds")
    )
    per_rule = _per_rule(valid, rules, delay_ms)
    if any(rule.mode == "early" for rule in rules):
        return stateful_windows(per_rule, rules)
    return final_windows(per_rule)


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
