"""Checks of an inventory against this host that the loader (pure: it reads no host state) cannot make:
served interfaces exist, no node is given the server's own or the gateway's address, the boot loaders are
installed. `validate`, `add` and every live reload run them, so all three refuse the same things."""

from __future__ import annotations

import ipaddress

from pypxe_homelab.assets.bootloaders import install_advice, missing_bootloaders
from pypxe_homelab.config import hostnet
from pypxe_homelab.config.model import Inventory

BOOTFILES_INSTALL = "`sudo pypxe-homelab bootfiles install`"


def server_addresses(inventory: Inventory) -> list[ipaddress.IPv4Address]:
    """This server's own addresses: server.address and those of the served interfaces (configured or the
    default route's)."""
    found = [inventory.server.address] if inventory.server.address else []
    default = hostnet.default_route_interface()
    names = list(inventory.server.interfaces) or ([default] if default else [])
    for name in names:
        ipif = hostnet.interface_ipv4(name)
        if ipif is not None and ipif.ip not in found:
            found.append(ipif.ip)
    return found


def host_problems(inventory: Inventory, *, loaders: bool = True) -> list[str]:
    """Every problem of ``inventory`` on this host, one line each (``file[:line]: key: what; fix``)."""
    where = str(inventory.source) if inventory.source else "<embedded default>"
    problems = []
    for name in inventory.server.interfaces:
        if not hostnet.interface_exists(name):
            problems.append(
                f"{where}: server.interfaces: {name!r} is not a network interface of this host; "
                "name one that `ip -br addr` lists"
            )
    own = server_addresses(inventory)
    for node in inventory.nodes.values():
        if node.address is None:
            continue
        at = (
            f"{where}:{node.line}: nodes.{node.device_id}"
            if node.line
            else f"{where}: nodes.{node.device_id}"
        )
        gateway = node.gateway or inventory.defaults.gateway
        if node.address.ip in own:
            problems.append(
                f"{at}: address {node.address.ip} is this server's own address; give the machine another one"
            )
        elif node.address.ip == gateway:
            problems.append(
                f"{at}: address {node.address.ip} is the gateway's address; give the machine another one"
            )
    return problems + (loader_problems(inventory) if loaders else [])


def loader_problems(inventory: Inventory) -> list[str]:
    """The boot loaders of ``server.loaders`` missing from tftproot, as one line with the command to fix it."""
    where = str(inventory.source) if inventory.source else "<embedded default>"
    missing = missing_bootloaders(inventory.paths.tftproot, inventory.server.loaders)
    if not missing:
        return []
    return [
        f"{where}: server.loaders: {', '.join(missing)} not found in {inventory.paths.tftproot}; "
        f"install them with {install_advice(missing, BOOTFILES_INSTALL)}"
    ]
