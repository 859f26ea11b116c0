"""Shared message types, wire format, topics, connection settings and settings loading.

The bottom of the dependency graph: every other cryptopipe package imports this one, and this
one imports none of them.
"""

from cryptopipe.schemas.book import (
    BookTicker,
    DepthDiff,
    DepthSnapshot,
    Level,
    decode_book_ticker,
    decode_depth_snapshot,
    decode_depth_update,
)
from cryptopipe.schemas.config import (
    SETTINGS_CONFIG,
    ConfigError,
    KafkaSettings,
    RedisSettings,
    env,
    env_names,
    format_validation_error,
    load_settings,
    redact_url,
    setting,
    settings_of,
)
from cryptopipe.schemas.errors import DecodeError, SchemaError
from cryptopipe.schemas.messages import (
    WIRE_VERSION,
    Alert,
    AlertKind,
    DeadLetter,
    Side,
    Trade,
    TradeKind,
    decode_alert,
    decode_dead_letter,
    decode_trade,
    encode,
    encode_key,
)
from cryptopipe.schemas.topics import ALERTS, ALL_TOPICS, DEAD_LETTERS, PRICES, TopicSpec

__all__ = [
    "ALERTS",
    "ALL_TOPICS",
    "DEAD_LETTERS",
    "PRICES",
    "SETTINGS_CONFIG",
    "WIRE_VERSION",
    "Alert",
    "AlertKind",
    "BookTicker",
    "ConfigError",
    "DeadLetter",
    "DecodeError",
    "DepthDiff",
    "DepthSnapshot",
    "KafkaSettings",
    "Level",
    "RedisSettings",
    "SchemaError",
    "Side",
    "TopicSpec",
    "Trade",
    "TradeKind",
    "decode_alert",
    "decode_book_ticker",
    "decode_dead_letter",
    "decode_depth_snapshot",
    "decode_depth_update",
    "decode_trade",
    "encode",
    "encode_key",
    "env",
    "env_names",
    "format_validation_error",
    "load_settings",
    "redact_url",
    "setting",
    "settings_of",
]
