"""Log lines an outage repeats are rate limited, and the next one says how many were held back."""

from __future__ import annotations

import logging
import time

import pytest

from cryptopipe.runtime.logs import RateLimitFilter, rate_limited_logger


def test_repeats_of_one_kind_are_held_back_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    logger = rate_limited_logger("cryptopipe.test.librdkafka", interval_s=0.2)
    assert rate_limited_logger("cryptopipe.test.librdkafka") is logger
    assert sum(isinstance(f, RateLimitFilter) for f in logger.filters) == 1
    with caplog.at_level(logging.INFO, logger="cryptopipe.test.librdkafka"):
        for _ in range(50):  # librdkafka's call shape: (fac, client name, message)
            logger.error("%s [%s] %s", "FAIL", "rdkafka#consumer-1", "failed")
        logger.warning("%s [%s] %s", "SESSTMOUT", "rdkafka#consumer-1", "session timed out")
        time.sleep(0.25)
        logger.error("%s [%s] %s", "FAIL", "rdkafka#consumer-1", "failed")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "FAIL [rdkafka#consumer-1] failed",
        "SESSTMOUT [rdkafka#consumer-1] session timed out",
        "FAIL [rdkafka#consumer-1] failed (49 similar lines in the last 0.2 s held back)",
    ]
