"""A service's final figures, written once at exit, atomically, as one JSON object.

One channel for a run's figures: a service's metrics registry. While it runs, ``/metrics``
serves it; when it has flushed and stopped, its stats file holds the same registry
(``"metrics"``: the exposition text, read back with :func:`final_scrape`) beside the service's
own counts (its ``Stats``). ``up`` watches the endpoints while the children run and reads the
books and the summary from these files after they stopped. A reader never sees half a file:
it is written beside and renamed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, generate_latest

from cryptopipe.observability import Scrape
from cryptopipe.runtime.files import read_json_object, write_json_atomic

#: The key of a stats file that holds the service's final metrics (exposition text).
METRICS_KEY = "metrics"


def as_dict(stats: object) -> dict[str, Any]:
    """A dataclass, a msgspec ``Struct``, a mapping or an object with ``as_dict()`` as a dict."""
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        return dataclasses.asdict(stats)
    if isinstance(stats, Mapping):
        return dict(stats)
    to_dict = getattr(stats, "as_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    fields = getattr(stats, "__struct_fields__", None)
    if fields is not None:
        return {name: getattr(stats, name) for name in fields}
    raise TypeError(f"cannot write {type(stats).__name__} as stats")


def write_stats(path: Path | str, stats: object, *, metrics: bool = False) -> None:
    """Write ``stats`` to ``path`` as JSON, atomically (a reader sees the old file or the new one).

    ``metrics``: also the process's whole metrics registry as it is now, under ``"metrics"``.
    """
    data = as_dict(stats)
    if metrics:
        data[METRICS_KEY] = generate_latest(REGISTRY).decode("utf-8")
    write_json_atomic(path, data)


def read_stats(path: Path | str | None) -> dict[str, Any]:
    """The stats a service wrote at ``path``; ``{}`` when it wrote none (it died, or never ran)."""
    return read_json_object(path)


def final_scrape(stats: Mapping[str, Any]) -> Scrape | None:
    """The final metrics a stats file carries, as a :class:`Scrape`; None when it has none."""
    text = stats.get(METRICS_KEY)
    return Scrape.from_text(text) if isinstance(text, str) else None
