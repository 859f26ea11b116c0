"""A service's final figures, written once at exit, atomically, as one JSON object.

The same figures its ``/metrics`` endpoint served while it ran (``up`` reads a run's books from
these files after the children stopped, and from the endpoints while they run: one set of
figures, two moments). A reader never sees half a file: it is written beside and renamed.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


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


def write_stats(path: Path | str, stats: object) -> None:
    """Write ``stats`` to ``path`` as JSON, atomically (a reader sees the old file or the new one)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(as_dict(stats), default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_stats(path: Path | str | None) -> dict[str, Any]:
    """The stats a service wrote at ``path``; ``{}`` when it wrote none (it died, or never ran)."""
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
