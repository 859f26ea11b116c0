"""Helpers for the order-book tests (no tests here): a synthetic exchange book that writes the
contract's records with the true book beside each one, and a producer that reports offsets."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from confluent_kafka import Message, Producer

from cryptopipe.schemas import (
    BookCheckpoint,
    BookRecord,
    BookResetRecord,
    BookUpdateRecord,
    KafkaSettings,
    Level,
    encode_book,
    encode_key,
)
from cryptopipe.schemas.topics import PARTITIONER

Side = dict[Decimal, Decimal]


def sorted_levels(side: Side, *, bids: bool) -> tuple[Level, ...]:
    return tuple(sorted(side.items(), reverse=bids))


@dataclass
class TrueBook:
    """The exchange's book: bids and asks as dicts, the last update id and its event time."""

    update_id: int
    bids: Side = field(default_factory=dict)
    asks: Side = field(default_factory=dict)
    event_time_us: int | None = None

    def levels(self) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        return sorted_levels(self.bids, bids=True), sorted_levels(self.asks, bids=False)


class SyntheticBook:
    """One symbol's book moving by random diffs around a mid of 100 (never crossed).

    :meth:`reset` and :meth:`update` return the contract's records; ``truth[(epoch, id)]`` is the
    whole book right after each of them.
    """

    def __init__(self, symbol: str = "BTCUSDT", seed: int = 1, first_id: int = 1000) -> None:
        self.symbol = symbol
        self.rng = random.Random(seed)
        self.book = TrueBook(first_id)
        for i in range(1, 30):
            self.book.bids[Decimal(100) - Decimal(i) / 10] = Decimal(self.rng.randint(1, 9))
            self.book.asks[Decimal(100) + Decimal(i) / 10] = Decimal(self.rng.randint(1, 9))
        self.epoch = 0
        self.time_us = 1_723_161_254_000_000
        self.truth: dict[tuple[int, int], tuple[tuple[Level, ...], tuple[Level, ...]]] = {}

    def reset(self, reason: str = "initial", *, skip: int = 0) -> BookResetRecord:
        """A new epoch at the book's id (+ ``skip`` updates the stream never showed, as after a gap)."""
        for _ in range(skip):
            self._move()
        self.epoch += 1
        bids, asks = self.book.levels()
        self.truth[(self.epoch, self.book.update_id)] = (bids, asks)
        return BookResetRecord(
            symbol=self.symbol,
            epoch=self.epoch,
            reason=reason,
            update_id=self.book.update_id,
            bids=bids,
            asks=asks,
            event_time_us=self.book.event_time_us,
            receive_time_us=self.time_us,
        )

    def _move(self) -> tuple[list[Level], list[Level], int, int]:
        first = self.book.update_id + 1
        final = first + self.rng.randint(0, 3)
        self.time_us += 100_000
        changes: tuple[list[Level], list[Level]] = ([], [])
        for side, sign, out in ((self.book.bids, -1, changes[0]), (self.book.asks, 1, changes[1])):
            for _ in range(self.rng.randint(0, 4)):
                price = Decimal(100) + sign * Decimal(self.rng.randint(1, 40)) / 10
                qty = Decimal(0) if self.rng.random() < 0.3 else Decimal(self.rng.randint(1, 90)) / 10
                if qty:
                    side[price] = qty
                else:
                    side.pop(price, None)
                out.append((price, qty))
        self.book.update_id = final
        self.book.event_time_us = self.time_us
        return changes[0], changes[1], first, final

    def update(self) -> BookUpdateRecord:
        bids, asks, first, final = self._move()
        self.truth[(self.epoch, final)] = self.book.levels()
        return BookUpdateRecord(
            symbol=self.symbol,
            epoch=self.epoch,
            first_update_id=first,
            final_update_id=final,
            bids=tuple(bids),
            asks=tuple(asks),
            event_time_us=self.time_us,
            receive_time_us=self.time_us + 1500,
        )

    def checkpoint(self, partition: int, offset: int) -> BookCheckpoint:
        bids, asks = self.book.levels()
        return BookCheckpoint(
            symbol=self.symbol,
            epoch=self.epoch,
            update_id=self.book.update_id,
            bids=bids,
            asks=asks,
            event_time_us=self.book.event_time_us,
            updates_partition=partition,
            updates_offset=offset,
            checkpoint_time_us=self.time_us,
        )


def produce_book(
    settings: KafkaSettings, topic: str, messages: Iterable[BookRecord | BookCheckpoint]
) -> list[tuple[int, int]]:
    """Produce the messages keyed by symbol (Java's partitioner), in order; their (partition, offset)."""
    producer = Producer({**settings.client_config(), "partitioner": PARTITIONER, "enable.idempotence": True})
    placed: dict[int, tuple[int, int]] = {}

    def on_delivery(index: int) -> Callable[[object, Message], None]:
        def delivered(error: object, message: Message) -> None:
            assert error is None, error
            placed[index] = (message.partition() or 0, message.offset() or 0)

        return delivered

    for i, message in enumerate(messages):
        producer.produce(topic, encode_book(message), encode_key(message.symbol), on_delivery=on_delivery(i))
        producer.poll(0)
    assert producer.flush(30) == 0
    return [placed[i] for i in range(len(placed))]


def full_book(book: object) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
    """A held OrderBook's whole sides, best first, as the truth is kept."""
    from cryptopipe.schemas import OrderBook

    assert isinstance(book, OrderBook)
    return sorted_levels(dict(book.bids), bids=True), sorted_levels(dict(book.asks), bids=False)
