"""What installing Ubuntu on a node needs from the services: its installer kernel, the files the installer fetches
over HTTP, its cloud-init seed, and the checks that keep a node from an installer that would stop and ask."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pypxe_homelab.assets.images import image_paths
from pypxe_homelab.boot.autoinstall import TOKEN_PLACEHOLDER, check_node, seed_file
from pypxe_homelab.boot.kernel_cmdline import node_http_file, node_installer_boot
from pypxe_homelab.boot.pi_cloud_init import pi_seed_file
from pypxe_homelab.boot.pi_node import check_pi_node, pc_os_problem
from pypxe_homelab.boot.policy import BootChoice, choose_boot
from pypxe_homelab.config.model import Inventory, Node
from pypxe_homelab.errors import UserError


def installer_urls(inventory: Inventory, node: Node, base_url: str) -> list[str]:
    """The URLs the installer fetches after the kernel and initrd: the ISO, then the cloud-init seed."""
    tokens = node_installer_boot(inventory, node, base_url).tokens
    iso_url = next(t.removeprefix("url=") for t in tokens if t.startswith("url="))
    seed = next(t.split(";s=", 1)[1] for t in tokens if t.startswith("ds=") and ";s=" in t)
    return [iso_url, *(seed + name for name in ("meta-data", "user-data", "vendor-data"))]


def node_problems(inventory: Inventory, node: Node) -> list[str]:
    """A Pi's checks for a Raspberry Pi node, the installer's for a PC (which must not name a Pi image)."""
    if node.is_pi:
        return check_pi_node(inventory, node)
    wrong_kind = pc_os_problem(inventory, node)
    return [wrong_kind] if wrong_kind else check_node(inventory, node)


def check_nodes(inventory: Inventory) -> list[str]:
    """``node_problems`` for every node of the inventory, problems in node order."""
    return [problem for node in inventory.nodes.values() for problem in node_problems(inventory, node)]


def node_file(inventory: Inventory, device_id: str, rel_path: str) -> Path | None:
    """``GET /<device_id>/<rel_path>`` → the image file (kernel, initrd or ISO) of the node's ``os``, or None."""
    return node_http_file(inventory, inventory.paths.httproot, device_id, rel_path)


def cloud_init_file(
    inventory: Inventory,
    node: Node,
    name: str,
    base_url: str,
    generation: int,
    token: str = TOKEN_PLACEHOLDER,
) -> str:
    """Body of ``/<id>/cloud-init/<name>`` (user-data, meta-data, vendor-data, network-config)."""
    if node.is_pi:
        body = pi_seed_file(inventory, node, name, base_url, generation, token)
    else:
        body = seed_file(inventory, node, name, base_url, generation, token)
    if body is None:
        raise UserError(f"{name} is not a cloud-init seed file")
    return body


def image_ready(inventory: Inventory) -> Callable[[str], bool]:
    """A predicate: is image ``name`` fetched and unpacked under this inventory's httproot?"""
    return lambda name: image_paths(inventory.paths.httproot, name) is not None


def boot_choice(inventory: Inventory, device_id: str | None, install_state: str | None) -> BootChoice:
    """What ``device_id`` boots now: ``choose_boot``, plus the installer's own checks — a node whose
    installation could not run unattended (no SSH key, schema error, image missing) boots from its disk
    and its screen says why, instead of getting an installer that would stop and ask."""
    choice = choose_boot(inventory, device_id, install_state, image_ready(inventory))
    if choice.action != "install" or choice.node is None:
        return choice
    problems = node_problems(inventory, choice.node)
    if not problems:
        return choice
    reason = problems[0].split(": ", 1)[-1]
    return BootChoice("local", device_id, choice.node, f"not installed: {reason}")
