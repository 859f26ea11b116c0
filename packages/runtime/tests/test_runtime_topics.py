"""ensure_topics creates each topic with its own configs: retention for the streams, compaction for
the books' checkpoints."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from cryptopipe.runtime import ensure_topics
from cryptopipe.schemas import KafkaSettings
from cryptopipe.schemas.topics import BOOK_SNAPSHOTS, BOOK_UPDATES


def test_a_compacted_topic_is_created_compacted(kafka_settings: KafkaSettings, kafka: Any) -> None:
    prefix = kafka_settings.topic_prefix
    specs = [BOOK_UPDATES.with_prefix(prefix), BOOK_SNAPSHOTS.with_prefix(prefix)]
    assert ensure_topics(kafka_settings, specs) == [spec.name for spec in specs]
    admin = AdminClient(kafka_settings.client_config())
    resources = [ConfigResource(ConfigResource.Type.TOPIC, spec.name) for spec in specs]
    try:
        updates, snapshots = (admin.describe_configs([r])[r].result(timeout=10) for r in resources)
    except Exception as exc:
        pytest.xfail(f"{kafka.kind} cannot describe topic configs: {exc}")
    assert snapshots["cleanup.policy"].value == "compact"
    assert updates["cleanup.policy"].value == "delete"
    assert updates["retention.ms"].value == str(BOOK_UPDATES.retention_ms)
