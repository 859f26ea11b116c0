"""The compose stack as Docker Compose would see it, without Docker.

The files are read with PyYAML (anchors and ``<<`` merges resolved), ``${VAR...}`` interpolated
with Compose's rules, and the overrides (replay, 3-broker cluster) merged onto the base file with
Compose's merge rules (mappings merge key by key, ``command``/``entrypoint``/healthcheck ``test``
are replaced, a service's ``volumes`` are unique by mount target, other sequences are appended).
Tests get the result as :class:`Stack` objects, named after the files: ``"base"``, ``"replay"``,
``"cluster"``, ``"replay+cluster"`` (the order ``docker compose -f`` takes them in).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "compose"
BASE_FILE = COMPOSE_DIR / "docker-compose.yml"
REPLAY_FILE = COMPOSE_DIR / "docker-compose.replay.yml"
CLUSTER_FILE = COMPOSE_DIR / "docker-compose.cluster.yml"
SECURE_FILE = COMPOSE_DIR / "docker-compose.secure.yml"
#: The override files, in the order they are layered on the base file.
OVERRIDES = {"replay": REPLAY_FILE, "cluster": CLUSTER_FILE, "secure": SECURE_FILE}
#: Every stack the tests check: the base file alone and with each combination of overrides.
STACKS = ("base", "replay", "cluster", "replay+cluster")
DOCKERFILE = COMPOSE_DIR / "Dockerfile"

#: What a user puts in compose/.env (the two required secrets), for tests that need a full stack.
TEST_ENV = {"REDIS_PASSWORD": "0123abcd-redis", "GRAFANA_ADMIN_PASSWORD": "0123abcd-grafana"}

#: Settings classes besides cryptopipe.cli.docs.SETTINGS (alerting's is not listed there yet).
EXTRA_SETTINGS = ("cryptopipe.alerting.settings:AlertingSettings",)

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    """A required variable (``${VAR:?message}``) is missing."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-d}``, ``${VAR-d}``, ``:?``, ``:+``."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        value = env.get(name, "")
        op, arg = match["op"], match["arg"] or ""
        if op is None:
            return value
        missing = not value if op.startswith(":") else name not in env
        if op.endswith("-"):
            return arg if missing else value
        if op.endswith("?"):
            if missing:
                raise InterpolationError(f"{name}: {arg}")
            return value
        return "" if missing else arg  # "+"

    return _VARIABLE.sub(replace, text)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    return node


_REPLACED = frozenset({"command", "entrypoint", "test"})


class Reset(list[Any]):
    """A value tagged ``!reset`` (Compose 2.24+): it replaces the base's instead of merging with it."""


class _ComposeLoader(yaml.SafeLoader):  # type: ignore[misc]
    """PyYAML's safe loader plus Compose's ``!reset`` tag."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: Reset(loader.construct_sequence(node)))


def mount_target(volume: Any) -> str:
    """A service volume's target path (short ``source:target[:mode]`` or long syntax)."""
    if isinstance(volume, dict):
        return str(volume["target"])
    parts = str(volume).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def merge(base: Any, override: Any, key: str = "") -> Any:
    """Compose's merge of an override file onto a base file (the subset these files use).

    A list of a service's ``volumes`` is unique by mount target: an override's entry replaces the
    base's entry for the same target (Compose Specification, "Merge and override").
    """
    if isinstance(override, Reset):
        return list(override)
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            merged[name] = merge(base[name], value, name) if name in base else value
        return merged
    if isinstance(base, list) and isinstance(override, list) and key == "volumes":
        targets = {mount_target(item) for item in override}
        return [item for item in base if mount_target(item) not in targets] + list(override)
    if isinstance(base, list) and isinstance(override, list) and key not in _REPLACED:
        return base + [item for item in override if item not in base]
    return override


def load_yaml(path: Path) -> dict[str, Any]:
    document = yaml.load(path.read_text("utf-8"), Loader=_ComposeLoader)
    assert isinstance(document, dict), f"{path} is not a YAML mapping"
    return document


@dataclass(frozen=True)
class Stack:
    """One interpolated compose project: ``services`` and top-level ``volumes``."""

    name: str
    document: dict[str, Any]

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        return dict(self.document["services"])

    @property
    def volumes(self) -> dict[str, Any]:
        return dict(self.document.get("volumes") or {})

    def ours(self) -> dict[str, dict[str, Any]]:
        """The services built from compose/Dockerfile (they run ``cryptopipe`` subcommands)."""
        return {name: spec for name, spec in self.services.items() if "build" in spec}

    def environment(self, service: str) -> dict[str, str]:
        raw = self.services[service].get("environment") or {}
        if isinstance(raw, list):
            raw = dict(item.split("=", 1) for item in raw)
        return {str(key): "" if value is None else str(value) for key, value in raw.items()}


def stack(name: str, env: Mapping[str, str]) -> Stack:
    """``"base"``, or the base file with the overrides ``name`` lists (``"replay+cluster"``)."""
    layers = [] if name == "base" else name.split("+")
    assert set(layers) <= set(OVERRIDES), f"unknown override in {name!r}"
    document = load_yaml(BASE_FILE)
    for override in OVERRIDES:  # always in the documented order
        if override in layers:
            document = merge(document, load_yaml(OVERRIDES[override]))
    return Stack(name, interpolate_tree(document, env))


def settings_classes() -> list[type[BaseSettings]]:
    """Every settings class of the project (the configuration page's list plus :data:`EXTRA_SETTINGS`)."""
    from cryptopipe.cli.docs import SETTINGS

    targets = [target for _section, target in SETTINGS]
    targets += [target for target in EXTRA_SETTINGS if target not in targets]
    classes = []
    for target in targets:
        module, _, name = target.partition(":")
        cls = getattr(importlib.import_module(module), name)
        assert issubclass(cls, BaseSettings), target
        classes.append(cls)
    return classes


@pytest.fixture(scope="session", params=STACKS)
def compose_stack(request: pytest.FixtureRequest) -> Stack:
    """The stack as started by `up` with the base file alone, and with every mix of the overrides."""
    return stack(request.param, TEST_ENV)


@pytest.fixture(scope="session")
def base_stack() -> Stack:
    return stack("base", TEST_ENV)


@pytest.fixture(scope="session")
def replay_stack() -> Stack:
    return stack("replay", TEST_ENV)


@pytest.fixture(scope="session")
def cluster_stack() -> Stack:
    return stack("cluster", TEST_ENV)


@pytest.fixture(scope="session")
def stack_factory() -> Any:
    """``stack_factory(name, env)``: one of :data:`STACKS` interpolated with ``env``."""
    return stack


@pytest.fixture(scope="session")
def known_settings() -> dict[str, list[type[BaseSettings]]]:
    """Every environment variable the project reads -> the settings classes that read it."""
    from cryptopipe.cli.docs import env_names

    known: dict[str, list[type[BaseSettings]]] = {}
    for cls in settings_classes():
        for name in env_names(cls):
            known.setdefault(name, []).append(cls)
    return known


@pytest.fixture(scope="session")
def compose_raw() -> dict[str, dict[str, Any]]:
    """The compose files as YAML documents, before interpolation: ``{"base": ..., "replay": ..., ...}``."""
    return {"base": load_yaml(BASE_FILE)} | {name: load_yaml(path) for name, path in OVERRIDES.items()}
