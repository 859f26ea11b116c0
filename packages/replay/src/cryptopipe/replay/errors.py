"""The replay exchange's exceptions: one small hierarchy with typed attributes."""

from __future__ import annotations

from pathlib import Path


class ReplayError(Exception):
    """Base class of every error raised by :mod:`cryptopipe.replay`."""


class ReplayConfigError(ReplayError, ValueError):
    """A configuration value is invalid; ``field`` names the offending setting."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class SourceError(ReplayError):
    """A replay file is unusable: missing, of unknown kind, or malformed at ``path:line``."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path = Path(path)
        self.line = line
        self.message = message


class FetchError(ReplayError):
    """A data.binance.vision download failed; ``url`` is what we tried to get."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"could not download {url}: {message}")
        self.url = url
        self.message = message
