"""StartStop: a ``with`` block starts the thing (unless it already runs) and stops it."""

from __future__ import annotations

import pytest

from cryptopipe.runtime.lifecycle import StartStop


class _Thing(StartStop):
    def __init__(self, *, once: bool) -> None:
        self.once = once
        self.calls: list[str] = []

    @property
    def _started(self) -> bool:
        return self.once and "start" in self.calls

    def start(self) -> _Thing:
        self.calls.append("start")
        return self

    def stop(self) -> None:
        self.calls.append("stop")


def test_with_starts_then_stops_even_when_the_block_raises() -> None:
    thing = _Thing(once=False)
    entered: list[_Thing] = []

    def use() -> None:
        with thing as started:
            entered.append(started)
            raise ValueError("in the block")

    with pytest.raises(ValueError, match="in the block"):
        use()
    assert entered == [thing]
    assert thing.calls == ["start", "stop"]


def test_with_does_not_start_twice_what_says_it_started() -> None:
    with _Thing(once=True).start() as thing:
        assert thing.calls == ["start"]
    assert thing.calls == ["start", "stop"]
