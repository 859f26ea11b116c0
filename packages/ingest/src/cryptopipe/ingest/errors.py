"""Ingest's exceptions."""

from __future__ import annotations

from cryptopipe.schemas import ConfigError

__all__ = ["BackfillError", "ConfigError", "IngestError", "ResumeError"]


class IngestError(Exception):
    """Base class of the errors this package raises, except :class:`ConfigError`.

    ``ConfigError`` (a setting is missing or wrong; the message names the environment variable)
    is the one every package shares, :class:`cryptopipe.schemas.ConfigError`.
    """


class BackfillError(IngestError):
    """The REST backfill failed for good (after retries)."""

    def __init__(self, symbol: str, from_id: int | None, detail: str) -> None:
        self.symbol = symbol
        self.from_id = from_id
        self.detail = detail
        where = "its latest trades" if from_id is None else f"from id {from_id}"
        super().__init__(f"backfill of {symbol} {where} failed: {detail}")


class ResumeError(IngestError):
    """The end of the trades topic could not be read at start (ingest then starts without resuming)."""

    def __init__(self, topic: str, detail: str) -> None:
        self.topic = topic
        self.detail = detail
        super().__init__(f"cannot read the end of {topic} to resume from: {detail}")
