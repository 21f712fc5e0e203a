"""`probe`: the machines that network-booted but are not in config.yaml yet, with the command that adds them."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

import click
from rich import box
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
        serial = d.get("serial")
        return f"Raspberry {model}" + (f" {serial}" if serial and serial != d["device_id"] else "")
    parts = [d.get("firmware") or (f"arch {d['arch']}" if d.get("arch") is not None else "?")]
    if d.get("ipxe"):
        parts.append("iPXE")
    return " ".join(parts)


def _who(d: dict[str, Any]) -> str:
    """The device id, and the MAC below it when the id does not already spell it (a Pi serial)."""
    mac = d.get("mac") or ""
    if not mac or d["device_id"] == "01-" + mac.lower().replace(":", "-"):
        return d["device_id"]
    return f"{d['device_id']}\n{mac}"


def devices_table(devices: list[dict[str, Any]]) -> RenderableType:
    """The machines seen; fits 80 columns: ids and addresses are never cut, only words wrap."""
    table = Table(
        title="Machines seen, not in config.yaml",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("Device id / MAC", no_wrap=True)
    table.add_column("IP", no_wrap=True)
    table.add_column("Kind", min_width=9)
    table.add_column("Last seen", min_width=6)
    table.add_column("Got to", min_width=9)
    table.add_column("Boots", justify="right", no_wrap=True)
    for d in devices:
        table.add_row(
            _who(d),
            d.get("ip") or "",
            _kind(d),
            ago(d.get("last_seen")),
            d.get("stage") or "",
            str(d.get("boots") or ""),
        )
    if not devices:
        table.caption = "nothing yet: network-boot a machine (Ctrl-C to stop)"
        return table
    parts: list[RenderableType] = [table]
    why = [d for d in devices if d.get("diagnosis")]
    if why:
        stopped = Text("\nWhy they stopped:\n", style="bold")
        for d in why:
            stopped.append(f"  {d['device_id']}: {d['diagnosis']['reason']}\n", style="red")
            stopped.append(f"    fix: {d['diagnosis']['fix']}\n", style="yellow")
        parts.append(stopped)
    commands = Text("\nTo register:\n", style="bold")
    for d in devices:
        commands.append(f"  {d['suggested']}\n")
    notes = dict.fromkeys(d["address_note"] for d in devices if d.get("address_note"))
    for note in notes:
        commands.append(f"  {note}\n")
    return Group(*parts, commands)


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
    if once or not sys.stdout.isatty():  # a pipe or a file gets one table, not a screen that never ends
        out.print(devices_table(devices))
        return

    def render() -> RenderableType:
        nonlocal devices
        with contextlib.suppress(ServerNotRunning, ApiError):
            devices = api.devices()
        return devices_table(devices)

    run_live(render, out)


COMMANDS = [probe]
