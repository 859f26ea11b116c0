"""Errors of the experiment package."""

from __future__ import annotations


class ExperimentError(Exception):
    """Base class: an experiment could not be run, read or compared."""


class ResultError(ExperimentError):
    """A result directory is missing, truncated, mislabelled or not a result at all."""
