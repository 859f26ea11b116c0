"""Binance WebSocket trades and order books into Kafka, with gap backfill, book resyncs and dead letters.

``Ingest(settings, kafka).run(stop)`` streams ``settings.symbols`` from the exchange's combined
streams into the ``prices`` topic, keyed by symbol, in trade-id order per symbol. With
``INGEST_DEPTH`` on it also keeps each symbol's order book in sync (Binance's procedure, REST
snapshots within the weight budget) and publishes it to ``book-updates`` and ``book-snapshots``
(docs/order-books.md).
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
