"""A real aiohttp server on 127.0.0.1 with the status/API routes, for the web and API tests."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web

from pypxe_homelab.config.model import Inventory, Node, Paths
from pypxe_homelab.runtime import Runtime
from pypxe_homelab.state.store import StateStore
from pypxe_homelab.web.api import add_routes

PC = "01-52-54-00-a0-00-01"
PC_MAC = "52:54:00:a0:00:01"
PI = "7092246e"


def make_runtime(root: Path, db: Path | None = None) -> Runtime:
    """A Runtime with two registered nodes (a PC and a Pi) whose emit records into a real store."""
    nodes = {
        PC: Node(PC, address=ipaddress.IPv4Interface("10.231.0.50/24"), hostname="web1", os="ubuntu-24.04"),
        PI: Node(PI, hostname="pi1"),
    }
    inventory = Inventory(paths=Paths(root=root), nodes=nodes)
    store = StateStore(db, use_arp=False)
    runtime = Runtime(inventory, store, store.record, ipaddress.IPv4Address("127.0.0.1"), 0)
    store.set_inventory_view(
        lambda i: runtime.inventory.node(i) is not None,
        lambda i: runtime.inventory.effective(runtime.inventory.nodes[i]).install or "once",
    )
    return runtime


class WebServer:
    """Serves ``add_routes`` on an ephemeral 127.0.0.1 port from a background thread."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.url = ""

    def __enter__(self) -> WebServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=1024 * 1024)
        add_routes(app, lambda: self.runtime)
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    def __exit__(self, *exc: object) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.runtime.store.close()

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """(status, parsed JSON body or text) of one request."""
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, raw, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as err:
            status, raw, ctype = err.code, err.read(), err.headers.get("Content-Type", "")
        return status, json.loads(raw) if "json" in ctype else raw.decode(errors="replace")
