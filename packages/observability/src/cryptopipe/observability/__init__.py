"""Metrics catalogue, endpoints and read-back shared by every cryptopipe service."""

from cryptopipe.observability.metrics import LATENCY_BUCKETS, CatalogueEntry, catalogue
from cryptopipe.observability.query import Scrape, exact_percentiles_ms, histogram_quantile
from cryptopipe.observability.server import serve_metrics

__all__ = [
    "LATENCY_BUCKETS",
    "CatalogueEntry",
    "Scrape",
    "catalogue",
    "exact_percentiles_ms",
    "histogram_quantile",
    "serve_metrics",
]
