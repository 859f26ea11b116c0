"""Errors raised while decoding messages that cross a process boundary."""

from __future__ import annotations


class SchemaError(Exception):
    """Base class of every error this package raises."""


class DecodeError(SchemaError):
    """A payload could not be turned into a message.

    ``reason`` is a short, stable label (usable as a metric label); ``sample`` is the start of
    the offending payload, for logs and dead letters.
    """

    def __init__(self, reason: str, detail: str, payload: bytes | str = b"") -> None:
        self.reason = reason
        self.detail = detail
        raw = payload.encode("utf-8", "replace") if isinstance(payload, str) else payload
        self.sample = raw[:200]
        super().__init__(f"{reason}: {detail}")
