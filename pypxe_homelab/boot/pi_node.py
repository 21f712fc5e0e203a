"""Raspberry Pi nodes: the checks ``validate`` runs on them, and the boot trees their TFTP requests read."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from pypxe_homelab.assets.images import load_catalogue, read_image
from pypxe_homelab.assets.pi_images import BootTree, boot_tree, list_pi_images, read_pi_image
from pypxe_homelab.boot.autoinstall import HostNetwork, detect_host_network
from pypxe_homelab.boot.pi_cloud_init import check_pi_seed
from pypxe_homelab.config.model import Inventory, Node
from pypxe_homelab.errors import UserError

log = logging.getLogger(__name__)


def pi_image_names(httproot: Path) -> list[str]:
    """Pi images a node may name: the catalogue's and the added ones."""
    names = {name for name, entry in load_catalogue().items() if entry.is_pi}
    names |= {info.name for info in list_pi_images(httproot)}
    return sorted(names)


def image_kind(httproot: Path, name: str) -> str | None:
    """'pi', 'installer' or None (unknown) for image ``name``."""
    if read_pi_image(httproot, name) is not None:
        return "pi"
    if read_image(httproot, name) is not None:
        return "installer"
    entry = load_catalogue().get(name)
    return entry.kind if entry else None


def pc_os_problem(inventory: Inventory, node: Node) -> str | None:
    """A PC whose os is a Raspberry Pi image: the line saying so, else None."""
    eff = inventory.effective(node)
    if eff.os and not node.is_pi and image_kind(inventory.paths.httproot, eff.os) == "pi":
        return (
            f"node {node.name} ({node.device_id}): os {eff.os!r} is a Raspberry Pi image; a PC installs from an "
            "installer ISO: set os: ubuntu-24.04 (or another installer image) for this node"
        )
    return None


def check_pi_node(inventory: Inventory, node: Node, *, host: HostNetwork | None = None) -> list[str]:
    """Every problem that would stop Pi ``node`` from booting its image, one line each naming the node."""
    raw = inventory.node(node.device_id) or node
    eff = inventory.effective(raw)
    where = f"node {raw.name} ({raw.device_id})"
    if not eff.os:
        return []
    root = inventory.paths.httproot
    kind = image_kind(root, eff.os)
    known = ", ".join(pi_image_names(root))
    if kind == "installer":
        return [
            f"{where}: os {eff.os!r} is an installer ISO for PCs; a Raspberry Pi boots a Pi image: "
            f"set os: to one of {known} (or defaults.pi_os)"
        ]
    if kind is None:
        return [
            f"{where}: os {eff.os!r} is not a Pi image ({known}); run "
            f"`pypxe-homelab images add PATH.img.xz --name {eff.os}` or pick one of those"
        ]
    problems = []
    if read_pi_image(root, eff.os) is None:
        problems.append(
            f"{where}: Pi image {eff.os!r} is not fetched yet; run `pypxe-homelab images fetch {eff.os}`"
        )
    problems += check_pi_seed(inventory, raw)
    host = host or detect_host_network()
    if eff.address is not None and eff.gateway is None and host.gateway is None:
        problems.append(f"{where}: static address {eff.address} but no gateway known; set defaults.gateway")
    return problems


class BootTrees:
    """Boot trees by image name for one data root, extracted on first use and kept while the image is the same."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._trees: dict[tuple[Path, str], tuple[str, BootTree]] = {}

    def lookup(self, inventory: Inventory, name: str) -> BootTree | None:
        """The tree of Pi image ``name``, or None (not ready or cannot be prepared: logged)."""
        httproot = inventory.paths.httproot
        info = read_pi_image(httproot, name)
        if info is None:
            return None
        key = (inventory.paths.root, name)
        with self._lock:
            held = self._trees.get(key)
            if held is not None and held[0] == info.sha256 and held[1].image == info:
                return held[1]
            try:
                tree = boot_tree(httproot, inventory.paths.cache, name)
            except UserError as exc:
                log.error("%s", exc)
                return None
            self._trees[key] = (info.sha256, tree)
            return tree


BOOT_TREES = BootTrees()
