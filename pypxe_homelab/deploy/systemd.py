"""The systemd unit of `serve`, rendered from ``pypxe-homelab.service.j2`` for this installation."""

from __future__ import annotations

import sys
from pathlib import Path

import jinja2

from pypxe_homelab.config.model import Inventory

UNIT_NAME = "pypxe-homelab.service"
UNIT_DIR = Path("/etc/systemd/system")
STATE_BASE = Path("/var/lib")
_PRIVATE_HOMES = (Path("/home"), Path("/root"))

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("pypxe_homelab.deploy", "."),
    autoescape=False,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)


def program_command() -> Path:
    """The `pypxe-homelab` script of the running installation (beside its Python, as venvs and pipx lay
    them out)."""
    script = Path(sys.executable).parent / "pypxe-homelab"
    return script if script.exists() else Path(sys.argv[0]).absolute()


def render_unit(inventory: Inventory, config: Path, command: Path, user: str) -> str:
    """The unit text: ``command --config config serve`` as ``user``, with the data root writable."""
    root = inventory.paths.root
    state_directory = str(root.relative_to(STATE_BASE)) if root.is_relative_to(STATE_BASE) else ""
    under_home = any(
        p.is_relative_to(home) for p in (command, config.absolute(), root) for home in _PRIVATE_HOMES
    )
    return _ENV.get_template(UNIT_NAME + ".j2").render(
        command=command,
        config=config.absolute(),
        user=user,
        root=root,
        state_directory=state_directory,
        protect_home="read-only" if under_home else "yes",
    )
