"""What a registered machine gets at its next network boot, in plain words, and every piece still missing
(each with the command that provides it): what `add`, `render` and `status <id>` print."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pypxe_homelab.boot.autoinstall import check_node
from pypxe_homelab.boot.host_checks import loader_problems
from pypxe_homelab.config.model import Inventory, Node


@dataclass(frozen=True)
class InstallPlan:
    what: str  # one sentence: what its next network boot does
    missing: tuple[str, ...]  # one line each: what is missing; how to provide it

    def lines(self) -> list[str]:
        """``what`` then the missing pieces (or that nothing is missing), for a terminal."""
        if not self.missing:
            return [self.what, "Nothing is missing."]
        return [self.what, f"Missing ({len(self.missing)}):", *(f"  - {m}" for m in self.missing)]


def _disk(storage: Mapping[str, Any]) -> str:
    layout = storage.get("layout") if isinstance(storage, Mapping) else None
    name = layout.get("name") if isinstance(layout, Mapping) else None
    return f"its disk (storage layout {name})" if name else "its disk (as defaults.storage says)"


def install_plan(inventory: Inventory, node: Node, install_state: str | None = None) -> InstallPlan:
    """``node``'s next network boot in words, and what is missing for it (empty: it is ready)."""
    eff = inventory.effective(node)
    where = f"node {node.name} ({node.device_id}): "
    missing = [p.removeprefix(where) for p in check_node(inventory, node)]
    missing += loader_problems(inventory)
    if node.boot is not None and not node.os:
        what = f"Its next network boot starts the kernel {node.boot.kernel} (its boot: setting); nothing is installed."
    elif not eff.os:
        what = "Nothing to install: no os is set, so it boots from its disk."
        missing.insert(
            0, "no image named; set defaults.os (e.g. ubuntu-24.04) or run `add` again with --os NAME --force"
        )
    elif eff.install == "never":
        what = f"It boots from its disk (install: never); {eff.os} is not installed."
    elif eff.install == "once" and install_state == "installed":
        what = (
            f"{eff.os} is installed; it boots from its disk. "
            f"`pypxe-homelab reinstall {node.device_id}` erases and installs it again."
        )
    else:
        when = "Every network boot" if eff.install == "always" else "Its next network boot"
        later = "" if eff.install == "always" else "; later boots start from its disk"
        what = f"{when} erases {_disk(inventory.defaults.storage)} and installs {eff.os}{later}."
    return InstallPlan(what, tuple(missing))
