"""The lazy command group: --help lists every command without importing one; commands that do not serve
never import scapy, aiohttp or Jinja."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest

from pypxe_homelab.cli import COMMANDS, main
from pypxe_homelab.cli.status import nodes_table

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("scapy", "aiohttp", "jinja2", "pypxe_homelab.services", "pypxe_homelab.server")


def test_the_command_table_matches_each_command() -> None:
    ctx = click.Context(main)
    for name, (_module, text) in COMMANDS.items():
        command = main.get_command(ctx, name)
        assert command is not None, name
        first = (command.short_help or command.help or "").split("\n\n")[0]
        assert " ".join(first.split()) == text, name
    assert main.get_command(ctx, "no-such-command") is None


def _loaded_after(args: list[str], tmp_path: Path, prefixes: tuple[str, ...] = HEAVY) -> list[str]:
    code = textwrap.dedent(
        f"""
        import json, sys
        from pypxe_homelab.cli import main
        try:
            main({args!r}, standalone_mode=False)
        except SystemExit:
            pass
        except Exception:
            pass
        print(json.dumps(sorted(m for m in sys.modules if m.startswith({prefixes!r}))), file=sys.stderr)
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60, check=False
    )
    return json.loads(res.stderr.strip().splitlines()[-1])


def test_commands_that_do_not_serve_import_only_what_they_need(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"server:\n  http_port: 1\npaths:\n  root: {tmp_path}/root\nnodes: {{}}\n")
    assert _loaded_after(["--help"], tmp_path) == []
    assert _loaded_after(["-c", str(config), "list"], tmp_path) == []
    assert _loaded_after(["-c", str(config), "status", "--once"], tmp_path) == []


def test_status_with_no_server_loads_no_http_client_tls_or_schema_code(tmp_path: Path) -> None:
    """With nothing listening, `status` learns so from one connect and reads the state database: it never
    loads http.client (and with it ssl and email), nor what only other commands use."""
    config = tmp_path / "config.yaml"
    config.write_text(f"server:\n  http_port: 1\npaths:\n  root: {tmp_path}/root\nnodes: {{}}\n")
    lazy = ("http.client", "ssl", "email", "urllib.request", "jsonschema", "elftools", "rich.live")
    assert _loaded_after(["-c", str(config), "status", "--once"], tmp_path, lazy) == []


def test_status_shows_registered_nodes_and_only_the_latest_unregistered() -> None:
    nodes = [{"device_id": "01-52-54-00-00-00-01", "state": "booting", "last_seen": 1.0}]
    nodes += [
        {"device_id": f"01-52-54-02-00-00-{i:02x}", "state": "unregistered", "last_seen": float(i)}
        for i in range(50)
    ]
    table = nodes_table(nodes, max_unregistered=5)
    shown = list(table.columns[0]._cells)
    assert shown == ["01-52-54-00-00-00-01", *[f"01-52-54-02-00-00-{i:02x}" for i in (49, 48, 47, 46, 45)]]
    assert table.caption is not None and "45 more" in str(table.caption)


def test_the_table_reads_a_page_of_the_store_not_every_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from pypxe_homelab.config.model import Inventory, Node
    from pypxe_homelab.events import Event
    from pypxe_homelab.state.discovery import DeviceRecord
    from pypxe_homelab.state.store import StateStore
    from pypxe_homelab.state.views import nodes_page, nodes_view

    store = StateStore(None, use_arp=False)
    now = time.time()
    macs = ["52:54:00:00:00:01", *(f"52:54:02:00:{i // 256:02x}:{i % 256:02x}" for i in range(300))]
    store.record_many(
        [Event("dhcp.offer", "0.0.0.0:68", None, m, {"port": 67}, now + n) for n, m in enumerate(macs)]
    )
    inventory = Inventory(nodes={"01-52-54-00-00-00-01": Node("01-52-54-00-00-00-01")})
    store._devices.clear()  # as a CLI opening the state file finds it: nothing decoded yet
    decoded: list[str] = []
    real_from_json = DeviceRecord.from_json

    def counting(data: dict) -> DeviceRecord:
        decoded.append(data["device_id"])
        return real_from_json(data)

    monkeypatch.setattr(DeviceRecord, "from_json", staticmethod(counting))
    nodes, total = nodes_page(inventory, store, 20)
    assert len(decoded) <= 22  # the node and one page, not the 301 records
    everything = nodes_view(inventory, store)
    assert total == 300 and len(nodes) == 21
    assert nodes == everything[:21]  # the node, then the 20 seen last, as the whole view orders them
    table = nodes_table(nodes, unregistered_total=total)
    assert "280 more" in str(table.caption)
    assert len(list(table.columns[0]._cells)) == 21
