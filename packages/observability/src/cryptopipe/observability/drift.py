"""Keep dashboards and rules from drifting away from the code.

Two halves. :func:`problems` reads every PromQL expression in the generated rule files and
dashboards, extracts the metric names, resolves recorded series to the metrics they are built
from, and reports any name the catalogue does not define (with the right exposition suffix:
``_total`` for counters, ``_bucket/_sum/_count`` for histograms). :func:`assert_exported` checks
that a running pipeline actually exposes the names: the end-to-end test calls it with a scrape
of every component and :func:`queried_metrics`.

Metrics we do not export ourselves (cAdvisor's, kafka-exporter's, Prometheus' ``up``) are listed
in :data:`EXTERNAL_METRICS` with their source; anything else is drift.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from cryptopipe.observability import metrics as m
from cryptopipe.observability.query import Scrape

#: Series some other exporter provides, and which one (compose-only sources marked so).
EXTERNAL_METRICS: dict[str, str] = {
    "up": "Prometheus (scrape health of every target)",
    "container_cpu_usage_seconds_total": "cAdvisor (compose)",
    "container_memory_rss": "cAdvisor (compose)",
    "container_network_receive_bytes_total": "cAdvisor (compose)",
    "container_network_transmit_bytes_total": "cAdvisor (compose)",
    "container_fs_reads_bytes_total": "cAdvisor (compose)",
    "container_fs_writes_bytes_total": "cAdvisor (compose)",
    "kafka_consumergroup_lag": "kafka-exporter (compose)",
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
     "atan2", "inf", "nan", "Inf", "NaN"}
)  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric (and recorded-series) names a PromQL expression selects.

    Strings, label matchers, ranges and ``by (...)``-style label lists are removed first, so label
    names and values are never mistaken for metrics; an identifier followed by ``(`` is a function.
    """
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


@dataclass(frozen=True, slots=True)
class Expression:
    where: str
    expr: str


def rule_expressions(rules: Mapping[str, Any], source: str) -> tuple[list[Expression], dict[str, list[str]]]:
    """Every expression in a rule file, and ``{recorded series: [its expressions]}``."""
    found: list[Expression] = []
    recorded: dict[str, list[str]] = {}
    for group in rules.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("record") or rule.get("alert")
            found.append(Expression(f"{source}: {name}", rule["expr"]))
            if "record" in rule:
                recorded.setdefault(rule["record"], []).append(rule["expr"])
    return found, recorded


