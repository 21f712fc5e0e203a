"""Validate an autoinstall document against the Subiquity schema of the target Ubuntu release."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA_MAIN = "autoinstall-schema.json"
_BY_SERIES = {"22.04": "autoinstall-schema-22.04.1.json", "24.04": "autoinstall-schema-24.04.json"}
_SERIES = re.compile(r"(\d{2}\.\d{2})")


def schema_file_for(release: str | None) -> str:
    """Schema file for a release or catalogue name: 22.04.* → 22.04.1, 24.04.* → 24.04, anything else → main."""
    match = _SERIES.search(release or "")
    return _BY_SERIES.get(match.group(1), SCHEMA_MAIN) if match else SCHEMA_MAIN


@cache
def _validator(filename: str) -> Draft202012Validator:
    text = (
        resources.files("pypxe_homelab.assets")
        .joinpath("schemas")
        .joinpath(filename)
        .read_text(encoding="utf-8")
    )
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


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
    return [f"{error_path(e.absolute_path)}: {e.message}" for e in errors]
