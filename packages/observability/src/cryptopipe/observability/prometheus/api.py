"""The one client of Prometheus' HTTP API: instant queries, target health and rule health."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any


class PrometheusError(Exception):
    """Prometheus answered with an error, or could not be reached (or, in infra, started)."""


def api_get(base_url: str, path: str, params: Mapping[str, str] | None = None, timeout: float = 10.0) -> Any:
    """``data`` of a Prometheus HTTP API answer.

    Raises :class:`PrometheusError` when the answer says ``status != success`` (with Prometheus'
    own error text), when the server cannot be reached, or when the body is not JSON.
    """
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    try:
        with urllib.request.urlopen(f"{base_url}{path}{query}", timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            body = json.load(exc)
        except (ValueError, OSError):
            raise PrometheusError(f"{path}: HTTP {exc.code} {exc.reason}") from exc
    except (OSError, ValueError) as exc:
        raise PrometheusError(f"{path}: {getattr(exc, 'reason', None) or exc}") from exc
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else body
        kind = body.get("errorType") if isinstance(body, dict) else "bad answer"
        raise PrometheusError(f"{path}: {kind}: {error}")
    return body["data"]


def instant_query(base_url: str, expr: str, timeout: float = 10.0) -> list[tuple[dict[str, str], float]]:
    """Evaluate PromQL now: ``[(labels, value), ...]`` for a vector, one unlabelled row for a scalar."""
    data = api_get(base_url, "/api/v1/query", {"query": expr}, timeout)
    if data["resultType"] == "scalar":
        return [({}, float(data["result"][1]))]
    if data["resultType"] != "vector":
        raise PrometheusError(f"expected a vector from {expr!r}, got {data['resultType']}")
    return [(dict(row["metric"]), float(row["value"][1])) for row in data["result"]]


def target_health(base_url: str) -> dict[str, list[str]]:
    """``{job: [health of each active target]}`` (``"up"``, ``"down"`` or ``"unknown"``)."""
    out: dict[str, list[str]] = {}
    for target in api_get(base_url, "/api/v1/targets", {"state": "active"})["activeTargets"]:
        out.setdefault(target["labels"]["job"], []).append(target["health"])
    return out


def all_rules_healthy(base_url: str) -> list[str]:
    """Names of rules whose last evaluation failed (empty when all are fine)."""
    bad = []
    for group in api_get(base_url, "/api/v1/rules")["groups"]:
        for rule in group["rules"]:
            if rule.get("health") == "err":
                bad.append(f"{rule['name']}: {rule.get('lastError')}")
    return bad