def dashboard_expressions(dashboard: Mapping[str, Any], source: str) -> list[Expression]:
    """Every target expression of a Grafana dashboard model (rows' nested panels included)."""
    found: list[Expression] = []

    def walk(panels: Iterable[Mapping[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                if "expr" in target:
                    found.append(Expression(f"{source}: {panel.get('title')}", target["expr"]))
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    return found


def exposed_names() -> dict[str, m.CatalogueEntry]:
    """Sample name as Prometheus stores it -> catalogue entry."""
    out: dict[str, m.CatalogueEntry] = {}
    for entry in m.catalogue():
        if entry.type == "counter":
            out[f"{entry.name}_total"] = entry
        elif entry.type == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                out[entry.name + suffix] = entry
        else:
            out[entry.name] = entry
    return out


@dataclass(frozen=True, slots=True)
class Resolution:
    catalogue: dict[str, set[str]]  # queried sample name -> where
    external: dict[str, set[str]]
    problems: list[str]


def resolve(expressions: Iterable[Expression], recorded: Mapping[str, list[str]]) -> Resolution:
    """Resolve recorded series to their sources and classify every name queried."""
    exposed = exposed_names()
    ours: dict[str, set[str]] = {}
    external: dict[str, set[str]] = {}
    problems: list[str] = []
    pending = [(name, e.where) for e in expressions for name in metric_names(e.expr)]
    done: set[tuple[str, str]] = set()
    while pending:
        name, where = pending.pop()
        if (name, where) in done:
            continue
        done.add((name, where))
        if ":" in name:
            if name not in recorded:
                problems.append(f"{where}: recorded series {name} is not defined by any recording rule")
            for expr in recorded.get(name, []):
                pending.extend((source, where) for source in metric_names(expr))
        elif name in exposed:
            ours.setdefault(name, set()).add(where)
        elif name in EXTERNAL_METRICS:
            external.setdefault(name, set()).add(where)
        else:
            problems.append(f"{where}: {name} is not in the metrics catalogue ({_hint(name)})")
    return Resolution(ours, external, sorted(set(problems)))


def _hint(name: str) -> str:
    for entry in m.catalogue():
        if name.startswith(entry.name):
            suffixes = {"counter": "_total", "histogram": "_bucket/_sum/_count", "gauge": "no suffix"}
            return f"{entry.name} is a {entry.type}: query it with {suffixes[entry.type]}"
    return "define it in cryptopipe/observability/metrics.py or list it in drift.EXTERNAL_METRICS"


@dataclass(frozen=True, slots=True)
class _Collected:
    rules: list[Expression]
    dashboards: list[Expression]
    recorded: dict[str, list[str]]


def _collect(files: Mapping[str, str]) -> _Collected:
    collected = _Collected([], [], {})
    for path, text in sorted(files.items()):
        if "rules/" in path and path.endswith((".yml", ".yaml")):
            found, recorded = rule_expressions(yaml.safe_load(text) or {}, path)
            collected.rules.extend(found)
            for name, exprs in recorded.items():
                collected.recorded.setdefault(name, []).extend(exprs)
        elif "dashboards/" in path and path.endswith(".json"):
            collected.dashboards.extend(dashboard_expressions(json.loads(text), path))
    return collected


def check_files(files: Mapping[str, str] | None = None) -> Resolution:
    """Resolve what the rule files (``*/rules/*.yml``) and dashboards (``*/dashboards/*.json``) query.

    ``files`` maps a path to its text; by default the generated set
    (:func:`cryptopipe.observability.generate.generated_files`), which a test keeps equal to the
    committed one.
    """
    collected = _collect(_default(files))
    return resolve([*collected.rules, *collected.dashboards], collected.recorded)


def _default(files: Mapping[str, str] | None) -> Mapping[str, str]:
    if files is not None:
        return files
    from cryptopipe.observability.generate import generated_files

    return generated_files()


def queried_metrics(files: Mapping[str, str] | None = None, *, dashboards_only: bool = False) -> set[str]:
    """Catalogue names (as exposed: ``x_total``, ``x_bucket``, gauges bare) that panels or rules read.

    ``dashboards_only`` leaves out what only the rules read (e.g. counters of rare failures that an
    alert watches but no panel shows).
    """
    collected = _collect(_default(files))
    queried = collected.dashboards if dashboards_only else [*collected.rules, *collected.dashboards]
    return set(resolve(queried, collected.recorded).catalogue)


def assert_exported(scrape: Scrape, names: Iterable[str]) -> None:
    """Fail unless the scrape has samples for every name (exposed form or catalogue base name).

    A labelled metric exports nothing until some label set is used: services should touch the
    label sets they know at start-up (``ERRORS.labels(component=..., reason=...)``), so a rule's
    ``rate()`` starts from 0 and panels show 0 rather than "no data".
    """
    exposed = exposed_names()
    by_base: dict[str, str] = {}
    for sample, entry in exposed.items():
        if sample.endswith("_sum") or sample.endswith("_count"):
            continue
        by_base[entry.name] = sample
    missing = []
    for name in sorted(set(names)):
        sample = by_base.get(name, name)
        if not scrape.samples(sample):
            missing.append(sample)
    if missing:
        raise AssertionError(
            f"{len(missing)} queried metric(s) not exported by the running pipeline: {', '.join(missing)} "
            "(a labelled metric exports nothing until a label set is used: initialise known label sets "
            "at start-up)"
        )
