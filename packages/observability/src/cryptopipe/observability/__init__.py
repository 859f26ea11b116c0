"""Metrics catalogue and endpoints shared by every cryptopipe service."""

from cryptopipe.observability.metrics import LATENCY_BUCKETS, CatalogueEntry, catalogue
from cryptopipe.observability.server import serve_metrics

__all__ = ["LATENCY_BUCKETS", "CatalogueEntry", "catalogue", "serve_metrics"]
