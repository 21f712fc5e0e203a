"""The status page, the JSON API, the live event stream and the installer webhook/callback endpoints.

Read-only: everything under ``GET /api/…``, the page and its static files. Mutating: the installer webhook
``POST /<id>/events``, the callback ``GET|POST /<id>/installed`` and ``POST /api/nodes/<id>/reinstall``
(loopback clients only, and only with the ``X-Pypxe-Homelab`` header, which browsers cannot add cross-site).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from pypxe_homelab.events import CallbackDetail, InstallDetail, callback_event, install_event
from pypxe_homelab.identity import DEVICE_ID_PATTERN, mac_of_device_id
from pypxe_homelab.runtime import Runtime
from pypxe_homelab.state.store import Notification
from pypxe_homelab.state.views import devices_view, node_view, nodes_page, nodes_view, timeline_view
from pypxe_homelab.web.client import LOCAL_HEADER

log = logging.getLogger("pypxe_homelab.web")

WEBHOOK_MAX_BYTES = 64 * 1024
SSE_MAX_CLIENTS = 32
SSE_HEARTBEAT_SECONDS = 15.0
STATIC_DIR = Path(__file__).parent / "static"

# Webhook fields kept (strings cut to a sane length); anything else, e.g. base64 log files, is dropped.
_WEBHOOK_FIELDS = ("name", "event_type", "result", "description", "level", "origin", "timestamp")
_MAX_FIELD_CHARS = 1000
_LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")

RuntimeGetter = Callable[[], Runtime]
_STREAMS: web.AppKey[set[asyncio.Queue]] = web.AppKey("pypxe_homelab_streams", set)


def _id_route(suffix: str) -> str:
    return "/{device_id:" + DEVICE_ID_PATTERN + "}" + suffix


def add_routes(app: web.Application, runtime_getter: RuntimeGetter) -> None:
    """Register the page, the API, the stream and the installer endpoints on ``app``."""
    api = _Api(runtime_getter)
    app[_STREAMS] = set()
    app.on_shutdown.append(_close_streams)
    app.router.add_get("/", api.index)
    app.router.add_static("/static/", STATIC_DIR, show_index=False, append_version=False)
    app.router.add_get("/api/nodes", api.nodes)
    app.router.add_get("/api/nodes/{device_id}", api.node)
    app.router.add_get("/api/nodes/{device_id}/events", api.node_events)
    app.router.add_post("/api/nodes/{device_id}/reinstall", api.reinstall)
    app.router.add_get("/api/devices", api.devices)
    app.router.add_get("/api/stream", api.stream)
    app.router.add_post(_id_route("/events"), api.webhook)
    app.router.add_route("POST", _id_route("/installed"), api.callback)


async def _close_streams(app: web.Application) -> None:
    streams: set[asyncio.Queue] = app[_STREAMS]
    for queue in list(streams):
        queue.put_nowait(None)


def _client(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if peer and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(request.remote or "")


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class _Api:
    def __init__(self, runtime_getter: RuntimeGetter) -> None:
        self._runtime = runtime_getter

    # -- page ------------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    # -- read-only API ---------------------------------------------------------------------------

    async def nodes(self, request: web.Request) -> web.Response:
        rt = self._runtime()
        limit = request.query.get("unregistered", "")
        if not limit.isdigit():
            return web.json_response({"nodes": nodes_view(rt.inventory, rt.store)})
        nodes, total = nodes_page(rt.inventory, rt.store, int(limit))
        return web.json_response({"nodes": nodes, "unregistered_total": total})

    async def node(self, request: web.Request) -> web.Response:
        rt = self._runtime()
        device_id = request.match_info["device_id"]
        view = node_view(rt.inventory, rt.store, device_id)
        if view is None:
            return _problem(404, f"{device_id} is neither in the inventory nor discovered")
        return web.json_response(view)

    async def node_events(self, request: web.Request) -> web.Response:
        rt = self._runtime()
        device_id = request.match_info["device_id"]
        try:
            limit = min(max(int(request.query.get("limit", "200")), 1), 5000)
        except ValueError:
            return _problem(400, "limit must be a whole number")
        if rt.inventory.node(device_id) is None and rt.store.device(device_id) is None:
            return _problem(404, f"{device_id} is neither in the inventory nor discovered")
        return web.json_response(
            {"device_id": device_id, "events": timeline_view(rt.store, device_id, limit)}
        )

    async def devices(self, request: web.Request) -> web.Response:
        """``?limit=`` (default 200, at most 1000) and ``?offset=`` page the list, most recent first."""
        rt = self._runtime()
        try:
            limit = min(max(int(request.query.get("limit", "200")), 1), 1000)
            offset = max(int(request.query.get("offset", "0")), 0)
        except ValueError:
            return _problem(400, "limit and offset must be whole numbers")
        page = await asyncio.to_thread(devices_view, rt.inventory, rt.store, limit + 1, offset)
        return web.json_response(
            {
                "devices": page[:limit],
                "limit": limit,
                "offset": offset,
                "next_offset": offset + limit if len(page) > limit else None,
            }
        )

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: one ``message`` per recorded event (JSON of the entry and the node state)."""
        streams = request.app[_STREAMS]
        if len(streams) >= SSE_MAX_CLIENTS:
            return _problem(503, "too many open event streams")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=256)

        def push(note: Notification) -> None:
            payload = note.to_json()

            def put() -> None:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(payload)

            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(put)

        unsubscribe = self._runtime().store.subscribe(push)
        streams.add(queue)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)
            await response.write(b"retry: 3000\n: connected\n\n")
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), SSE_HEARTBEAT_SECONDS)
                except asyncio.TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if item is None:
                    break
                await response.write(f"data: {json.dumps(item, default=str)}\n\n".encode())
        except ConnectionError:
            pass  # the browser went away
        finally:
            unsubscribe()
            streams.discard(queue)
        return response

    # -- mutating endpoints ----------------------------------------------------------------------

    async def reinstall(self, request: web.Request) -> web.Response:
        rt = self._runtime()
        device_id = request.match_info["device_id"]
        if request.remote not in _LOOPBACK:
            log.warning(
                "refused reinstall of %s from %s: only local clients may re-arm", device_id, request.remote
            )
            return _problem(403, "reinstall is only accepted from the server itself (127.0.0.1 or ::1)")
        if request.headers.get(LOCAL_HEADER) != "1":
            return _problem(403, f"reinstall needs the header {LOCAL_HEADER}: 1")
        if rt.inventory.node(device_id) is None:
            return _problem(404, f"{device_id} is not in the inventory")
        generation = rt.store.reinstall(device_id)
        return web.json_response({"device_id": device_id, "generation": generation, "state": "discovered"})

    async def webhook(self, request: web.Request) -> web.Response:
        """The installer's reporting webhook: validate, keep the known fields, record; answer fast."""
        rt = self._runtime()
        device_id = request.match_info["device_id"]
        client = _client(request)

        def refuse(status: int, why: str) -> web.Response:
            log.warning("%s: webhook from %s refused (%d): %s", device_id, client, status, why)
            return _problem(status, why)

        if rt.inventory.node(device_id) is None:
            return refuse(404, f"{device_id} is not in the inventory")
        problem = _not_the_installer(rt, device_id, request, request.query.get("token", ""))
        if problem:
            return refuse(403, problem)
        if request.content_type != "application/json":
            return refuse(415, "the body must be Content-Type: application/json")
        if request.content_length is not None and request.content_length > WEBHOOK_MAX_BYTES:
            return refuse(413, f"body larger than {WEBHOOK_MAX_BYTES} bytes")
        try:
            body = await request.content.read(WEBHOOK_MAX_BYTES + 1)
        except (ConnectionError, asyncio.TimeoutError) as exc:
            return refuse(400, f"body could not be read: {exc}")
        if len(body) > WEBHOOK_MAX_BYTES:
            return refuse(413, f"body larger than {WEBHOOK_MAX_BYTES} bytes")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return refuse(400, "the body is not valid JSON")
        detail = _webhook_detail(data)
        if detail is None:
            return refuse(400, "expected a JSON object with string fields name and event_type")
        rt.emit(install_event(client, device_id, mac_of_device_id(device_id), detail))
        return web.json_response({"ok": True})

    async def callback(self, request: web.Request) -> web.Response:
        """The late-command callback: the node says its install finished."""
        rt = self._runtime()
        device_id = request.match_info["device_id"]
        if rt.inventory.node(device_id) is None:
            log.warning(
                "%s: install callback from %s refused: not in the inventory", device_id, _client(request)
            )
            return _problem(404, f"{device_id} is not in the inventory")
        try:
            form = await request.post()
        except ValueError:
            form = {}  # type: ignore[assignment]
        token = str(form.get("token") or request.query.get("token") or "")
        problem = _not_the_installer(rt, device_id, request, token)
        if problem:
            log.warning(
                "%s: install callback from %s refused (403): %s", device_id, _client(request), problem
            )
            return _problem(403, problem)
        rt.emit(
            callback_event(
                _client(request),
                device_id,
                mac_of_device_id(device_id),
                CallbackDetail(method=request.method),
            )
        )
        return web.Response(text="ok\n")


