"""`add` and `remove`: edit the machines in config.yaml (`list` lives in ``listing``)."""

from __future__ import annotations

import ipaddress
from typing import Any

import click

from pypxe_homelab.boot.host_checks import server_addresses
from pypxe_homelab.boot.install_plan import install_plan
from pypxe_homelab.cli import CliContext, parse_device_id
from pypxe_homelab.config import hostnet
from pypxe_homelab.config import values as V
from pypxe_homelab.config.editor import add_node, remove_node
from pypxe_homelab.config.loader import load_inventory, load_or_default
from pypxe_homelab.config.model import Inventory
from pypxe_homelab.errors import UserError

RELOAD_NOTE = "A running server picks up the change by itself; no restart needed."


def _option(name: str, parse, value: Any) -> Any:
    try:
        return parse(value)
    except V.Invalid as exc:
        raise UserError(f"{name}: {exc}") from None


def _check_free(
    inventory: Inventory,
    device: str,
    address: ipaddress.IPv4Interface,
    gateway: ipaddress.IPv4Address | None,
) -> None:
    where = inventory.source
    for other in inventory.nodes.values():
        if other.device_id != device and other.address is not None and other.address.ip == address.ip:
            raise UserError(
                f"{where}:{other.line}: {address.ip} is already the address of {other.device_id}; "
                "choose another --node-address"
            )
    if address.ip in server_addresses(inventory):
        raise UserError(f"--node-address: {address.ip} is this server's own address; choose another one")
    if gateway is not None and address.ip == gateway:
        raise UserError(f"--node-address: {address.ip} is the gateway's address; choose another one")


@click.command()
@click.argument("device_id")
@click.option(
    "--node-address", required=True, metavar="CIDR", help="Its LAN address with prefix, e.g. 192.168.1.50/24."
)
@click.option(
    "--node-gateway", metavar="IP", help="Its gateway. Default: defaults.gateway, else this host's."
)
@click.option(
    "--node-dns",
    multiple=True,
    metavar="IP",
    help="A DNS server (repeat it or give a comma list). Default: defaults.dns, else this host's upstream resolvers.",
)
@click.option("--hostname", help="Host name of the installed machine. Default: the device id.")
@click.option(
    "--os", "os_name", metavar="NAME", help="OS image to install, e.g. ubuntu-24.04. Default: defaults.os."
)
@click.option("--force", is_flag=True, help="Replace the node's entry if it is already there.")
@click.pass_obj
def add(
    obj: CliContext,
    device_id: str,
    node_address: str,
    node_gateway: str | None,
    node_dns: tuple[str, ...],
    hostname: str | None,
    os_name: str | None,
    force: bool,
) -> None:
    """Add a machine to config.yaml (DEVICE_ID: 01-<mac>, a MAC, or a Raspberry Pi serial)."""
    device = parse_device_id(device_id)
    address = _option("--node-address", V.host_cidr, node_address)
    gateway = _option("--node-gateway", V.ipv4, node_gateway) if node_gateway else None
    dns = _option("--node-dns", V.ipv4_list, ",".join(node_dns)) if node_dns else ()
    if hostname is not None:
        _option("--hostname", V.hostname, hostname)
    if os_name is not None and not os_name.strip():
        raise UserError("--os: empty name; give an OS image name like ubuntu-24.04")

    inventory, _embedded = load_or_default(obj.config_path, detect_host=False)
    existing = inventory.node(device)
    if existing is not None and not force:
        raise UserError(
            f"{obj.config_path}:{existing.line}: {device} is already in the inventory; use --force to replace it"
        )

    inherited: list[str] = []
    effective_gateway = gateway
    if gateway is None and inventory.defaults.gateway is not None:
        effective_gateway = inventory.defaults.gateway
        inherited.append(f"gateway {effective_gateway}")
    elif gateway is None:
        gateway = effective_gateway = hostnet.default_gateway()
    if effective_gateway is not None and effective_gateway != address.ip:
        try:
            V.check_gateway(effective_gateway, address)
        except V.Invalid as exc:
            if node_gateway:
                raise UserError(f"--node-gateway: {exc}") from None
            raise UserError(
                f"--node-address: {address} is not in the same subnet as the default gateway "
                f"{effective_gateway}; give --node-gateway or fix the prefix length"
            ) from None
    if not dns and inventory.defaults.dns:
        inherited.append("DNS " + ", ".join(map(str, inventory.defaults.dns)))
    elif not dns:
        dns = tuple(hostnet.upstream_dns())

    _check_free(inventory, device, address, effective_gateway)
    extra = {"os": os_name.strip()} if os_name else None
    edit = add_node(obj.config_path, device, address, gateway, dns, hostname, force=force, extra=extra)

    verb = "Replaced" if edit.replaced else "Added"
    created = " (new file)" if edit.created else ""
    click.echo(f"{verb} {device} in {obj.config_path}{created}:")
    click.echo(edit.text.rstrip("\r\n"))
    if inherited:
        click.echo(f"It uses {' and '.join(inherited)} from defaults.")
    after = load_inventory(obj.config_path)
    for line in install_plan(after, after.nodes[device]).lines():
        click.echo(line)
    click.echo(RELOAD_NOTE)


@click.command()
@click.argument("device_id")
@click.pass_obj
def remove(obj: CliContext, device_id: str) -> None:
    """Remove a machine from config.yaml."""
    edit = remove_node(obj.config_path, parse_device_id(device_id))
    click.echo(f"Removed {edit.device_id} from {obj.config_path}.")
    click.echo(RELOAD_NOTE)


COMMANDS = [add, remove]
