"""config.example.yaml documents every key and loads; the embedded default is the example, commented out."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from pypxe_homelab.config import loader
from pypxe_homelab.config.loader import default_config_text, load_inventory, parse_inventory
from pypxe_homelab.config.model import Defaults, Node, ServerSettings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.yaml"
DEFAULT = REPO / "pypxe_homelab" / "config" / "default.yaml"
REFERENCE = REPO / "docs" / "config-reference.md"


def comment_out_settings(text: str) -> str:
    """Every setting line commented out (``# `` after its indentation), except the top-level ``nodes:`` and the
    default image (``defaults: os:``), which a node added with `add` installs."""
    out = []
    for line in text.splitlines(keepends=True):
        body = line.lstrip(" ")
        indent = line[: len(line) - len(body)]
        if (
            not body.strip()
            or body.startswith("#")
            or line.rstrip() in ("nodes:", "defaults:", "  os: ubuntu-24.04")
        ):
            out.append(line)
        else:
            out.append(f"{indent}# {body}")
    return "".join(out)


def test_example_loads() -> None:
    inv = load_inventory(EXAMPLE, detect_host=False)
    assert set(inv.nodes) == {"01-52-54-00-a0-00-01", "01-52-54-00-a0-00-02"}


def test_embedded_default_is_the_example_commented_out() -> None:
    assert default_config_text() == DEFAULT.read_text() == comment_out_settings(EXAMPLE.read_text())
    embedded = parse_inventory(default_config_text(), None, detect_host=False)
    assert embedded.nodes == {} and embedded.defaults.os == "ubuntu-24.04"


def _uncommented(text: str) -> str:
    return re.sub(r"^(\s*)# ", r"\1", text, flags=re.MULTILINE)


def test_every_key_is_in_the_example_and_the_reference() -> None:
    example = _uncommented(EXAMPLE.read_text())
    reference = REFERENCE.read_text()
    sections = {
        "server": [f.name for f in dataclasses.fields(ServerSettings)],
        "defaults": [f.name for f in dataclasses.fields(Defaults)],
        "nodes.<id>": [f.name for f in dataclasses.fields(Node) if f.name not in ("device_id", "line")],
        "paths": ["root"],
        "server.loaders": ["bios", "efi64", "efi32", "arm64"],
        "nodes.<id>.boot": ["kernel", "initrd", "cmdline"],
    }
    for section, names in sections.items():
        for name in names:
            assert re.search(rf"^\s*{name}:", example, re.MULTILINE), (
                f"{section}.{name} missing from the example"
            )
            assert f"`{section}.{name}`" in reference, f"{section}.{name} missing from the reference"
    assert set(sections["server"]) == set(loader.SERVER_FIELDS)
    assert set(sections["defaults"]) == set(loader.DEFAULTS_FIELDS)
    assert set(sections["nodes.<id>"]) == set(loader.NODE_FIELDS)


if __name__ == "__main__":  # regenerate the embedded default after editing the example
    DEFAULT.write_text(comment_out_settings(EXAMPLE.read_text()))
