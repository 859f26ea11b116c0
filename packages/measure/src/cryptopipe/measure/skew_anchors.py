"""``bench skew``'s real anchors: ``ntplib`` and ``chronyd`` against an NTP server over loopback
whose path and clock are the scenario's (the replay exchange's delay distributions, slept).

* ``ntplib``: one ``NTPClient.request`` per interval; its offset is the estimate.
* ``chronyd -Q -f /dev/null "server 127.0.0.1 port P iburst"``: chrony measures (a burst of a
  few exchanges, its own filter) and prints ``System clock wrong by X seconds (ignored)``
  without touching the clock; X is the offset (reference minus local).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ntplib

from cryptopipe.measure.skew_grid import Scenario, quantiles
from cryptopipe.replay.network import Sampler, ServerClock
from cryptopipe.skew.testing import NtpResponder

_WRONG_BY = re.compile(r"System clock wrong by (-?[0-9.]+) seconds")
CHRONY_TIMEOUT_S = 60.0


def _responder(scenario: Scenario, seed: int) -> tuple[NtpResponder, ServerClock]:
    sampler = Sampler(scenario.network(), seed=seed)
    clock = ServerClock(scenario.offset_ms, scenario.drift_ppm)
    responder = NtpResponder(
        request_delay_s=sampler.rest_request_s,
        response_delay_s=sampler.rest_response_s,
        clock_ns=lambda: clock.at_ns(clock.local_ns()),
    )
    return responder, clock


def _entry(scenario: Scenario, estimator: str, errors: list[float], covered: list[bool]) -> dict[str, Any]:
    """An entry shaped like the grid's; a constant offset's error is the corrected p50's too."""
    return {
        **scenario.conditions(),
        "estimator": estimator,
        "trials": len(errors),
        "offset_error_ms": quantiles([abs(e) for e in errors]),
        "network_p50_error_ms": quantiles([abs(e) for e in errors]),
        "coverage": round(sum(covered) / len(covered), 4) if covered else None,
        "step_detected_after_intervals": None,
    }


def ntplib_anchor(scenario: Scenario, trials: int, seed: int = 0) -> dict[str, Any]:
    """``trials`` single ``ntplib`` exchanges; the interval is NTP's: ± half the round trip."""
    responder, clock = _responder(scenario, seed)
    client = ntplib.NTPClient()
    errors: list[float] = []
    covered: list[bool] = []
    with responder:
        for _ in range(trials):
            reply = client.request("127.0.0.1", port=responder.port, version=4, timeout=5)
            truth_ms = clock.offset_at_ns(clock.local_ns()) / 1e6
            error = reply.offset * 1000 - truth_ms
            errors.append(error)
            covered.append(abs(error) <= reply.delay * 1000 / 2)
    return _entry(scenario, "ntplib, one exchange per interval (real, loopback)", errors, covered)


def _chrony_once(scenario: Scenario, seed: int) -> float | str:
    responder, clock = _responder(scenario, seed)
    with responder:
        try:
            done = subprocess.run(
                ["chronyd", "-Q", "-f", "/dev/null", f"server 127.0.0.1 port {responder.port} iburst"],
                capture_output=True,
                text=True,
                timeout=CHRONY_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"chronyd gave no estimate within {CHRONY_TIMEOUT_S:.0f} s"
        truth_ms = clock.offset_at_ns(clock.local_ns()) / 1e6
    found = _WRONG_BY.search(done.stdout + done.stderr)
    if found is None:
        said = (done.stderr or done.stdout).strip()[-300:]
        return f"chronyd exited {done.returncode} without an estimate: {said}"
    return float(found.group(1)) * 1000 - truth_ms


def chrony_anchor(scenario: Scenario, trials: int, parallel: int = 4) -> dict[str, Any]:
    """``trials`` runs of ``chronyd -Q`` (``parallel`` at a time, each with its own server)."""
    if shutil.which("chronyd") is None:
        return {
            **scenario.conditions(),
            "estimator": "chronyd -Q",
            "unavailable": "chronyd is not on PATH (Debian: apt-get install -y chrony)",
        }
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        outcomes = list(pool.map(lambda seed: _chrony_once(scenario, seed), range(trials)))
    errors = [o for o in outcomes if isinstance(o, float)]
    problems = [o for o in outcomes if isinstance(o, str)]
    if not errors:
        return {**scenario.conditions(), "estimator": "chronyd -Q", "unavailable": problems[0]}
    entry = _entry(scenario, "chronyd -Q, one burst (real, loopback; no interval reported)", errors, [])
    if problems:
        entry["failed_runs"] = problems
    return entry
