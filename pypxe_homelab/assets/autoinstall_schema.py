"""Validate an autoinstall document against the Subiquity schema of the target Ubuntu release, and its
``user-data`` section (cloud-config for the installed system) against cloud-init's own schema, which the
installer applies strictly (schemas/SOURCES.md says where each file comes from)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # jsonschema is loaded when a first config is checked, not when the program starts
    from jsonschema import Draft4Validator, Draft202012Validator

SCHEMA_MAIN = "autoinstall-schema.json"
CLOUD_CONFIG_SCHEMA = "cloud-config-schema-24.1.3.json"
_BY_SERIES = {"22.04": "autoinstall-schema-22.04.1.json", "24.04": "autoinstall-schema-24.04.json"}
_SERIES = re.compile(r"(\d{2}\.\d{2})")


def schema_file_for(release: str | None) -> str:
    """Schema file for a release or catalogue name: 22.04.* → 22.04.1, 24.04.* → 24.04, anything else → main."""
    match = _SERIES.search(release or "")
    return _BY_SERIES.get(match.group(1), SCHEMA_MAIN) if match else SCHEMA_MAIN


def _schema(filename: str) -> Any:
    text = (
        resources.files("pypxe_homelab.assets")
        .joinpath("schemas")
        .joinpath(filename)
        .read_text(encoding="utf-8")
    )
    return json.loads(text)


@cache
def _validator(filename: str) -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    schema = _schema(filename)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@cache
def _cloud_config_validator() -> Draft4Validator:
    from jsonschema import Draft4Validator

    schema = _schema(CLOUD_CONFIG_SCHEMA)  # cloud-init writes its schema in JSON Schema draft 4
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema)


def validate_user_data(user_data: Mapping[str, Any]) -> list[str]:
    """Every cloud-init schema error of an ``autoinstall.user-data`` mapping, as ``path: message`` lines."""
    errors = sorted(
        _cloud_config_validator().iter_errors(dict(user_data)),
        key=lambda e: [str(p) for p in e.absolute_path],
    )
    return [f"{error_path(['user-data', *e.absolute_path])}: {e.message}" for e in errors]


def error_path(parts: Any) -> str:
    """``['identity', 'password']`` → ``autoinstall.identity.password``; list indices as ``[n]``."""
    text = "autoinstall"
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def validate_autoinstall(doc: Mapping[str, Any], release: str | None) -> list[str]:
    """Every schema error of ``doc`` (the value of the ``autoinstall:`` key) as ``path: message`` lines."""
    validator = _validator(schema_file_for(release))
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    lines = [f"{error_path(e.absolute_path)}: {e.message}" for e in errors]
    user_data = doc.get("user-data")
    if isinstance(user_data, Mapping):
        lines += validate_user_data(user_data)
    return lines
