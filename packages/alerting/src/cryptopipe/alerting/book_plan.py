"""The streaming plan of the book rules: ``book-updates`` in, the same window rows as trades out.

    book-updates (Kafka, key = symbol) -> (symbol, value, kafka_partition, kafka_offset)
      -> one Python stateful operator per symbol (:class:`BookWindows`), records in offset order,
         driving :class:`~cryptopipe.alerting.book_state.BookState` from its checkpointed state
      -> WINDOW_SCHEMA rows -> the same sink as the trades' query

The state is the symbol's whole book (it must be: depth within a band needs every level near
the mid, wherever the mid goes) and its open windows and episodes, as JSON.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from cryptopipe.alerting.book_state import BookState
from cryptopipe.alerting.plan import WINDOW_SCHEMA, feed_in_order, window_frames
from cryptopipe.alerting.rules import Rule, book_rules
from cryptopipe.schemas import DecodeError, decode_book_record

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming.state import GroupState

_STATE_SCHEMA = "state STRING"


class BookWindows:
    """``applyInPandasWithState`` function, one group per symbol, records in offset order.

    A symbol's records share one partition (the key is the symbol), so ``(kafka_partition,
    kafka_offset)`` is their order. A record that does not decode is skipped (the books consumer
    dead-letters it); a late point is counted in a ``late`` row, as for trades.
    """

    def __init__(self, rules: Sequence[Rule], delay_ms: int) -> None:
        self.rules = book_rules(rules)
        self.delay_us = delay_ms * 1000

    def __call__(
        self, key: tuple[Any, ...], batches: Iterator[pd.DataFrame], state: GroupState
    ) -> Iterator[pd.DataFrame]:
        symbol = BookState(str(key[0]), self.rules, self.delay_us)
        if state.exists:
            symbol.load(str(state.get[0]))

        def feed(value: Any) -> list[tuple[Any, ...]] | None:
            try:
                record = decode_book_record(str(value).encode())
            except DecodeError:
                return []
            return symbol.take(record)

        out, dropped = feed_in_order(batches, ("value",), feed)
        state.update((symbol.dump(),))
        yield from window_frames(symbol.symbol, out, dropped)


def book_windows(records: DataFrame, rules: Sequence[Rule], delay_ms: int) -> DataFrame:
    """The whole plan from a (symbol, value, kafka_partition, kafka_offset) stream."""
    from pyspark.sql import functions as F
    from pyspark.sql.streaming.state import GroupStateTimeout

    return (
        records.where(F.col("symbol").isNotNull() & F.col("value").isNotNull())
        .groupBy("symbol")
        .applyInPandasWithState(
            BookWindows(rules, delay_ms), WINDOW_SCHEMA, _STATE_SCHEMA, "append", GroupStateTimeout.NoTimeout
        )
    )


def native_book_records(spark: SparkSession, options: dict[str, str]) -> DataFrame:
    """``book-updates`` records through Spark's own Kafka source, undecoded."""
    from pyspark.sql import functions as F

    raw = spark.readStream.format("kafka").options(**options).load()
    return raw.select(
        F.col("key").cast("string").alias("symbol"),
        F.col("value").cast("string").alias("value"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
    )