def _not_the_installer(rt: Runtime, device_id: str, request: web.Request, token: str) -> str | None:
    """Why a webhook or callback may not change ``device_id``'s state, or None: it must come from the address
    that network-booted as the node in its current boot and carry the token of its current install."""
    booted = rt.store.boot_address(device_id)
    if request.remote != booted:
        return (
            f"only the address that network-booted as {device_id} in its current boot may report its install"
        )
    expected = rt.store.install_token(device_id, rt.store.node_state(device_id).generation)
    if not hmac.compare_digest(token.encode(), expected.encode()):
        return "missing or wrong install token (it is in the node's own user-data)"
    return None


def _webhook_detail(data: Any) -> InstallDetail | None:
    """The fields of a curtin/Subiquity webhook report worth keeping, or None when it is not one."""
    if not isinstance(data, dict):
        return None
    if not isinstance(data.get("name"), str) or not isinstance(data.get("event_type"), str):
        return None
    detail: dict[str, Any] = {}
    for key in _WEBHOOK_FIELDS:
        value = data.get(key)
        if isinstance(value, str):
            detail[key] = value[:_MAX_FIELD_CHARS]
        elif key == "timestamp" and isinstance(value, (int, float)) and not isinstance(value, bool):
            detail[key] = float(value)
    if isinstance(data.get("files"), list):
        detail["files"] = [str(f.get("path"))[:200] for f in data["files"][:20] if isinstance(f, dict)]
    return InstallDetail(**detail)  # type: ignore[typeddict-item]
