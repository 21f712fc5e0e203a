"""iPXE scripts (``/<id>/boot.ipxe``), rendered from templates at request time: the iPXE twin of loader_config.

The decision is ``choose_boot``'s, the kernel, initrds and command-line words are ``kernel_boot``'s; only the
quoting differs. Each initrd is named, and the command line names it with ``initrd=``, so that a UEFI kernel
started by iPXE finds it (BIOS kernels ignore the word). The installer also gets ``BOOTIF=01-<mac>`` of the NIC
that booted, filled in by iPXE itself, so on a machine with several NICs its ``ip=dhcp`` configures that one.
"""

from __future__ import annotations

from pypxe_homelab.boot.kernel_cmdline import for_ipxe
from pypxe_homelab.boot.loader_config import kernel_boot
from pypxe_homelab.boot.policy import BootChoice
from pypxe_homelab.boot.rendering import render_template
from pypxe_homelab.config.hostnet import network_of
from pypxe_homelab.config.model import Inventory
from pypxe_homelab.errors import UserError
from pypxe_homelab.identity import add_command, address_note, mac_of_device_id

SCRIPT_NAME = "boot.ipxe"

_SEPARATORS = {";": ",", "||": "or", "&&": "and"}


def script_url(server: str, http_port: int, device_id: str) -> str:
    """``http://<server>:<port>/<device_id>/boot.ipxe``: where an iPXE client fetches its script."""
    return f"http://{server}:{http_port}/{device_id}/{SCRIPT_NAME}"


def echo_text(text: str) -> str:
    """``text`` made safe as the arguments of an iPXE ``echo``: no ``${`` expansion, no command separator,
    no comment."""
    words = []
    for word in text.replace("${", "$ {").split():
        word = _SEPARATORS.get(word, word)
        words.append(word.lstrip("#") or "-")
    return " ".join(words)


def _url(url: str) -> str:
    """A URL as one iPXE word; UserError if iPXE would split or expand it."""
    if url.split() != [url] or "${" in url:
        raise UserError(f"{url!r} cannot be fetched by iPXE: it contains white space or '${{'")
    return url


def render_ipxe_script(
    choice: BootChoice, *, base_url: str, inventory: Inventory, client_ip: str | None = None
) -> str:
    """The iPXE script for one machine: boot its kernel or the installer, or ``exit`` to the next boot device."""
    hostname = choice.node.name if choice.node else (choice.device_id or "")
    device_id = choice.device_id
    title = echo_text(f"{device_id} ({hostname})" if hostname != device_id else str(device_id))
    if choice.action in ("boot", "install"):
        kb = kernel_boot(choice, base_url, inventory)
        initrds = [(f"initrd{index}", _url(url)) for index, url in enumerate(kb.initrd)]
        return render_template(
            "ipxe-boot.ipxe.j2",
            device_id=device_id,
            hostname=hostname,
            title=title,
            what=echo_text(kb.what),
            kernel=_url(kb.kernel),
            initrds=initrds,
            args=for_ipxe([f"initrd={name}" for name, _ in initrds] + list(kb.tokens)),
            bootif=choice.action == "install",
        )
    if choice.action == "local":
        return render_template(
            "ipxe-localboot.ipxe.j2",
            device_id=device_id,
            hostname=hostname,
            title=title,
            reason=echo_text(choice.reason),
        )
    return render_template(
        "ipxe-unknown.ipxe.j2",
        device_id=device_id,
        mac=mac_of_device_id(device_id) if device_id else None,
        add_command=echo_text(add_command(device_id, network_of(client_ip))) if device_id else "",
        address_note=echo_text(address_note(network_of(client_ip), client_ip)),
        timeout_s=max(0, inventory.server.menu_timeout),
    )
