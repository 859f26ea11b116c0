"""Kafka -> Redis: one consumer loop, parameterised by a sink, writing idempotently.

``ConsumerLoop(PriceSink(redis), ...)`` keeps the latest price (never backwards) and a capped
history per symbol; ``ConsumerLoop(AlertSink(redis), ...)`` keeps a capped alert feed with each
alert exactly once; ``ConsumerLoop(BookSink(redis), ...)`` keeps the top of each symbol's order
book (never backwards). ``PriceStore`` / ``AlertStore`` / ``BookStore`` are the read side for the
dashboard; ``rebuild_books`` rebuilds exact books from Kafka alone, every symbol in one pass.
"""

from cryptopipe.schemas.book_follow import BookFollower, FollowCounts
from cryptopipe.store.alerts import AlertSink, AlertStore
from cryptopipe.store.book_rebuild import (
    RebuildError,
    Rebuilt,
    WarmStart,
    read_checkpoints,
    rebuild_book,
    rebuild_books,
)
from cryptopipe.store.book_store import BookStore, BookView, book_keys
from cryptopipe.store.books import BookSink
from cryptopipe.store.consumer import consumer_config
from cryptopipe.store.errors import ConfigError, ConsumerFatalError, StoreError
from cryptopipe.store.latency import LatencyReservoir
from cryptopipe.store.loop import ConsumerLoop, LoopStats
from cryptopipe.store.prices import PriceSink, PriceStore, history_member, price_keys
from cryptopipe.store.sink import Sink, WriteResult, connect_redis, delete_prefixed

__all__ = [
    "AlertSink",
    "AlertStore",
    "BookFollower",
    "BookSink",
    "BookStore",
    "BookView",
    "ConfigError",
    "ConsumerFatalError",
    "ConsumerLoop",
    "FollowCounts",
    "LatencyReservoir",
    "LoopStats",
    "PriceSink",
    "PriceStore",
    "RebuildError",
    "Rebuilt",
    "Sink",
    "StoreError",
    "WarmStart",
    "WriteResult",
    "book_keys",
    "connect_redis",
    "consumer_config",
    "delete_prefixed",
    "history_member",
    "price_keys",
    "read_checkpoints",
    "rebuild_book",
    "rebuild_books",
]
