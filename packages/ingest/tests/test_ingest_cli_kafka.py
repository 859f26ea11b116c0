"""`cryptopipe ingest` without a broker: one line saying what to set, exit 2 (runtime.required_kafka)."""

from __future__ import annotations

import pytest

from cryptopipe.ingest import cli


def test_kafka_is_required(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.chdir("/")  # no .env here
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cryptopipe ingest: KAFKA_BOOTSTRAP_SERVERS is required")
    assert "cryptopipe up" in err
