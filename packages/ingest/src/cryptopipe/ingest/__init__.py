"""Binance WebSocket trades into Kafka, with gap backfill and dead letters.

``Ingest(settings, kafka).run(stop)`` streams ``settings.symbols`` from the exchange's combined
streams into the ``prices`` topic, keyed by symbol, in trade-id order per symbol.
"""

from cryptopipe.ingest.errors import BackfillError, ConfigError, IngestError
from cryptopipe.ingest.publisher import IngestStats
from cryptopipe.ingest.service import Ingest
from cryptopipe.ingest.settings import IngestSettings, load_settings

__all__ = [
    "BackfillError",
    "ConfigError",
    "Ingest",
    "IngestError",
    "IngestSettings",
    "IngestStats",
    "load_settings",
]
