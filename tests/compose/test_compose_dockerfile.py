"""compose/Dockerfile: pinned bases, uv's workspace layering, non-root images, and uv commands
that really resolve against this lock file.

No Docker here: the ``uv sync`` lines of each build stage are run with ``--dry-run --offline``
in a directory laid out exactly like the Dockerfile's ``manifests`` stage (uv.lock and the
pyproject.toml files only), which is what uv sees inside the image at that step.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cryptopipe.observability.prometheus import DEFAULT_METRICS_PORTS

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "compose" / "Dockerfile"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1].strip() + " "
            continue
        lines.append(current + line)
        current = ""
    return lines


def parse_dockerfile(text: str) -> tuple[dict[str, str], dict[str, Stage]]:
    """(global ARG defaults, stages by name)."""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for line in _logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else f"#{len(stages)}"
            stage = stages[name] = Stage(name, parts[0])
        elif stage is None:
            if keyword == "ARG" and "=" in rest:
                key, _, value = rest.partition("=")
                args[key.strip()] = value.strip()
        else:
            stage.instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text("utf-8"))


def _chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and its ancestors, oldest first."""
    chain: list[Stage] = []
    while name in stages:
        chain.insert(0, stages[name])
        name = stages[name].base
    return chain


def _instructions(stages: dict[str, Stage], name: str) -> list[tuple[str, str]]:
    return [instruction for stage in _chain(stages, name) for instruction in stage.instructions]


def _venv_source(stages: dict[str, Stage], target: str) -> str:
    for keyword, rest in _instructions(stages, target):
        match = re.match(r"--from=(\S+)\s+/opt/venv\s+/opt/venv$", rest)
        if keyword == "COPY" and match:
            return match.group(1)
    raise AssertionError(f"stage {target} copies no /opt/venv")


def _uv_syncs(stages: dict[str, Stage], name: str) -> list[list[str]]:
    syncs = []
    for keyword, rest in _instructions(stages, name):
        if keyword == "RUN" and " uv sync " in f" {rest} ":
            argv = shlex.split(rest)
            syncs.append(argv[argv.index("uv") :])
    return syncs


def _build_targets(base_stack: Any) -> set[str]:
    return {spec["build"]["target"] for spec in base_stack.ours().values()}


def test_base_images_are_pinned(dockerfile: tuple[dict[str, str], dict[str, Stage]]) -> None:
    args, stages = dockerfile
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", args["PYTHON_IMAGE"])
    assert re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", args["UV_IMAGE"])
    names = list(stages)
    for index, stage in enumerate(stages.values()):
        reference = re.fullmatch(r"\$\{(\w+)\}", stage.base)
        assert (reference and reference.group(1) in args) or stage.base in names[:index], stage.base


def test_compose_targets_exist_and_run_as_non_root(
    base_stack: Any, dockerfile: tuple[dict[str, str], dict[str, Stage]]
) -> None:
    _args, stages = dockerfile
    targets = _build_targets(base_stack)
    assert targets == {"services", "alerting"}
    for target in targets:
        users = [rest for keyword, rest in _instructions(stages, target) if keyword == "USER"]
        assert users, f"{target} sets no USER"
        assert users[-1] not in {"root", "0"}, f"{target} runs as root"


def test_dependencies_are_a_layer_of_their_own(
    base_stack: Any, dockerfile: tuple[dict[str, str], dict[str, Stage]]
) -> None:
    """Lock-only dependency install, then the sources, then the workspace members non-editable."""
    _args, stages = dockerfile
    for target in _build_targets(base_stack):
        builder = _venv_source(stages, target)
        steps = [
            "deps"
            if keyword == "RUN" and "--no-install-workspace" in rest
            else "sources"
            if keyword == "COPY" and rest == "packages packages"
            else "members"
            if keyword == "RUN" and "--no-editable" in rest
            else None
            for keyword, rest in _instructions(stages, builder)
        ]
        assert [step for step in steps if step] == ["deps", "sources", "members"], target
        for keyword, rest in _instructions(stages, builder):
            if keyword == "RUN" and "uv sync" in rest:
                assert "--mount=type=cache,target=/root/.cache/uv" in rest
                assert "--locked" in rest
                assert "--no-dev" in rest


def _workspace_members() -> dict[str, Path]:
    members = {}
    for path in sorted((REPO / "packages").glob("*/pyproject.toml")):
        members[tomllib.loads(path.read_text("utf-8"))["project"]["name"]] = path
    return members


def _uv() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv is needed to check the Dockerfile's uv commands (pip install uv)"
    return uv


def _dry_run(argv: list[str], workdir: Path) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    env |= {"UV_PROJECT_ENVIRONMENT": str(workdir / "venv"), "UV_PYTHON_DOWNLOADS": "never"}
    command = [_uv(), *argv[1:], "--dry-run", "--offline", "--python", sys.executable]
    result = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"{shlex.join(argv)} fails against uv.lock:\n{result.stderr}"
    assert not (workdir / "venv").exists(), "a dry run must not create the environment"
    return set(re.findall(r"^\s*\+\s+([A-Za-z0-9_.-]+)", result.stderr + result.stdout, re.MULTILINE))


def test_uv_commands_resolve_against_the_lock(
    base_stack: Any, dockerfile: tuple[dict[str, str], dict[str, Stage]], tmp_path: Path
) -> None:
    _args, stages = dockerfile
    # The manifests stage: uv.lock and pyproject.toml files, nothing else.
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    shutil.copy(REPO / "uv.lock", tmp_path)
    members = _workspace_members()
    for path in members.values():
        copy = tmp_path / path.relative_to(REPO)
        copy.parent.mkdir(parents=True)
        shutil.copy(path, copy)

    installed: dict[str, set[str]] = {}
    for target in _build_targets(base_stack):
        deps, full = _uv_syncs(stages, _venv_source(stages, target))
        dependencies = _dry_run(deps, tmp_path)
        assert not dependencies & set(members), f"{target}: the dependency layer installs workspace members"
        installed[target] = _dry_run(full, tmp_path)
    # cryptopipe-measure (benches, fault runs, experiments) is a researcher's tool run from a host
    # (`experiment export --prometheus` against the stack's Prometheus), not a service: the images,
    # built from cryptopipe-cli (whose [measure] extra it is), leave it out.
    services = set(members) - {"cryptopipe-measure"}
    assert services - {"cryptopipe-alerting"} <= installed["services"]
    assert not {"cryptopipe-alerting", "pyspark", "cryptopipe-measure"} & installed["services"]
    assert services | {"pyspark", "pyarrow", "confluent-kafka"} <= installed["alerting"]


def test_alerting_image_has_java_and_a_healthcheck(
    dockerfile: tuple[dict[str, str], dict[str, Stage]],
) -> None:
    _args, stages = dockerfile
    instructions = _instructions(stages, "alerting")
    assert any(keyword == "RUN" and "openjdk-17-jre-headless" in rest for keyword, rest in instructions)
    [healthcheck] = [rest for keyword, rest in instructions if keyword == "HEALTHCHECK"]
    assert f"127.0.0.1:{DEFAULT_METRICS_PORTS['alerting']}/metrics" in healthcheck
    assert not any(
        keyword == "RUN" and "openjdk" in rest for keyword, rest in _instructions(stages, "services")
    ), "the services image needs no Java"


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    patterns = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"**/.venv", "**/.git", ".env", "**/.env"} <= patterns
    assert not {"packages", "uv.lock", "pyproject.toml", "packages/*/src"} & patterns
