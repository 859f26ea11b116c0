"""BookSync against a reference exchange: any interleaving ends in the exact book or a counted resync.

The model exchange changes one level per update id and groups consecutive updates into diff events,
as ``@depth@100ms`` does; it keeps the true book after every update id, so a snapshot can be taken at
any id (fresh, older than the buffered stream, older than the book). Events can be delivered, lost
(a gap) or delivered again. Whenever the machine has a live book it must equal the true book at the
book's update id, and every event fed must be in exactly one counter.
"""

from __future__ import annotations

from collections import Counter, deque
from decimal import Decimal

import msgspec
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cryptopipe.ingest.book import (
    Applied,
    BookSync,
    Dropped,
    ResyncStarted,
    SnapshotNeeded,
    SyncOutput,
)
from cryptopipe.schemas import DepthDiff, DepthSnapshot

SYMBOL = "BTCUSDT"
#: Bids live below 100 and asks above, so the true book is never crossed.
BID_PRICES = [Decimal(price) for price in range(90, 100)]
ASK_PRICES = [Decimal(price) for price in range(101, 111)]
QUANTITIES = [Decimal(qty) for qty in ("0", "1", "2.5", "3")]
FIRST_ID = 1000

#: One update: (is_bid, price index, quantity index).
UPDATES = st.tuples(st.booleans(), st.integers(0, 9), st.integers(0, len(QUANTITIES) - 1))

Side = dict[Decimal, Decimal]


