"""What the WebSocket and REST sides read from the exchange that serves them.

:class:`~cryptopipe.replay.exchange.ReplayExchange` is the one implementation; the protocol keeps
the sides from importing the exchange that imports them.
"""

from __future__ import annotations

from typing import Protocol

from cryptopipe.replay.config import ReplayConfig
from cryptopipe.replay.network import Sampler
from cryptopipe.replay.tape import ReplayStats, Tape


class Host(Protocol):
    """A started exchange: its config, its counters, its tape and its (possibly offset) clock."""

    @property
    def config(self) -> ReplayConfig: ...

    @property
    def stats(self) -> ReplayStats: ...

    @property
    def tape(self) -> Tape: ...

    @property
    def network(self) -> Sampler:
        """The REST delays' draws (each WS connection draws its own)."""
        ...

    def now_us(self) -> int: ...
