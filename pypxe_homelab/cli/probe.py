"""`probe`: the machines that network-booted but are not in config.yaml yet, with the command that adds them."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pypxe_homelab.cli import CliContext, console
from pypxe_homelab.cli.status import ago, load_inventory, run_live, start_hint
from pypxe_homelab.errors import UserError
from pypxe_homelab.web.client import ApiClient, ApiError, ServerNotRunning


def _kind(d: dict[str, Any]) -> str:
    if d.get("pi"):
        model = {"pi4": "Pi 4", "pi5": "Pi 5"}.get(d.get("pi_model") or "", "Pi")
        return f"Raspberry {model}" + (f" {d['serial']}" if d.get("serial") else "")
    parts = [d.get("firmware") or (f"arch {d['arch']}" if d.get("arch") is not None else "?")]
    if d.get("ipxe"):
        parts.append("iPXE")
    return " ".join(parts)


def devices_table(devices: list[dict[str, Any]]) -> RenderableType:
    table = Table(title="Machines seen, not in config.yaml", header_style="bold")
    for column in ("Device id", "Kind", "MAC", "IP", "Last seen", "Got to", "Boots"):
        table.add_column(column, no_wrap=column in ("Device id", "MAC"))
    for d in devices:
        table.add_row(
            d["device_id"],
            _kind(d),
            d.get("mac") or "",
            d.get("ip") or "",
            ago(d.get("last_seen")),
            d.get("stage") or "",
            str(d.get("boots") or ""),
        )
    if not devices:
        table.caption = "nothing yet: network-boot a machine (Ctrl-C to stop)"
        return table
    commands = Text("\nTo register:\n", style="bold")
    for d in devices:
        commands.append(f"  {d['suggested']}\n")
    return Group(table, commands)


@click.command()
@click.option("--once", is_flag=True, help="Print once and exit instead of updating until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (implies --once).")
@click.pass_obj
def probe(obj: CliContext, once: bool, as_json: bool) -> None:
    """Show machines that network-booted but are not registered, live until Ctrl-C."""
    inventory = load_inventory(obj.config_path)
    port = inventory.server.http_port
    api = ApiClient(port)
    try:
        devices = api.devices()
    except ServerNotRunning:
        raise UserError(start_hint(obj.config_path, port)) from None
    except ApiError as exc:
        raise UserError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(devices, indent=2))
        return
    out = console()
    if once:
        out.print(devices_table(devices))
        return

    def render() -> RenderableType:
        nonlocal devices
        with contextlib.suppress(ServerNotRunning, ApiError):
            devices = api.devices()
        return devices_table(devices)

    run_live(render, out)


COMMANDS = [probe]
