"""PXELINUX configs (BIOS lpxelinux.0, UEFI syslinux.efi), rendered from templates at request time."""

from __future__ import annotations

from pypxe_homelab.boot.kernel_cmdline import KernelBoot, node_installer_boot, split_extra
from pypxe_homelab.boot.policy import BootChoice
from pypxe_homelab.boot.rendering import render_template
from pypxe_homelab.config.hostnet import network_of
from pypxe_homelab.config.model import Inventory
from pypxe_homelab.identity import add_command, address_note, mac_of_device_id


def http_url(base_url: str, path: str) -> str:
    """A boot path from config.yaml as a URL: http(s) URLs stay, paths are relative to httproot."""
    if path.startswith(("http://", "https://")):
        return path
    return f"{base_url}/{path.lstrip('/')}"


def kernel_boot(choice: BootChoice, base_url: str, inventory: Inventory) -> KernelBoot:
    """The kernel, initrds and command line of a node's ``boot:`` entry or of its installer."""
    node = choice.node
    assert node is not None
    if choice.action == "install":
        return node_installer_boot(inventory, node, base_url)
    assert node.boot is not None
    return KernelBoot(
        kernel=http_url(base_url, node.boot.kernel),
        initrd=tuple(http_url(base_url, i) for i in node.boot.initrd),
        tokens=(*split_extra(node.boot.cmdline), *split_extra(node.cmdline)),
        what=node.boot.kernel,
    )


def render_loader_config(
    choice: BootChoice,
    *,
    tree: str,
    base_url: str,
    inventory: Inventory,
    config_name: str = "",
    client_ip: str | None = None,
) -> str:
    """The text of ``pxelinux.cfg/<name>`` for one machine and one loader tree (bios, efi64, efi32)."""
    hostname = choice.node.name if choice.node else (choice.device_id or "")
    if choice.action in ("boot", "install"):
        kb = kernel_boot(choice, base_url, inventory)
        return render_template(
            "pxelinux-boot.cfg.j2",
            device_id=choice.device_id,
            hostname=hostname,
            tree=tree,
            kernel=kb.kernel,
            initrd=list(kb.initrd),
            append=kb.append,
            what=kb.what,
            sysappend=2 if choice.action == "install" else 0,
        )
    if choice.action == "local":
        return render_template(
            "pxelinux-localboot.cfg.j2", device_id=choice.device_id, hostname=hostname, reason=choice.reason
        )
    timeout_s = max(1, inventory.server.menu_timeout)
    device_id = choice.device_id
    return render_template(
        "pxelinux-unknown.cfg.j2",
        device_id=device_id,
        mac=mac_of_device_id(device_id) if device_id else None,
        add_command=add_command(device_id, network_of(client_ip)) if device_id else "",
        address_note=address_note(network_of(client_ip), client_ip),
        config_name=config_name,
        timeout_s=timeout_s,
        timeout_ds=timeout_s * 10,
    )
