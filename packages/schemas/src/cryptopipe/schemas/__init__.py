"""Shared message types, wire format, topics and connection settings.

The bottom of the dependency graph: every other cryptopipe package imports this one, and this
one imports none of them.
"""

from cryptopipe.schemas.config import KafkaSettings, RedisSettings
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
    "WIRE_VERSION",
    "Alert",
    "AlertKind",
    "DeadLetter",
    "DecodeError",
    "KafkaSettings",
    "RedisSettings",
    "SchemaError",
    "Side",
    "TopicSpec",
    "Trade",
    "TradeKind",
    "decode_alert",
    "decode_dead_letter",
    "decode_trade",
    "encode",
    "encode_key",
]
