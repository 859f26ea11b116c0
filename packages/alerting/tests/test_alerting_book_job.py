"""Book rules through the whole job on a real broker: the Spark query over ``book-updates`` and the
express lane each publish exactly the reference's book alerts, beside the trade alerts."""

from __future__ import annotations

from typing import Any

import pytest

from cryptopipe.alerting.book_reference import reference_book_alerts
from cryptopipe.infra.testing import eventually, produce
from cryptopipe.schemas import BOOK_UPDATES, PRICES, KafkaSettings, encode_book, encode_key

from .conftest import JobRunner, book_market, identity, read_alerts


def test_spark_and_the_express_lane_raise_the_reference_book_alerts(
    jobs: JobRunner, kafka_settings: KafkaSettings, topic_factory: Any
) -> None:
    topic_factory(PRICES)
    book_topic = topic_factory(BOOK_UPDATES)
    settings = jobs.settings(
        "1m:0.5%;spread>5bps:10s:name=wide;mid:1m:0.5%:early:name=mid;depth10bps<50:name=thin",
        source="auto",
        express=True,
    )
    job = jobs.start(settings)
    if job.source_kind != "native":
        pytest.skip("the book rules' Spark query reads with Spark's own Kafka source, which is not here")
    assert job.express is not None
    records = book_market()
    produce(kafka_settings, book_topic, ((encode_key(r.symbol), encode_book(r)) for r in records))
    expected = reference_book_alerts(records, settings.rules)
    assert {a.rule for a in expected} == {"wide", "mid", "thin"}

    def spark_published() -> bool:
        assert not job.await_termination(0.001), "query stopped"
        return sorted(identity(a) for a in jobs.published) == expected

    eventually(spark_published, timeout=90, message="Spark never published the book alerts")
    assert job.express.stats.alerts_published == len(expected)
    # Each book alert twice on the topic: the express lane's copy, then Spark's.
    assert sorted(identity(a) for a in read_alerts(kafka_settings)) == sorted(expected * 2)
