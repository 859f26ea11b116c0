"""argparse value types shared by every command."""

from __future__ import annotations

import argparse
import re


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None


def seconds_or_zero(text: str) -> float:
    """A number of seconds, 0 or more."""
    value = _seconds(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive_seconds(text: str) -> float:
    """A number of seconds above 0."""
    value = _seconds(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain_text(doc: str | None) -> str | None:
    """A docstring as ``--help`` shows it: reST roles and literals as plain words
    (``:class:`~a.b.Books``` -> ``Books``, ````--rate```` -> ``--rate``)."""
    if doc is None:
        return None
    text = _ROLE.sub(lambda match: match.group(1).rsplit(".", 1)[-1], doc)
    return _LITERAL.sub(r"\1", text)
