"""Where a Prometheus server binary is, for the embedded mode's optional metrics scraper."""

from __future__ import annotations

import logging
import shutil

log = logging.getLogger(__name__)


def resolve_prometheus_binary() -> str | None:
    """Path of ``prometheus`` on PATH (``apt-get install prometheus``), or None when absent."""
    path = shutil.which("prometheus")
    log.debug("prometheus binary: %s", path or "not found")
    return path
