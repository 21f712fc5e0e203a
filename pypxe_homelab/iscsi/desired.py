"""Which iSCSI targets the inventory asks for: one per Pi node whose OS is a ready Pi image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pypxe_homelab.config.model import Inventory, Node, Paths
from pypxe_homelab.iscsi.naming import initiator_name, target_iqn

IMAGES_DIR = "images"
DISK_SUFFIX = ".img"


@dataclass(frozen=True)
class NodeTarget:
    """One node's export: target ``iqn`` with LUN 1 on ``disk``, open to ``initiator`` only.
    ``image`` is what the disk is created from when it does not exist yet."""

    serial: str
    iqn: str
    initiator: str
    disk: Path
    image: Path


def disk_path(paths: Paths, serial: str) -> Path:
    """The node's own disk file: ``<root>/iscsiroot/<serial>.img``."""
    return paths.iscsiroot / f"{serial}{DISK_SUFFIX}"


def node_image_path(inventory: Inventory, node: Node) -> Path | None:
    """The raw disk image a Pi node's disk is copied from, or None when its OS names no ready Pi image.

    A Pi image is registered under ``<httproot>/images/<name>/`` (as installer ISOs are) and holds one
    raw ``*.img`` file: the preinstalled image, decompressed.
    """
    name = inventory.effective(node).os
    if not name or "/" in name or name.startswith("."):
        return None
    folder = inventory.paths.httproot / IMAGES_DIR / name
    try:
        found = sorted(p for p in folder.iterdir() if p.suffix == DISK_SUFFIX and p.is_file())
    except OSError:
        return None
    return found[0] if len(found) == 1 else None


def node_target(inventory: Inventory, node: Node, image: Path) -> NodeTarget:
    """The export of Pi ``node`` whose disk comes from ``image``."""
    serial = node.device_id
    return NodeTarget(
        serial, target_iqn(serial), initiator_name(serial), disk_path(inventory.paths, serial), image
    )


def desired_targets(inventory: Inventory) -> tuple[list[NodeTarget], list[str]]:
    """The targets to export (Pi nodes with a ready Pi image, by serial) and one line per Pi node left out."""
    targets: list[NodeTarget] = []
    skipped: list[str] = []
    for node in sorted(inventory.nodes.values(), key=lambda n: n.device_id):
        if not node.is_pi:
            continue
        image = node_image_path(inventory, node)
        if image is None:
            os_name = inventory.effective(node).os
            skipped.append(
                f"{node.device_id}: no iSCSI disk: its os {os_name!r} is not a ready Pi image; "
                "register one with `pypxe-homelab images add` and name it in os:"
                if os_name
                else f"{node.device_id}: no iSCSI disk: it names no os; set os: to a Pi image"
            )
            continue
        targets.append(node_target(inventory, node, image))
    return targets, skipped
