"""`validate` and `render`: check config.yaml, and show exactly what a machine will receive."""

from __future__ import annotations

import ipaddress

import click

from pypxe_homelab.boot.autoinstall_boot import check_nodes
from pypxe_homelab.boot.host_checks import host_problems
from pypxe_homelab.boot.install_plan import install_plan
from pypxe_homelab.boot.preview import NodePreview, preview
from pypxe_homelab.cli import CliContext, parse_device_id
from pypxe_homelab.config import values as V
from pypxe_homelab.config.loader import load_or_default
from pypxe_homelab.config.model import Inventory, Node
from pypxe_homelab.iscsi.desired import node_image_path, node_target


def _advertised(inventory: Inventory) -> ipaddress.IPv4Address:
    """The address the server tells clients: server.address, else the served interface's own."""
    if inventory.server.address is not None:
        return inventory.server.address
    from pypxe_homelab.server import served_interfaces

    return ipaddress.IPv4Address(served_interfaces(inventory)[0].address)


def _install_state(inventory: Inventory, device_id: str) -> tuple[str | None, int]:
    """The node's recorded state and install generation, read from the state db when there is one."""
    db = inventory.paths.state_db
    if not db.exists():
        return None, 1
    from pypxe_homelab.state.store import StateStore

    store = StateStore(db)
    try:
        state = store.node_state(device_id)
        return state.state, state.generation
    finally:
        store.close()


def password_lines(inventory: Inventory) -> list[str]:
    """How each configured password is understood (plaintext, SHA-512 or yescrypt hash)."""
    lines = [f"defaults.password: {V.password_understood(inventory.defaults.password)}"]
    for node in inventory.nodes.values():
        if node.password is not None:
            lines.append(f"nodes.{node.device_id}.password: {V.password_understood(node.password)}")
    return lines


@click.command()
@click.pass_obj
def validate(obj: CliContext) -> None:
    """Check config.yaml and every node's rendered autoinstall; exit 1 listing every problem."""
    inventory, embedded = load_or_default(obj.config_path)
    if embedded:
        click.echo(f"{obj.config_path} does not exist: the embedded default (no nodes) is valid")
        return
    for line in password_lines(inventory):
        click.echo(line)
    problems = host_problems(inventory) + check_nodes(inventory)
    for line in problems:
        click.echo(f"error: {line}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo(f"{obj.config_path}: valid ({len(inventory.nodes)} node(s))")


@click.command()
@click.argument("device_id")
@click.pass_obj
def render(obj: CliContext, device_id: str) -> None:
    """Show what DEVICE_ID gets: DHCP answers per firmware, loader configs, URLs, kernel command line, cloud-init."""
    device_id = parse_device_id(device_id)
    inventory, _ = load_or_default(obj.config_path)
    base_url = f"http://{_advertised(inventory)}:{inventory.server.http_port}"
    state, generation = _install_state(inventory, device_id)
    result = preview(inventory, device_id, state, generation, base_url)
    node = inventory.node(device_id)
    known = "registered" if node else "NOT in the inventory"
    click.echo(
        f"# {device_id}: {known}; state {state or 'none yet'}; {result.choice.action}: {result.choice.reason}"
    )
    if node is not None:
        click.echo("\n## What it gets")
        for line in install_plan(inventory, node, state).lines():
            click.echo(line)
    if result.dhcp:
        click.echo("\n## ProxyDHCP answers")
        for answer in result.dhcp:
            click.echo(f"  {answer.firmware:<11} udp/{answer.port:<5} {answer.answer}")
    for tree, text in result.loader_configs.items():
        prefix = "" if tree == "bios" else f"{tree}/"
        click.echo(f"\n## TFTP {prefix}pxelinux.cfg/{device_id}\n{text.rstrip()}")
    if result.ipxe_script:
        url, text = result.ipxe_script
        click.echo(f"\n## {url} (iPXE)\n{text.rstrip()}")
    if result.urls:
        click.echo("\n## URLs it fetches")
        for url in result.urls:
            click.echo(f"  {url}")
    if node is not None and node.is_pi:
        _echo_pi(inventory, node, result)
    for name, text in result.cloud_init.items():
        click.echo(f"\n## {base_url}/{device_id}/cloud-init/{name}\n{text.rstrip()}")


def _echo_pi(inventory: Inventory, node: Node, result: NodePreview) -> None:
    """A Raspberry Pi's TFTP tree, its rendered boot files and its iSCSI target."""
    if not result.pi_files:
        click.echo("\n## TFTP: nothing is served (the node's Pi image is not ready; see `validate`)")
    else:
        click.echo("\n## TFTP files it is served")
        for path in result.pi_files:
            click.echo(f"  {path}")
    for path, text in result.pi_texts.items():
        click.echo(f"\n## TFTP {path}\n{text.rstrip()}")
    image = node_image_path(inventory, node)
    if image is None:
        click.echo("\n## iSCSI: no disk (the node's Pi image is not ready)")
        return
    target = node_target(inventory, node, image)
    click.echo("\n## iSCSI root disk (tcp/3260)")
    click.echo(f"  target    {target.iqn}, LUN 1")
    click.echo(f"  initiator {target.initiator} (the only name the target admits)")
    click.echo(f"  disk      {target.disk} (made from {target.image} on first use)")


COMMANDS = [validate, render]
