"""`list`: show the machines in config.yaml (a module of its own: it needs none of what `add` checks with)."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from pypxe_homelab.cli import CliContext, console
from pypxe_homelab.config.loader import load_or_default
from pypxe_homelab.config.model import Inventory, Node


def node_record(inventory: Inventory, node: Node) -> dict[str, Any]:
    """One node as JSON-ready data, with the values it really gets (defaults filled in)."""
    eff = inventory.effective(node)
    return {
        "device_id": node.device_id,
        "hostname": node.hostname,
        "address": str(node.address) if node.address else None,
        "gateway": str(eff.gateway) if eff.gateway else None,
        "dns": [str(d) for d in eff.dns],
        "os": eff.os,
        "install": eff.install,
        "boot": (
            {"kernel": node.boot.kernel, "initrd": list(node.boot.initrd), "cmdline": node.boot.cmdline}
            if node.boot
            else None
        ),
        "line": node.line,
    }


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the nodes as a JSON list.")
@click.pass_obj
def list_(obj: CliContext, as_json: bool) -> None:
    """List the machines in config.yaml."""
    inventory, embedded = load_or_default(obj.config_path)
    records = [node_record(inventory, node) for node in inventory.nodes.values()]
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        missing = " (the file does not exist yet)" if embedded else ""
        click.echo(f"No nodes in {obj.config_path}{missing}; add one with `pypxe-homelab add`.")
        return
    table = Table("device id", "hostname", "address", "gateway", "os", "boot")
    for record in records:
        boot = record["boot"]["kernel"] if record["boot"] else ""
        table.add_row(
            record["device_id"],
            record["hostname"] or "",
            record["address"] or "",
            record["gateway"] or "",
            record["os"] or "",
            boot,
        )
    out = console()
    out.print(table)


COMMANDS = [list_]
