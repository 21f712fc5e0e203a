"""GRUB configs for the Secure Boot chain (shim → signed network GRUB), rendered from templates at request time.

Distribution-signed network GRUB reads ``$prefix/grub.cfg`` with ``$prefix`` = ``(tftp,<siaddr>)/grub``, the
siaddr of the router's DHCPACK. ``grub/grub.cfg`` is the same for every machine: it sources
``grub/mac/<mac>.cfg`` by GRUB's own ``$net_default_mac``, so the per-machine config never depends on which
address the router gave. The decision is ``choose_boot``'s and the words are ``kernel_boot``'s, as for
PXELINUX and iPXE; only the quoting differs (``for_grub``).

Debian's signed network GRUB has no HTTP client (``(http,…)`` is "disk not found"), so it loads the kernel and
initrds over TFTP: ``grub/http/<path>`` serves what ``GET /<path>`` serves on the HTTP port.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pypxe_homelab.boot.kernel_cmdline import for_grub
from pypxe_homelab.boot.loader_config import kernel_boot
from pypxe_homelab.boot.policy import BootChoice
from pypxe_homelab.boot.rendering import render_template
from pypxe_homelab.config.hostnet import network_of
from pypxe_homelab.config.model import Inventory
from pypxe_homelab.errors import UserError
from pypxe_homelab.identity import add_command, mac_of_device_id

GRUB_DIR = "grub"
HTTP_ALIAS = "grub/http/"
_MAC_CONFIG = re.compile(r"^grub/mac/([0-9a-f]{2}(?::[0-9a-f]{2}){5})\.cfg$", re.IGNORECASE)
_UNSAFE = re.compile(r"[\s\"'\\;$&|<>(){}#`]")


def grub_config_request(path: str) -> str | None:
    """What a normalised TFTP path asks for: ``'entry'`` (``grub/grub.cfg``), ``'01-<mac>'`` for
    ``grub/mac/<mac>.cfg``, or None when it is no GRUB config of ours."""
    if path.lower() == f"{GRUB_DIR}/grub.cfg":
        return "entry"
    m = _MAC_CONFIG.match(path)
    return "01-" + m.group(1).lower().replace(":", "-") if m else None


def http_alias_request(path: str) -> str | None:
    """``grub/http/<rel>`` → ``<rel>`` (the HTTP path GRUB fetches over TFTP), else None."""
    return path[len(HTTP_ALIAS) :] if path.startswith(HTTP_ALIAS) and len(path) > len(HTTP_ALIAS) else None


def grub_device_path(url: str, base_url: str) -> str:
    """``<base_url>/a/b`` → ``(tftp,<server>)/grub/http/a/b``: the same file through this server's TFTP.

    UserError for URLs on other servers (signed GRUB speaks only TFTP, and only to this server) or with
    characters GRUB would split or expand.
    """
    base = base_url.rstrip("/") + "/"
    if not url.startswith(base) or _UNSAFE.search(url):
        raise UserError(
            f"{url!r} cannot be fetched by signed GRUB: it loads files over TFTP from this server only; "
            "use a path under httproot"
        )
    host = urlsplit(base).hostname
    return f"(tftp,{host})/{HTTP_ALIAS}{url[len(base) :]}"


def _say(text: str) -> str:
    """``text`` as one double-quoted GRUB word for ``echo`` and menu titles (no expansion)."""
    return '"' + text.replace("\\", "\\\\").replace('"', "'").replace("$", "\\$") + '"'


def render_grub_entry() -> str:
    """``grub/grub.cfg``: the same for every machine; hands over to the machine's own config by its MAC."""
    return render_template("grub.cfg.j2")


def render_grub_config(
    choice: BootChoice, *, base_url: str, inventory: Inventory, client_ip: str | None = None
) -> str:
    """The text of ``grub/mac/<mac>.cfg`` for one machine: boot its kernel or installer, boot its disk, or the
    unknown-machine screen (which boots the disk after ``server.menu_timeout``)."""
    device_id = choice.device_id
    hostname = choice.node.name if choice.node else (device_id or "")
    title = f"{device_id} ({hostname})" if hostname != device_id else str(device_id)
    if choice.action in ("boot", "install"):
        kb = kernel_boot(choice, base_url, inventory)
        tokens = list(kb.tokens)
        if choice.action == "install" and device_id and not any(t.startswith("BOOTIF=") for t in tokens):
            tokens.append(f"BOOTIF={device_id}")  # what PXELINUX's SYSAPPEND 2 adds: the NIC that booted
        return render_template(
            "grub-boot.cfg.j2",
            device_id=device_id,
            hostname=hostname,
            title=_say(f"pypxe-homelab: {title}: booting {kb.what}"),
            kernel=grub_device_path(kb.kernel, base_url),
            initrds=[grub_device_path(url, base_url) for url in kb.initrd],
            args=for_grub(tokens),
        )
    if choice.action == "local":
        return render_template(
            "grub-localboot.cfg.j2",
            device_id=device_id,
            hostname=hostname,
            say=_say(f"pypxe-homelab: {title}: {choice.reason}; booting from the local disk"),
        )
    timeout_s = max(1, inventory.server.menu_timeout)
    return render_template(
        "grub-unknown.cfg.j2",
        device_id=device_id,
        mac=mac_of_device_id(device_id) if device_id else None,
        add_command=_say(add_command(device_id, network_of(client_ip))) if device_id else "",
        timeout_s=timeout_s,
    )
