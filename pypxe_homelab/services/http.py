"""The HTTP service (aiohttp): kernels, initrds and ISOs with Range/HEAD/sendfile, per-node cloud-init,
the status page and API. Every transfer becomes an event naming the machine when it can be known."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from pypxe_homelab.config import hostnet
from pypxe_homelab.config.model import mac_of_device_id
from pypxe_homelab.events import Event
from pypxe_homelab.protocol.ipxe import SCRIPT_NAME as IPXE_SCRIPT
from pypxe_homelab.protocol.tftp_paths import PathRefused
from pypxe_homelab.rootfiles import static_file
from pypxe_homelab.runtime import Runtime

log = logging.getLogger("pypxe_homelab.http")

DEVICE_ID_RE = r"01-[0-9a-f]{2}(?:-[0-9a-f]{2}){5}|[0-9a-f]{8}"
CLOUD_INIT_FILES = ("user-data", "meta-data", "vendor-data", "network-config")
_BOOTIF = re.compile(r"^01-([0-9a-f]{2}(?:-[0-9a-f]{2}){5})$")

RuntimeGetter = Callable[[], Runtime]


def safe_path(root: Path, rel: str) -> Path | None:
    """``rel`` below ``root`` as a regular file, or None: no '..', no NUL, no symlink leaving the root."""
    try:
        return static_file(root, rel)
    except PathRefused:
        return None


def transfer_kind(path: str) -> str:
    """What a request fetches, for the timeline: kernel, initrd, iso or file."""
    name = path.rsplit("/", 1)[-1].lower()
    if name.endswith(".iso"):
        return "iso"
    if "initrd" in name or "initramfs" in name or name.endswith((".cpio", ".cpio.gz")):
        return "initrd"
    if name in ("linux", "vmlinuz", "kernel", "bzimage") or name.startswith(("vmlinuz", "linux")):
        return "kernel"
    return "file"


def _detail(request: web.Request, path: str, what: str, size: int) -> dict:
    """The facts every transfer event of one request carries."""
    return {
        "path": path,
        "what": what,
        "size": size,
        "method": request.method,
        "range": request.headers.get("Range"),
        "agent": request.headers.get("User-Agent", ""),
    }


def _client(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return f"{peer[0]}:{peer[1]}" if peer else str(request.remote)


class _ReportedFileResponse(web.FileResponse):
    """A FileResponse (Range, HEAD, Content-Length, sendfile) that reports when its body is sent or cut off."""

    def __init__(self, path: Path, report: Callable[[str, dict], None]) -> None:
        super().__init__(path, chunk_size=256 * 1024)
        self._report = report

    async def prepare(self, request: web.BaseRequest):
        started = time.monotonic()
        try:
            writer = await super().prepare(request)
        except (ConnectionError, asyncio.CancelledError) as exc:
            duration = round(time.monotonic() - started, 3)
            self._report("http.abort", {"duration": duration, "reason": type(exc).__name__})
            raise
        duration = time.monotonic() - started
        sent = (self.content_length or 0) if request.method != "HEAD" else 0
        self._report(
            "http.done",
            {
                "status": self.status,
                "bytes": sent,
                "duration": round(duration, 3),
                "rate": round(sent / duration) if duration > 0 else None,
            },
        )
        return writer


class HttpService:
    """Builds the aiohttp application and runs it on ``port`` of every address."""

    def __init__(self, runtime_getter: RuntimeGetter, port: int, host: str = "0.0.0.0") -> None:
        self._runtime = runtime_getter
        self._port = port
        self._host = host
        self._runner: web.AppRunner | None = None

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        from pypxe_homelab.web.api import add_routes as add_api_routes

        add_api_routes(app, self._runtime)
        app.router.add_get(
            "/{device_id:" + DEVICE_ID_RE + "}/cloud-init/{name:" + "|".join(CLOUD_INIT_FILES) + "}",
            self._cloud_init,
        )
        app.router.add_get("/{device_id:" + DEVICE_ID_RE + "}/" + IPXE_SCRIPT, self._ipxe_script)
        app.router.add_get("/{path:.*}", self._file)
        return app

    async def start(self) -> None:
        from pypxe_homelab.errors import UserError

        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        try:
            await site.start()
        except PermissionError as exc:
            raise UserError(
                f"cannot listen on TCP port {self._port}: permission denied; use a port above 1023 "
                "in server.http_port or run with sudo"
            ) from exc
        except OSError as exc:
            owner = hostnet.port_owner("tcp", self._port) or "another program (a web server?)"
            raise UserError(
                f"cannot listen on TCP port {self._port}: {exc.strerror}; {owner} uses it: "
                "stop it or set server.http_port to a free port"
            ) from exc

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers --------------------------------------------------------------------------------

    def _client_identity(self, request: web.Request, device_id: str | None) -> tuple[str | None, str | None]:
        """Device id and MAC of the requester: from the URL, PXELINUX's BOOTIF cookie, or its IP."""
        runtime = self._runtime()
        if device_id:
            return device_id, mac_of_device_id(device_id)
        bootif = request.cookies.get("_Syslinux_BOOTIF", "").lower()
        m = _BOOTIF.match(bootif)
        if m:
            mac = m.group(1).replace("-", ":")
            return bootif, mac
        remote = request.remote or ""
        mac = runtime.store.mac_for_ip(remote) if remote else None
        if mac:
            return "01-" + mac.replace(":", "-"), mac
        return None, None

    async def _cloud_init(self, request: web.Request) -> web.Response:
        from pypxe_homelab.boot.autoinstall_boot import cloud_init_file

        runtime = self._runtime()
        device_id = request.match_info["device_id"]
        name = request.match_info["name"]
        client = _client(request)
        node = runtime.inventory.node(device_id)
        if node is None:
            runtime.emit(
                Event(
                    "http.error",
                    client,
                    device_id,
                    mac_of_device_id(device_id),
                    {"path": request.path, "status": 404, "reason": "not in the inventory"},
                )
            )
            raise web.HTTPNotFound(text=f"{device_id} is not in the inventory\n")
        generation = runtime.store.node_state(device_id).generation
        try:
            body = cloud_init_file(
                runtime.inventory, node, name, runtime.base_url_for(request.remote), generation
            )
        except Exception as exc:  # a broken node must not take the server down
            log.error("%s: cannot render %s: %s", device_id, name, exc)
            raise web.HTTPInternalServerError(text=f"cannot render {name} for {device_id}: {exc}\n") from exc
        runtime.emit(
            Event(
                "cloudinit.fetch",
                client,
                device_id,
                mac_of_device_id(device_id),
                {"file": name, "path": request.path, "bytes": len(body.encode())},
            )
        )
        return web.Response(text=body, content_type="text/plain", charset="utf-8")

    async def _ipxe_script(self, request: web.Request) -> web.StreamResponse:
        """``/<id>/boot.ipxe``: the iPXE script for this machine, decided now like a PXELINUX config."""
        from pypxe_homelab.boot.autoinstall_boot import boot_choice
        from pypxe_homelab.boot.ipxe_script import render_ipxe_script

        runtime = self._runtime()
        device_id = request.match_info["device_id"]
        mac = mac_of_device_id(device_id)
        client = _client(request)
        state = runtime.store.node_state(device_id).state
        choice = boot_choice(runtime.inventory, device_id, state)
        try:
            body = render_ipxe_script(
                choice,
                base_url=runtime.base_url_for(request.remote),
                inventory=runtime.inventory,
                client_ip=request.remote,
            ).encode()
        except Exception as exc:  # a broken node must not take the server down
            log.error("%s: cannot render %s: %s", device_id, IPXE_SCRIPT, exc)
            failure = {"path": request.path, "status": 500, "reason": str(exc)}
            runtime.emit(Event("http.error", client, device_id, mac, failure))
            raise web.HTTPInternalServerError(text=f"cannot render {request.path}: {exc}\n") from exc
        detail = _detail(request, request.path, "config", len(body))
        runtime.emit(Event("http.get", client, device_id, mac, dict(detail)))
        sent = len(body) if request.method != "HEAD" else 0
        runtime.emit(Event("http.done", client, device_id, mac, {**detail, "status": 200, "bytes": sent}))
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    async def _file(self, request: web.Request) -> web.StreamResponse:
        runtime = self._runtime()
        rel = request.match_info["path"]
        device_id = None
        path: Path | None = None
        m = re.match(r"^(" + DEVICE_ID_RE + r")/(.+)$", rel)
        httproot = runtime.inventory.paths.httproot
        if m and runtime.inventory.node(m.group(1)) is not None:
            from pypxe_homelab.boot.autoinstall_boot import node_file

            device_id = m.group(1)
            path = node_file(runtime.inventory, device_id, m.group(2))
        if path is None:
            path = safe_path(httproot, rel)
        device_id, mac = self._client_identity(request, device_id)
        client = _client(request)
        if path is None:
            runtime.emit(Event("http.error", client, device_id, mac, {"path": "/" + rel, "status": 404}))
            raise web.HTTPNotFound(text=f"not found: /{rel}\n")
        what = transfer_kind(rel)
        size = path.stat().st_size
        detail = _detail(request, "/" + rel, what, size)
        runtime.emit(Event("http.get", client, device_id, mac, dict(detail)))
        return _ReportedFileResponse(
            path, lambda kind, facts: runtime.emit(Event(kind, client, device_id, mac, {**detail, **facts}))
        )
