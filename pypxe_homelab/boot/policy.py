"""Which boot a machine gets now: its kernel, the installer, its local disk, or the unknown-machine screen.

Pure: the inventory and the node's install state in, a BootChoice out. The safety rules live here and
nowhere else: an unknown machine is never installed, and an installed node boots from its disk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pypxe_homelab.config.model import Inventory, Node

Action = Literal["boot", "install", "local", "unknown"]


@dataclass(frozen=True)
class BootChoice:
    action: Action
    device_id: str | None
    node: Node | None = None  # the effective node (defaults applied), for registered machines
    reason: str = ""


def choose_boot(
    inventory: Inventory,
    device_id: str | None,
    install_state: str | None,
    image_ready: Callable[[str], bool] = lambda name: True,
) -> BootChoice:
    """Decide what ``device_id`` boots, given its install state (``installed``, ``failed``, … or None).

    A node's own ``boot:`` wins over an ``os:`` inherited from defaults; its own ``os:`` wins over ``boot:``.
    """
    node = inventory.node(device_id)
    if node is None:
        return BootChoice("unknown", device_id, reason="not in the inventory")
    raw = node
    node = inventory.effective(node)
    if raw.boot is not None and not raw.os:
        return BootChoice("boot", device_id, node, f"boots {raw.boot.kernel}")
    if node.os:
        if node.install == "never":
            return BootChoice("local", device_id, node, "install: never")
        if node.install == "once" and install_state == "installed":
            return BootChoice(
                "local",
                device_id,
                node,
                f"{node.os} is installed; run 'pypxe-homelab reinstall {device_id}' to install again",
            )
        if not image_ready(node.os):
            return BootChoice(
                "local",
                device_id,
                node,
                f"image {node.os} is not fetched yet; run 'pypxe-homelab images fetch {node.os}'",
            )
        return BootChoice("install", device_id, node, f"installs {node.os}")
    return BootChoice("local", device_id, node, "no boot: or os: configured for this node")