class ExchangeVsBookSync(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sync = BookSync(SYMBOL, max_buffered=8)
        #: The true book after each update id, from FIRST_ID on.
        self.history: list[tuple[Side, Side]] = [({BID_PRICES[-1]: Decimal(1)}, {ASK_PRICES[0]: Decimal(1)})]
        self.emitted: list[DepthDiff] = []
        self.in_flight: deque[DepthDiff] = deque()
        self.delivered: list[DepthDiff] = []
        self.fed = 0
        self.seen: Counter[str] = Counter()

    @property
    def latest_id(self) -> int:
        return FIRST_ID + len(self.history) - 1

    def true_book(self, update_id: int) -> tuple[Side, Side]:
        return self.history[update_id - FIRST_ID]

    @rule(updates=st.lists(UPDATES, min_size=1, max_size=4))
    def exchange_moves(self, updates: list[tuple[bool, int, int]]) -> None:
        """The exchange applies some updates and emits them as one diff event."""
        first = self.latest_id + 1
        changed: tuple[Side, Side] = ({}, {})
        for is_bid, price_index, qty_index in updates:
            bids, asks = (dict(side) for side in self.history[-1])
            side, prices = (bids, BID_PRICES) if is_bid else (asks, ASK_PRICES)
            price, qty = prices[price_index], QUANTITIES[qty_index]
            if qty == side.get(price, 0):  # every update changes the book, so a missed one shows
                qty = QUANTITIES[(qty_index + 1) % len(QUANTITIES)]
            if qty:
                side[price] = qty
            else:
                side.pop(price, None)
            changed[0 if is_bid else 1][price] = qty
            self.history.append((bids, asks))
        event = DepthDiff(
            symbol=SYMBOL,
            first_update_id=first,
            final_update_id=self.latest_id,
            event_time_us=self.latest_id,
            bids=tuple(changed[0].items()),
            asks=tuple(changed[1].items()),
        )
        self.emitted.append(event)
        self.in_flight.append(event)

    @precondition(lambda self: self.in_flight)
    @rule()
    def deliver(self) -> None:
        self.feed(self.in_flight.popleft())

    @precondition(lambda self: self.in_flight)
    @rule()
    def lose(self) -> None:
        """The event never arrives: a gap in the stream."""
        self.in_flight.popleft()

    @precondition(lambda self: self.in_flight)
    @rule()
    def deliver_corrupted(self) -> None:
        """The next event arrives with a bid above an ask: applied anywhere, it must end the book."""
        true = self.in_flight.popleft()
        bogus = ((Decimal(200), Decimal(1)),)
        self.feed(msgspec.structs.replace(true, bids=true.bids + bogus, asks=true.asks + bogus))

    @precondition(lambda self: self.emitted)
    @rule(data=st.data())
    def deliver_again(self, data: st.DataObject) -> None:
        """An event already emitted (delivered or lost) arrives (again), out of order."""
        self.feed(data.draw(st.sampled_from(self.emitted)))

    @rule(data=st.data())
    def snapshot(self, data: st.DataObject) -> None:
        """A REST snapshot at the latest id (fresh), next to a recent event's ids, or at any earlier id."""
        recent = self.emitted[-3:] + self.delivered[-3:]
        near = {e.first_update_id + step for e in recent for step in (-2, -1, 0)}
        near |= {e.final_update_id for e in recent}
        ids = sorted(i for i in near if FIRST_ID <= i <= self.latest_id)
        choices = [st.just(self.latest_id), st.integers(FIRST_ID, self.latest_id)]
        update_id = data.draw(st.one_of(*choices, st.sampled_from(ids)) if ids else st.one_of(*choices))
        self.record(self.sync.on_snapshot(self.snapshot_at(update_id)))

    def snapshot_at(self, update_id: int) -> DepthSnapshot:
        bids, asks = self.true_book(update_id)
        return DepthSnapshot(
            symbol=SYMBOL,
            last_update_id=update_id,
            bids=tuple(sorted(bids.items(), reverse=True)),
            asks=tuple(sorted(asks.items())),
        )

    def feed(self, event: DepthDiff) -> list[SyncOutput]:
        self.fed += 1
        self.delivered.append(event)
        return self.record(self.sync.on_diff(event))

    def record(self, outputs: list[SyncOutput]) -> list[SyncOutput]:
        """Tally the outputs, to check them against the counters."""
        for output in outputs:
            name = type(output).__name__
            if isinstance(output, Dropped):
                name += "." + output.reason
                self.seen[name] += output.count - 1
            elif isinstance(output, Applied):
                assert self.sync.book is None or self.sync.book.update_id >= output.diff.final_update_id
            self.seen[name] += 1
            event(
                name if not isinstance(output, (ResyncStarted, SnapshotNeeded)) else f"{name}.{output.reason}"
            )
        return outputs

    @invariant()
    def a_live_book_is_exact(self) -> None:
        book = self.sync.book
        if book is not None:
            assert (dict(book.bids), dict(book.asks)) == self.true_book(book.update_id)
            assert not book.is_crossed()

    @invariant()
    def every_event_is_counted_once(self) -> None:
        counters = self.sync.counters
        assert counters.fed == self.fed
        assert counters.balanced()
        assert counters.applied == self.seen["Applied"]
        assert counters.skipped_older_than_snapshot == self.seen["Dropped.older_than_snapshot"]
        assert counters.in_resync_gap == self.seen["Dropped.resync_gap"]
        assert sum(counters.resyncs.values()) == self.seen["ResyncStarted"]
        assert sum(counters.snapshot_requests.values()) == self.seen["SnapshotNeeded"]

    def teardown(self) -> None:
        """One more event, everything delivered, a fresh snapshot if asked: the book is the exchange's."""
        self.exchange_moves([(True, 0, 2)])
        while self.in_flight:
            self.deliver()
        if self.sync.book is None:
            assert self.sync.awaiting_snapshot, "no live book, yet no snapshot asked for"
            self.record(self.sync.on_snapshot(self.snapshot_at(self.latest_id)))
        book = self.sync.book
        assert book is not None
        assert book.update_id == self.latest_id
        self.a_live_book_is_exact()
        self.every_event_is_counted_once()


ExchangeVsBookSync.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestExchangeVsBookSync = ExchangeVsBookSync.TestCase
