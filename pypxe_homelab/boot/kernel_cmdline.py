"""The Ubuntu installer's kernel command line for one node, and how each boot loader must write it.

Every URL a node is given names the node: the installer fetches ``<base>/<id>/casper/vmlinuz``,
``<base>/<id>/casper/initrd``, ``<base>/<id>/<isofile>.iso`` and its seed under ``<base>/<id>/cloud-init/``.
``node_http_file`` maps the first three to the files of the image named by the node's ``os``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pypxe_homelab.assets.images import image_paths, iso_file_name
from pypxe_homelab.config.model import Inventory, Node
from pypxe_homelab.errors import UserError

KERNEL_PATH = "casper/vmlinuz"
INITRD_PATH = "casper/initrd"
MAX_CMDLINE = 2048  # x86 kernel limit, in bytes

# A word of the extra arguments: runs of non-space characters, where "…" may hold spaces (kernel quoting).
_WORD = re.compile(r'(?:[^\s"]|"[^"]*")+')
_GRUB_SPECIAL = set(" \t\"'\\;$&|<>(){}#`")


@dataclass(frozen=True)
class KernelBoot:
    """A kernel to load: absolute URLs and the command line as words; each loader quotes them its way."""

    kernel: str
    initrd: tuple[str, ...]
    tokens: tuple[str, ...]
    what: str  # for screens and logs: "the ubuntu-24.04 installer", a kernel path

    @property
    def append(self) -> str:
        """The command line as a PXELINUX ``APPEND`` body."""
        return for_pxelinux(list(self.tokens))


def split_extra(text: str) -> list[str]:
    """Extra kernel arguments as words; ``a="b c"`` stays one word."""
    return _WORD.findall(text or "")


def installer_tokens(base_url: str, device_id: str, iso_file: str, extra: str = "") -> list[str]:
    """The installer's arguments (casper, cloud-init, Subiquity) followed by ``extra``.

    An extra word whose key (text before ``=``, or the whole word) equals a generated one replaces it in place;
    the others are appended in order.
    """
    if not iso_file.endswith(".iso"):
        raise UserError(f"{iso_file}: the installer only fetches ISO URLs ending in .iso")
    node_url = f"{base_url.rstrip('/')}/{device_id}"
    tokens = [
        "root=/dev/ram0",
        "ramdisk_size=1500000",
        "ip=dhcp",
        "cloud-config-url=/dev/null",
        f"url={node_url}/{iso_file}",
        "autoinstall",
        f"ds=nocloud-net;s={node_url}/cloud-init/",
    ]
    for word in split_extra(extra):
        key = word.split("=", 1)[0]
        for index, existing in enumerate(tokens):
            if existing.split("=", 1)[0] == key:
                tokens[index] = word
                break
        else:
            tokens.append(word)
    return tokens


def node_installer_boot(inventory: Inventory, node: Node, base_url: str) -> KernelBoot:
    """Kernel, initrd and arguments that install the node's ``os``; UserError if it has none or it is unknown."""
    eff = inventory.effective(node)
    if not eff.os:
        raise UserError(f"node {node.name} ({node.device_id}): no os set; set nodes.<id>.os or defaults.os")
    iso_file = iso_file_name(inventory.paths.httproot, eff.os)
    if iso_file is None:
        raise UserError(
            f"node {node.name} ({node.device_id}): os {eff.os!r} is neither in the catalogue nor an added image; "
            "see `pypxe-homelab images list`"
        )
    node_url = f"{base_url.rstrip('/')}/{node.device_id}"
    return KernelBoot(
        kernel=f"{node_url}/{KERNEL_PATH}",
        initrd=(f"{node_url}/{INITRD_PATH}",),
        tokens=tuple(installer_tokens(base_url, node.device_id, iso_file, eff.cmdline)),
        what=f"the {eff.os} installer",
    )


def node_http_file(inventory: Inventory, root: Path, device_id: str, rel_path: str) -> Path | None:
    """The file behind ``GET /<device_id>/<rel_path>`` for the installer, or None (→ 404).

    ``root`` is httproot. ``rel_path`` must be exactly ``casper/vmlinuz``, ``casper/initrd`` or the ISO file
    name of the node's image; the image must be ready. Cloud-init seed paths are not handled here.
    """
    node = inventory.node(device_id)
    if node is None:
        return None
    os_name = inventory.effective(node).os
    paths = image_paths(root, os_name) if os_name else None
    if paths is None:
        return None
    target = {KERNEL_PATH: paths.kernel, INITRD_PATH: paths.initrd, paths.iso_file: paths.iso}.get(rel_path)
    return root / target if target else None


def for_pxelinux(tokens: list[str]) -> str:
    """An ``APPEND`` line body: PXELINUX passes it literally (``;`` needs no escaping)."""
    _check_no_newlines(tokens)
    return " ".join(tokens)


def for_grub(tokens: list[str]) -> str:
    """Arguments for a GRUB ``linux`` line: ``;``, ``$``, quotes, spaces and other shell-like characters escaped.

    A word in kernel quoting (``foo="a b"``) loses its quotes and has its space escaped (``foo=a\\ b``): GRUB
    reads it as the one word ``foo=a b`` and writes it to the kernel as ``"foo=a b"``, which the kernel reads
    as ``foo`` = ``a b`` (kept, the quotes would reach the kernel escaped, as part of the value).
    """
    _check_no_newlines(tokens)
    return " ".join(
        "".join("\\" + c if c in _GRUB_SPECIAL else c for c in token.replace('"', "")) for token in tokens
    )


def for_ipxe(tokens: list[str]) -> str:
    """Arguments for an iPXE ``kernel`` line; refuses words iPXE would interpret (``${``, leading ``#``,
    ``||``, ``&&``, a lone ``;``)."""
    _check_no_newlines(tokens)
    for token in tokens:
        if "${" in token or token.startswith("#") or token in ("||", "&&", ";"):
            raise UserError(f"kernel argument {token!r} cannot be passed through iPXE unchanged")
    return " ".join(tokens)


def cmdline_problems(tokens: list[str]) -> list[str]:
    """Why this command line would not work (too long for the kernel), as messages."""
    length = len(" ".join(tokens).encode())
    if length > MAX_CMDLINE - 64:  # room for BOOTIF= and initrd= added by the loader
        return [f"kernel command line is {length} bytes; the limit is {MAX_CMDLINE}: shorten cmdline extras"]
    return []


def _check_no_newlines(tokens: list[str]) -> None:
    for token in tokens:
        if "\n" in token or "\r" in token:
            raise UserError(f"kernel argument {token!r} contains a line break")
