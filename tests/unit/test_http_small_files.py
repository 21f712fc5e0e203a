"""Small files come from memory (fresh after an edit); Range and conditional requests still get FileResponse."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from pypxe_homelab.boot.booter import InventoryBooter
from pypxe_homelab.config.model import Inventory, Paths
from pypxe_homelab.events import Event
from pypxe_homelab.runtime import Runtime
from pypxe_homelab.services.http import HttpService
from pypxe_homelab.state.store import StateStore


def _service(root: Path, events: list[Event]) -> HttpService:
    runtime = Runtime(
        Inventory(paths=Paths(root=root)), StateStore(None, use_arp=False), events.append,
        ipaddress.IPv4Address("127.0.0.1"), 8080,
    )  # fmt: skip
    return HttpService(InventoryBooter(lambda: runtime), events.append, 0, "127.0.0.1")


def test_small_files_fresh_after_edit_range_head(tmp_path: Path) -> None:
    httproot = tmp_path / "httproot"
    httproot.mkdir()
    small = httproot / "boot.ipxe"
    small.write_bytes(b"#!ipxe\nchain one\n")
    events: list[Event] = []

    async def scenario() -> None:
        async with TestClient(TestServer(_service(tmp_path, events).build_app())) as client:
            first = await client.get("/boot.ipxe")
            assert first.status == 200 and await first.read() == b"#!ipxe\nchain one\n"
            assert first.headers["Content-Length"] == "17" and "Last-Modified" in first.headers
            small.write_bytes(b"#!ipxe\nchain two, longer\n")
            os.utime(small, ns=(small.stat().st_atime_ns, small.stat().st_mtime_ns + 10**9))
            second = await client.get("/boot.ipxe")
            assert await second.read() == b"#!ipxe\nchain two, longer\n"
            part = await client.get("/boot.ipxe", headers={"Range": "bytes=7-11"})
            assert part.status == 206 and await part.read() == b"chain"
            head = await client.head("/boot.ipxe")
            assert head.status == 200 and head.headers["Content-Length"] == "25"
            missing = await client.get("/nothing")
            assert missing.status == 404

    asyncio.run(scenario())
    kinds = [str(e.kind) for e in events]
    assert kinds.count("http.get") == 4 and kinds.count("http.done") == 4
