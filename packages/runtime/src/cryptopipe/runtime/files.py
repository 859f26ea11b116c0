"""JSON files written atomically and read forgivingly, and secrets written owner-only: the one way
a run's files are handled.

A reader polling for a file (a ready file, a stats file, a summary) never sees half of it: it is
written beside its target and renamed over it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path | str, document: Any, *, indent: int | None = None) -> Path:
    """Write ``document`` as JSON to ``path`` (parents created); a reader sees the old file or the new."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_text(json.dumps(document, indent=indent, default=str) + "\n", encoding="utf-8")
    staging.replace(path)
    return path


def read_json_object(path: Path | str | None) -> dict[str, Any]:
    """The JSON object at ``path``; ``{}`` when there is none (missing, unreadable, not an object)."""
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_private(path: Path, data: str | bytes, *, mode: int = 0o600) -> Path:
    """Write ``data`` to ``path`` (parents created) readable by its owner only: created with
    ``mode`` (0600), never wider at any moment, and kept so when the file already existed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data.encode("utf-8") if isinstance(data, str) else data)
    os.chmod(path, mode)
    return path
