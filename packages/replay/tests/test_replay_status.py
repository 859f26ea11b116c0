"""The exchange says where its tape is, for the tools that run it (`up --exit-on-finish`)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from cryptopipe.replay.rest_status import STATUS_PATH


def _status(rest_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(rest_url + STATUS_PATH, timeout=5) as response:
        return dict(json.loads(response.read()))


def test_the_status_says_when_the_tape_has_finished(replay_exchange_factory: Any) -> None:
    exchange = replay_exchange_factory(
        symbols=("BTCUSDT",), rate=200.0, count=20, speed="max", start_on_subscribe=False
    )
    assert exchange.wait_finished(30)
    status = _status(exchange.rest_url)
    assert status["finished"] is True
    assert status["started"] is True
    assert status["error"] is None
    assert status["trades_played"] == 20
