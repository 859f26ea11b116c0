"""Ingest's exceptions."""

from __future__ import annotations


class IngestError(Exception):
    """Base class of every error this package raises."""


class ConfigError(IngestError):
    """A setting is missing or wrong; the message names the environment variable."""


class BackfillError(IngestError):
    """The REST backfill failed for good (after retries)."""

    def __init__(self, symbol: str, from_id: int, detail: str) -> None:
        self.symbol = symbol
        self.from_id = from_id
        self.detail = detail
        super().__init__(f"backfill of {symbol} from id {from_id} failed: {detail}")
