"""Errors of the skew package."""

from __future__ import annotations


class SkewError(Exception):
    """Base class of every error this package raises."""


class ReferenceUnavailable(SkewError):
    """A time reference did not give a usable answer.

    ``reference`` names it; ``reason`` is a short, stable label (a metric label value):
    ``timeout``, ``connection``, ``http_status``, ``bad_response``, ``ntp_kiss_of_death``,
    ``ntp_unsynchronised``.
    """

    def __init__(self, reference: str, reason: str, detail: str) -> None:
        self.reference = reference
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reference}: {reason}: {detail}")
