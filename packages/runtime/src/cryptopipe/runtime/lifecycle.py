"""``with thing:`` for anything with ``start()`` and ``stop()``: the block starts it and stops it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class StartStop(ABC):
    """A context manager that calls :meth:`start` on entry and :meth:`stop` on exit.

    ``start`` returns ``self``. A subclass whose ``start`` must not run twice says so with
    :attr:`_started`; then ``with thing.start():`` works as well as ``with thing:``.
    """

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def stop(self) -> None: ...

    @property
    def _started(self) -> bool:
        """Whether entering should skip :meth:`start` (it already ran). Never, unless overridden."""
        return False

    def __enter__(self) -> Self:
        return self if self._started else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
