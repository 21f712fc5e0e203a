"""What a Raspberry Pi's bootloader gets over TFTP: ``<serial>/<name>`` from its node's image, generated
``config.txt`` and ``cmdline.txt``, and ``bootcode.bin`` at the root for a Pi 3.

Pure functions: the inventory, the requested name and the image's boot tree (looked up through a callable the
caller gives) in; a file to send, or None, out. An unregistered serial gets None for every name.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pypxe_homelab.assets.pi_images import BootTree
from pypxe_homelab.boot.autoinstall import PI_INTERFACE, HostNetwork
from pypxe_homelab.boot.rendering import render_template
from pypxe_homelab.config.model import Inventory, Node
from pypxe_homelab.identity import is_pi_serial, split_node_path
from pypxe_homelab.iscsi.naming import ISCSI_PORT, initiator_name, target_iqn

SERVED_INITRAMFS = "initrd-iscsi.img"
PI3_LOADER = "bootcode.bin"
# Words of the image's cmdline.txt that the server sets itself.
OWN_WORDS = re.compile(r"^(root|rootfstype|ip|ds|ISCSI_[A-Z_]+|BOOTIF|netboot)=", re.IGNORECASE)
_SETTINGS = re.compile(r"^\s*(kernel|initramfs|cmdline)\b", re.IGNORECASE)

TreeLookup = Callable[[str], BootTree | None]


@dataclass(frozen=True)
class PiFile:
    """A file to send: generated ``data`` or an extracted boot file at ``path`` (exactly one of them)."""

    data: bytes | None = None
    path: Path | None = None
    what: str = "firmware"  # firmware / config / kernel / initrd, for the timeline
    device_id: str | None = None


def pi_request(path: str) -> tuple[str, str] | None:
    """``(serial, name)`` for a normalised ``<8 hex>/<name>`` path (serial lower-cased), else None."""
    head, sep, rest = path.partition("/")
    split = split_node_path(head.lower() + sep + rest)
    if split is None or not is_pi_serial(split[0]):
        return None
    return split


def pi_nodes(inventory: Inventory) -> list[Node]:
    """Registered Raspberry Pis with a Pi image, effective (defaults applied)."""
    nodes = (inventory.effective(n) for n in inventory.nodes.values() if n.is_pi)
    return [n for n in nodes if n.os]


def render_config_txt(node: Node, tree: BootTree) -> str:
    """``config.txt``: the image's own, its kernel/initramfs/cmdline lines commented out, then the server's."""
    lines = [
        f"# (set by the server) {line}" if _SETTINGS.match(line) else line
        for line in tree.config_txt.splitlines()
    ]
    return render_template(
        "pi-config.txt.j2",
        device_id=node.device_id,
        hostname=node.name,
        image=tree.image.name,
        image_config="\n".join(lines),
        kernel=tree.image.kernel,
        initramfs=SERVED_INITRAMFS,
    )


def ip_word(node: Node, host: HostNetwork) -> str:
    """The kernel's ``ip=`` for the node: static ``client::gw:mask:hostname:eth0:off[:dns0[:dns1]]``, or dhcp."""
    if node.address is None:
        return "ip=dhcp"
    gateway = node.gateway or host.gateway
    dns = list(node.dns or host.dns)[:2]
    fields = [
        str(node.address.ip),
        "",
        str(gateway) if gateway else "",
        str(node.address.netmask),
        node.name,
        PI_INTERFACE,
        "off",
        *(str(d) for d in dns),
    ]
    return "ip=" + ":".join(fields)


def cmdline_words(
    inventory: Inventory, node: Node, tree: BootTree, base_url: str, host: HostNetwork
) -> list[str]:
    """Words of ``cmdline.txt``: the image's own (console, rootwait, …) minus those the server sets, then the
    root on the iSCSI disk, the node's address, the open-iscsi login and the NoCloud seed URL."""
    server = ipaddress.IPv4Address(base_url.split("//", 1)[1].split(":", 1)[0].split("/", 1)[0])
    kept = [w for w in tree.cmdline_txt.split() if not OWN_WORDS.match(w)]
    words = [
        *kept,
        f"root=UUID={tree.image.root_uuid}",
        "rootfstype=ext4",
        ip_word(node, host),
        f"ISCSI_INITIATOR={initiator_name(node.device_id)}",
        f"ISCSI_TARGET_NAME={target_iqn(node.device_id)}",
        f"ISCSI_TARGET_IP={server}",
        f"ISCSI_TARGET_PORT={ISCSI_PORT}",
        f"ds=nocloud;s={base_url.rstrip('/')}/{node.device_id}/cloud-init/",
    ]
    if "rootwait" not in words:
        words.append("rootwait")
    words += node.cmdline.split()
    return words


def render_cmdline_txt(
    inventory: Inventory, node: Node, tree: BootTree, base_url: str, host: HostNetwork
) -> str:
    return render_template("pi-cmdline.txt.j2", words=cmdline_words(inventory, node, tree, base_url, host))


def pi_file(
    inventory: Inventory, path: str, base_url: str, host: HostNetwork, trees: TreeLookup
) -> PiFile | None:
    """The answer to a Pi's TFTP request for ``path`` (normalised), or None (not found).

    ``<serial>/config.txt`` and ``<serial>/cmdline.txt`` are rendered; ``<serial>/initrd-iscsi.img`` is the
    image's initramfs with the iSCSI login added; any other ``<serial>/<name>`` is the boot partition's file.
    ``bootcode.bin`` (a Pi 3's first request) comes from the first Pi node's image. Only registered Pi nodes
    with an image get anything.
    """
    if path.lower() == PI3_LOADER:
        for node in pi_nodes(inventory):
            tree = trees(node.os or "")
            found = tree.path(PI3_LOADER) if tree else None
            if found is not None:
                return PiFile(path=found, what="loader")
        return None
    request = pi_request(path)
    if request is None:
        return None
    serial, name = request
    raw = inventory.node(serial)
    if raw is None:
        return None
    node = inventory.effective(raw)
    if not node.os:
        return None
    tree = trees(node.os)
    if tree is None:
        return None
    lowered = name.lower()
    if lowered == "config.txt":
        return PiFile(data=render_config_txt(node, tree).encode(), what="config", device_id=serial)
    if lowered == "cmdline.txt":
        text = render_cmdline_txt(inventory, node, tree, base_url, host)
        return PiFile(data=text.encode(), what="config", device_id=serial)
    if lowered == SERVED_INITRAMFS:
        served = tree.served_initramfs
        return PiFile(path=served, what="initrd", device_id=serial) if served else None
    by_lower = {f.lower(): f for f in tree.files}
    real = by_lower.get(lowered)
    if real is None:
        return None
    what = "kernel" if lowered == tree.image.kernel.lower() else "firmware"
    return PiFile(path=tree.folder / real, what=what, device_id=serial)
