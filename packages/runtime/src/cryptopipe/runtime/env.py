"""Settings handed to a child process as environment variables.

``up`` builds each service's settings object and starts the service with these variables: the
child reads them back with ``load_settings(Cls)``, so the orchestrator never writes a service's
command line. The inverse of reading: ``Cls(**environ_of(settings))`` equals ``settings``
(tests check that for every service's settings class).
"""

from __future__ import annotations

import json
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr
from pydantic_settings import BaseSettings, NoDecode

from cryptopipe.schemas.config import env_names


def _no_decode(field: Any) -> bool:
    return any(item is NoDecode or isinstance(item, NoDecode) for item in field.metadata)


def _scalar(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, SecretBytes):
        return value.get_secret_value().decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str | int | Decimal | Path):
        return str(value)
    if value is None:
        return ""
    raise TypeError(f"no environment form for {type(value).__name__}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return _scalar(value) if not isinstance(value, int | float | bool) or isinstance(value, Enum) else value


def environ_of(settings: BaseSettings) -> dict[str, str]:
    """Every field of ``settings`` as ``{ENV_VARIABLE: text}``, read back by the same class.

    A class with its own ``to_env()`` is asked for the whole mapping; one with ``env_text()``
    (``{field: text}`` for the fields whose text form is their own, such as alert rules) gives
    those, and the rest is written here: scalars plainly, a ``NoDecode`` sequence of scalars
    comma-separated (how those fields parse), and anything else as JSON (pydantic-settings'
    decoding). Secrets are included: this goes to a child's environment, never to a log.

    A field that is None is left out (an empty variable would not read back as None: ``""`` is a
    path, a string); the child then falls back to its own environment and default, which is
    where the None came from.
    """
    custom = getattr(settings, "to_env", None)
    if callable(custom):
        return dict(custom())
    own_text = getattr(settings, "env_text", None)
    texts: dict[str, str] = dict(own_text()) if callable(own_text) else {}
    names = env_names(type(settings))
    out: dict[str, str] = {}
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        variable = names[name]
        if name in texts:
            out[variable] = texts[name]
            continue
        if value is None:
            continue
        if isinstance(value, list | tuple | set | frozenset) and _no_decode(field):
            out[variable] = ",".join(_scalar(v) for v in value)
        elif isinstance(value, dict | list | tuple | set | frozenset | BaseModel):
            out[variable] = json.dumps(_jsonable(value))
        else:
            out[variable] = _scalar(value)
    return out
