"""Small files come from memory (fresh after an edit); Range and conditional requests still get FileResponse."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Handler

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


def test_replies_from_memory_are_reported_after_they_are_sent(tmp_path: Path) -> None:
    httproot = tmp_path / "httproot"
    httproot.mkdir()
    (httproot / "menu.cfg").write_bytes(b"x" * 1024)
    events: list[Event] = []

    async def scenario() -> None:
        async with TestClient(TestServer(_service(tmp_path, events).build_app())) as client:
            got = await client.get("/menu.cfg", headers={"User-Agent": "iPXE/1.21"})
            assert got.status == 200 and got.headers["Content-Length"] == "1024"
            assert len(await got.read()) == 1024
            head = await client.head("/menu.cfg")
            assert head.status == 200 and head.headers["Content-Length"] == "1024"
            await asyncio.sleep(0)

    asyncio.run(scenario())
    by_kind = [(str(e.kind), dict(e.detail)) for e in events]
    assert [k for k, _ in by_kind] == ["http.get", "http.done", "http.get", "http.done"]
    get, done, head_get, head_done = (d for _, d in by_kind)
    assert get == {"path": "/menu.cfg", "what": "file", "size": 1024, "method": "GET", "range": None,
                   "agent": "iPXE/1.21"}  # fmt: skip
    assert done["status"] == 200 and done["bytes"] == 1024
    assert head_get["method"] == "HEAD" and head_done["bytes"] == 0
    assert all(e.client.startswith("127.0.0.1:") for e in events)


def test_no_event_is_built_before_the_handler_returns(tmp_path: Path) -> None:
    httproot = tmp_path / "httproot"
    httproot.mkdir()
    (httproot / "boot.ipxe").write_bytes(b"#!ipxe\n")
    events: list[Event] = []
    service = _service(tmp_path, events)
    seen_at_return: list[int] = []

    @web.middleware
    async def watch(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        seen_at_return.append(len(events))
        return response

    async def scenario() -> None:
        app = service.build_app()
        app.middlewares.append(watch)
        async with TestClient(TestServer(app)) as client:
            assert (await client.get("/boot.ipxe")).status == 200
            await asyncio.sleep(0)

    asyncio.run(scenario())
    assert seen_at_return == [0] and len(events) == 2
