"""NTP reference against a local NTP responder (no public NTP server is reachable in CI)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from cryptopipe.infra.testing import eventually
from cryptopipe.skew import NtpReference, ReferenceUnavailable, SkewEstimator
from cryptopipe.skew.testing import NtpResponder


@pytest.fixture
def responder() -> Iterator[NtpResponder]:
    with NtpResponder() as ntp:
        yield ntp


def _estimator(ntp: NtpResponder, timeout_s: float = 1.0, samples: int = 4) -> SkewEstimator:
    return SkewEstimator(NtpReference(ntp.host, ntp.port, timeout_s), samples=samples, spacing_s=0)


def _sample(name: str, metric: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric, {"reference": name, **labels}) or 0.0


@pytest.mark.parametrize("offset_ms", [250.0, -80.0, 0.0])
def test_offset_of_a_local_ntp_server_is_recovered(responder: NtpResponder, offset_ms: float) -> None:
    responder.offset_ns = round(offset_ms * 1e6)
    estimator = _estimator(responder)

    estimate = asyncio.run(estimator.sample_once())

    assert estimate.offset_ms == pytest.approx(offset_ms, abs=2.0)
    assert estimate.uncertainty_ms == pytest.approx(estimate.rtt_ms / 2)
    assert estimate.samples == 4
    assert estimate.reference == f"ntp:{responder.host}:{responder.port}"
    assert responder.requests == 4


def test_a_reply_to_another_request_is_ignored(responder: NtpResponder) -> None:
    responder.offset_ns = 250_000_000
    responder.behaviour = "stray_first"

    estimate = asyncio.run(_estimator(responder, samples=2).sample_once())

    assert estimate.offset_ms == pytest.approx(250, abs=2.0)


@pytest.mark.parametrize(
    ("behaviour", "reason"), [("kiss", "ntp_kiss_of_death"), ("unsynchronised", "ntp_unsynchronised")]
)
def test_refusing_servers_are_reported_with_a_reason(
    responder: NtpResponder, behaviour: str, reason: str
) -> None:
    responder.behaviour = behaviour  # type: ignore[assignment]

    with pytest.raises(ReferenceUnavailable) as caught:
        asyncio.run(_estimator(responder).sample_once())

    assert caught.value.reason == reason


def test_a_server_that_stops_answering_leaves_the_last_good_estimate_marked_stale(
    responder: NtpResponder,
) -> None:
    responder.offset_ns = -80_000_000
    estimator = _estimator(responder, timeout_s=0.2)
    name = estimator.reference.name
    errors_before = REGISTRY.get_sample_value(
        "cryptopipe_errors_total", {"component": "skew", "reason": "timeout"}
    )

    async def scenario() -> None:
        assert await estimator.update() is not None
        good = estimator.current
        assert good is not None
        assert not good.stale
        assert _sample(name, "cryptopipe_clock_estimate_stale") == 0
        assert _sample(name, "cryptopipe_clock_offset_seconds") == pytest.approx(-0.080, abs=0.002)

        responder.behaviour = "silent"
        assert await estimator.update() is None

        kept = estimator.current
        assert kept is not None
        assert kept.stale
        assert kept.offset_ms == good.offset_ms
        assert estimator.offset_us == good.offset_us
        assert isinstance(estimator.last_error, ReferenceUnavailable)
        assert estimator.last_error.reason == "timeout"
        assert _sample(name, "cryptopipe_clock_estimate_stale") == 1
        assert _sample(name, "cryptopipe_clock_offset_seconds") == pytest.approx(-0.080, abs=0.002)

        responder.behaviour = "answer"
        assert await estimator.update() is not None
        assert estimator.current is not None
        assert not estimator.current.stale

    asyncio.run(scenario())

    errors_after = REGISTRY.get_sample_value(
        "cryptopipe_errors_total", {"component": "skew", "reason": "timeout"}
    )
    assert (errors_after or 0) - (errors_before or 0) == estimator.max_consecutive_failures


def test_run_survives_a_server_that_never_answered(responder: NtpResponder) -> None:
    responder.behaviour = "silent"
    estimator = SkewEstimator(NtpReference(responder.host, responder.port, 0.1), samples=1, interval_s=0.01)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(estimator.run(stop))
        await asyncio.to_thread(eventually, lambda: responder.requests >= 3, 10, message="no retries")
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())

    assert estimator.current is None
    assert estimator.is_stale()
    assert estimator.corrected_latency_us(1_000, 500) is None


def test_a_closed_port_is_reported_not_raised_raw() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    reference = NtpReference("127.0.0.1", port, timeout_s=0.3)

    with pytest.raises(ReferenceUnavailable) as caught:
        asyncio.run(SkewEstimator(reference, samples=2, spacing_s=0).sample_once())

    assert caught.value.reason in ("connection", "timeout")
