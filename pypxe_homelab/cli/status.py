"""`status` and `reinstall`: where every node is in its install, a node's timeline, re-arming an install."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from pypxe_homelab.cli import CliContext, console, parse_device_id
from pypxe_homelab.config import hostnet
from pypxe_homelab.config.model import DEFAULT_CONFIG_PATH, Inventory, Node
from pypxe_homelab.errors import UserError
from pypxe_homelab.identity import add_command, address_note
from pypxe_homelab.state.views import node_view, nodes_page, nodes_view
from pypxe_homelab.state.views import timeline_view as events_view
from pypxe_homelab.web.client import ApiClient, ApiError, ServerNotRunning

REFRESH_SECONDS = 2.0
_STATE_STYLE = {"installed": "green", "failed": "bold red", "installing": "cyan", "booting": "blue"}


def load_inventory(config_path: Path) -> Inventory:
    from pypxe_homelab.config.loader import load_or_default

    inventory, _ = load_or_default(config_path)
    return inventory


def _served_network(inventory: Inventory) -> ipaddress.IPv4Network | None:
    """The network of the served interface (the configured one, else the default route's), if known."""
    default = hostnet.default_route_interface()
    names = list(inventory.server.interfaces) or ([default] if default else [])
    found = [hostnet.interface_ipv4(name) for name in names[:1]]
    return found[0].network if found and found[0] is not None else None


def start_hint(config_path: Path, port: int) -> str:
    """One line saying that no server runs and how to start one."""
    flag = "" if config_path == DEFAULT_CONFIG_PATH else f" --config {config_path}"
    return f"no pypxe-homelab server answers on http://127.0.0.1:{port}: start one with `sudo pypxe-homelab{flag} serve`"


def ago(epoch: float | None, now: float | None = None) -> str:
    """'12 s ago', '3 min ago', '2 h ago', '4 d ago' or 'never'."""
    if not epoch:
        return "never"
    s = max(0.0, (now or time.time()) - epoch)
    for limit, unit, div in ((60, "s", 1), (3600, "min", 60), (86400, "h", 3600)):
        if s < limit:
            return f"{s / div:.0f} {unit} ago"
    return f"{s / 86400:.0f} d ago"


def progress_text(node: dict[str, Any], width: int = 12) -> Text:
    """A text progress bar for an installing node, else nothing."""
    pct = node.get("progress")
    if node.get("state") != "installing" or pct is None:
        return Text("")
    filled = round(width * max(0.0, min(100.0, pct)) / 100)
    return (
        Text("█" * filled, style="cyan") + Text("░" * (width - filled), style="dim") + Text(f" {pct:3.0f}%")
    )


def state_text(state: str) -> Text:
    label = "not registered" if state == "unregistered" else state
    return Text(label, style=_STATE_STYLE.get(state, "dim"))


MAX_UNREGISTERED_ROWS = 20  # after a boot storm thousands may be known; `probe` and --json list them all


def nodes_table(
    nodes: list[dict[str, Any]],
    max_unregistered: int = MAX_UNREGISTERED_ROWS,
    unregistered_total: int | None = None,
) -> Table:
    """Every registered node, then the ``max_unregistered`` most recently seen machines that are not
    (``unregistered_total``: how many there are, when ``nodes`` holds only that page of them)."""
    table = Table(title="Nodes", expand=False, header_style="bold")
    for column in ("Node", "State", "Progress", "Last seen", "Stage", "Address", "OS", "Why it stopped"):
        table.add_column(column, no_wrap=column in ("Node", "State", "Progress"))
    registered = [n for n in nodes if n["state"] != "unregistered"]
    others = sorted(
        (n for n in nodes if n["state"] == "unregistered"),
        key=lambda n: n.get("last_seen") or 0,
        reverse=True,
    )
    hidden = max(0, (len(others) if unregistered_total is None else unregistered_total) - max_unregistered)
    for n in registered + others[:max_unregistered]:
        name = n.get("hostname")
        table.add_row(
            n["device_id"] if not name or name == n["device_id"] else f"{name}\n{n['device_id']}",
            state_text(n["state"]),
            progress_text(n),
            ago(n.get("last_seen")),
            n.get("stage") or "",
            n.get("address") or n.get("ip") or "",
            n.get("os") or "",
            Text((n.get("diagnosis") or {}).get("reason", ""), style="red"),
        )
    if not nodes:
        table.caption = "no node registered or seen yet"
    elif hidden:
        table.caption = f"and {hidden:,} more machines not registered: `pypxe-homelab probe` lists them"
    return table


def timeline_view(node: dict[str, Any], events: list[dict[str, Any]]) -> RenderableType:
    head = Text.assemble(
        (node.get("hostname") or node["device_id"], "bold"),
        "  ",
        state_text(node["state"]),
        f"  generation {node['generation']}" if node.get("generation") else "",
        "  ",
        progress_text(node),
        f"  last seen {ago(node.get('last_seen'))}",
    )
    table = Table(expand=False, show_header=True, header_style="bold", box=None)
    table.add_column("Time", no_wrap=True)
    table.add_column("Event")
    table.add_column("", justify="right")
    for e in events:
        style = (
            "red" if (e.get("detail") or {}).get("result") == "FAIL" or e["kind"].endswith(".error") else ""
        )
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"]))
        table.add_row(
            stamp, Text(e["summary"], style=style), f"×{e['repeat']}" if e.get("repeat", 1) > 1 else ""
        )
    parts: list[RenderableType] = [head, table]
    diagnosis = node.get("diagnosis")
    if diagnosis:
        parts.append(Text(f"why it stopped: {diagnosis['reason']}", style="bold red"))
        parts.append(Text(f"fix: {diagnosis['fix']}", style="yellow"))
    if node.get("suggested"):
        parts.append(Text(f"register it with: {node['suggested']}", style="yellow"))
    return Group(*parts)


def run_live(render: Callable[[], RenderableType], console: Console) -> None:
    """Redraw ``render()`` every REFRESH_SECONDS until Ctrl-C."""
    from rich.live import Live  # on use: `--once` and pipes never redraw

    try:
        with Live(render(), console=console, refresh_per_second=4, screen=False) as live:
            while True:
                time.sleep(REFRESH_SECONDS)
                live.update(render())
    except KeyboardInterrupt:
        pass


def _offline_views(
    inventory: Inventory, device_id: str | None, limit: int, table: bool
) -> tuple[Any, Any] | None:
    """(nodes or node, events) read straight from the state db when no server runs; None without a db.
    With ``table``, the nodes are (the page a table shows, how many unregistered in all)."""
    db = inventory.paths.state_db
    if not db.exists():
        return None
    from pypxe_homelab.state.store import StateStore  # on use: with a server running it is not needed

    store = StateStore(db, use_arp=False)
    try:
        if device_id is None and table:
            return nodes_page(inventory, store, MAX_UNREGISTERED_ROWS), None
        if device_id is None:
            return nodes_view(inventory, store), None
        return node_view(inventory, store, device_id), events_view(store, device_id, limit)
    finally:
        store.close()


def _never_seen(inventory: Inventory, device_id: str) -> dict[str, Any]:
    """A registered node the state db knows nothing of yet (no server ran, or it never booted)."""
    node = inventory.nodes[device_id]
    return {"device_id": device_id, "hostname": node.hostname, "state": "registered", "generation": None}


def node_status(inventory: Inventory, data: dict[str, Any], events: list[dict[str, Any]]) -> RenderableType:
    """A node's timeline, then what its next network boot does and what is still missing."""
    # On use: the plan renders the install (Jinja, schemas), which `status` of all nodes never needs.
    from pypxe_homelab.boot.install_plan import install_plan

    node = inventory.node(data["device_id"])
    if node is None:
        return timeline_view(data, events)
    plan = Text("\n".join(install_plan(inventory, node, data.get("state")).lines()))
    return Group(timeline_view(data, events), Text(""), plan)


@click.command()
@click.argument("device_id", required=False)
@click.option("--once", is_flag=True, help="Print once and exit instead of updating until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (implies --once).")
@click.option("--limit", default=50, show_default=True, help="Timeline entries shown for DEVICE_ID.")
@click.pass_obj
def status(obj: CliContext, device_id: str | None, once: bool, as_json: bool, limit: int) -> None:
    """Show every node's install state (or DEVICE_ID's timeline), live until Ctrl-C.

    Printed once when the output is not a terminal (a pipe, a file) or no server runs.
    """
    if device_id is not None:
        device_id = parse_device_id(device_id)
    inventory = load_inventory(obj.config_path)
    port = inventory.server.http_port
    api = ApiClient(port)
    out = console()

    def fetch() -> tuple[Any, Any]:
        if device_id is None and not as_json:
            return api.nodes_page(MAX_UNREGISTERED_ROWS), None  # what the table shows, not every device
        if device_id is None:
            return api.nodes(), None
        return api.node(device_id), api.events(device_id, limit)

    try:
        data, events = fetch()
    except ServerNotRunning:
        data, events = None, None
    except ApiError as exc:
        raise UserError(str(exc)) from None
    if data is None:
        offline = _offline_views(inventory, device_id, limit, table=not as_json)
        if offline is None and (device_id is None or inventory.node(device_id) is None):
            raise UserError(start_hint(obj.config_path, port)) from None
        data, events = offline or (None, None)
        if data is None and device_id is not None and inventory.node(device_id) is not None:
            data, events = _never_seen(inventory, device_id), []
        if data is None:
            raise UserError(f"{device_id} is neither in {obj.config_path} nor seen on the network yet")
        click.echo(f"({start_hint(obj.config_path, port)}; showing the last recorded state)", err=True)
        once = True
    if as_json:
        click.echo(json.dumps(data if device_id is None else {**data, "events": events}, indent=2))
        return

    def view() -> RenderableType:
        return (
            nodes_table(data[0], unregistered_total=data[1])
            if device_id is None
            else node_status(inventory, data, events)
        )

    def render() -> RenderableType:
        nonlocal data, events
        with contextlib.suppress(ServerNotRunning, ApiError):  # keep showing the last answer
            data, events = fetch()
        return view()

    if once or not sys.stdout.isatty():  # a pipe or a file gets one picture, not a screen that never ends
        out.print(view())
        return
    run_live(render, out)


@click.command()
@click.argument("device_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before erasing a Raspberry Pi's disk.")
@click.pass_obj
def reinstall(obj: CliContext, device_id: str, yes: bool) -> None:
    """Re-arm DEVICE_ID: it installs again at its next network boot (new install generation).

    A Raspberry Pi's iSCSI disk is erased and made again from its image (after a confirmation)."""
    device_id = parse_device_id(device_id)
    inventory = load_inventory(obj.config_path)
    node = inventory.node(device_id)
    if node is None:
        raise UserError(
            f"{device_id} is not in {obj.config_path}: add it first with "
            f"`{add_command(device_id, _served_network(inventory))}` ({address_note(_served_network(inventory))})"
        )
    if node.is_pi:
        _recreate_pi_disk(inventory, node, yes)
    try:
        generation = ApiClient(inventory.server.http_port).reinstall(device_id)
    except ServerNotRunning:
        generation = _reinstall_offline(inventory, device_id)
    except ApiError as exc:
        raise UserError(f"the server refused to re-arm {device_id}: {exc}") from None
    if node.is_pi:
        click.echo(
            f"{device_id}: disk made again (install generation {generation}); it starts afresh at its next boot"
        )
        return
    click.echo(
        f"{device_id}: re-armed (install generation {generation}); it installs at its next network boot"
    )


def _recreate_pi_disk(inventory: Inventory, node: Node, yes: bool) -> None:
    """Erase a Pi node's disk and copy it again from its image (the running server re-opens it)."""
    from pypxe_homelab.iscsi.desired import disk_path, node_image_path
    from pypxe_homelab.iscsi.disks import recreate_disk

    image = node_image_path(inventory, node)
    if image is None:
        os_name = inventory.effective(node).os
        raise UserError(
            f"{node.device_id}: its os {os_name!r} is not a ready Pi image, so its disk cannot be made again; "
            "register the image with `pypxe-homelab images add` or fix os:"
        )
    disk = disk_path(inventory.paths, node.device_id)
    if not yes:
        click.confirm(
            f"This erases the disk of {node.device_id} ({disk}) and copies it again from {image}. "
            "Power the Pi off first. Continue?",
            abort=True,
        )
    recreate_disk(image, disk)


def _reinstall_offline(inventory: Inventory, device_id: str) -> int:
    from pypxe_homelab.state.store import StateStore

    db = inventory.paths.state_db
    try:
        store = StateStore(db, use_arp=False)
    except (OSError, PermissionError) as exc:
        raise UserError(f"cannot open {db}: {exc}; run with sudo or set paths.root") from None
    except Exception as exc:  # sqlite3 errors: read-only or locked database
        raise UserError(f"cannot update {db}: {exc}; run with sudo") from None
    try:
        return store.reinstall(device_id)
    except Exception as exc:
        raise UserError(f"cannot update {db}: {exc}; run with sudo") from None
    finally:
        store.close()


COMMANDS = [status, reinstall]
