"""The compose files are valid Compose Specification documents.

The schema is the Compose Specification's own ``schema/compose-spec.json`` (compose-spec/
compose-spec, Apache-2.0) as shipped inside the ``check-jsonschema`` wheel (a dev dependency), so
it is versioned by the lock file and needs no network. Validation runs on the files as written
(before interpolation, as ``docker compose config`` validates) and after interpolation.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest


def _compose_schema() -> dict[str, Any]:
    resource = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(resource.read_text("utf-8"))
    assert isinstance(schema, dict)
    return schema


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = _compose_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _errors(validator: jsonschema.protocols.Validator, document: object) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    ]


def test_the_schema_is_the_compose_specification() -> None:
    schema = _compose_schema()
    assert schema["title"] == "Compose Specification"
    # Recent enough for what the files use: long depends_on with conditions, healthcheck start_period.
    text = json.dumps(schema)
    assert "service_healthy" in text
    assert "start_period" in schema["$defs"]["healthcheck"]["properties"]
    assert importlib.metadata.version("check-jsonschema")


@pytest.mark.parametrize("name", ["base", "replay", "cluster", "secure"])
def test_files_as_written_validate(
    name: str, compose_raw: dict[str, dict[str, Any]], validator: jsonschema.protocols.Validator
) -> None:
    assert _errors(validator, compose_raw[name]) == []


def test_interpolated_stacks_validate(compose_stack: Any, validator: jsonschema.protocols.Validator) -> None:
    """The merged stacks too (base + replay, base + cluster, base + replay + cluster)."""
    assert _errors(validator, compose_stack.document) == []


def test_every_compose_file_is_checked(compose_raw: dict[str, Any]) -> None:
    """A new override file must join the checks (conftest.OVERRIDES), not slip past them."""
    compose_dir = Path(__file__).resolve().parents[2] / "compose"
    on_disk = {path.name for path in compose_dir.glob("docker-compose*.yml")}
    checked = {"docker-compose.yml"} | {
        f"docker-compose.{name}.yml" for name in compose_raw if name != "base"
    }
    assert on_disk == checked


def test_the_validator_rejects_what_compose_rejects(validator: jsonschema.protocols.Validator) -> None:
    """The schema really constrains services (guards against validating against an empty schema)."""
    bad = {
        "services": {
            "a": {"image": "x:1", "healthcheck": {"interval": 10, "tests": ["CMD", "true"]}},
            "b": {"image": "x:1", "depends_on": {"a": {"condition": "service_happy"}}},
            "c": {"image": "x:1", "no_such_key": True},
        }
    }
    messages = " | ".join(_errors(validator, bad))
    assert "services/a/healthcheck" in messages
    assert "services/b/depends_on" in messages
    assert "no_such_key" in messages
