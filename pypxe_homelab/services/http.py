"""The HTTP service (aiohttp): kernels, initrds and ISOs with Range/HEAD/sendfile, per-node cloud-init and iPXE
scripts, all answered by the Booter; the status page and API are routes the server adds. Every transfer becomes
an event naming the machine when it can be known."""

from __future__ import annotations

import asyncio
import errno
import logging
import mimetypes
import os
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

from aiohttp import web

from pypxe_homelab.boot.booter import Booter, FileAnswer, HttpAsk, HttpRefusal
from pypxe_homelab.config import hostnet
from pypxe_homelab.errors import UserError
from pypxe_homelab.events import (
    CloudInitDetail,
    EventSink,
    HttpDetail,
    Kind,
    cloud_init_event,
    http_event,
)

log = logging.getLogger("pypxe_homelab.http")

SHUTDOWN_SECONDS = 3.0  # how long a stop waits for requests still running (SIGTERM ends within seconds)

BOOTIF_COOKIE = "_Syslinux_BOOTIF"

RouteAdder = Callable[[web.Application], None]


def _detail(request: web.Request, path: str, what: str, size: int) -> HttpDetail:
    """The facts every transfer event of one request carries."""
    return HttpDetail(
        path=path,
        what=what,
        size=size,
        method=request.method,
        range=request.headers.get("Range"),
        agent=request.headers.get("User-Agent", ""),
    )


def _client(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return f"{peer[0]}:{peer[1]}" if peer else str(request.remote)


class _ReportedFileResponse(web.FileResponse):
    """A FileResponse (Range, HEAD, Content-Length, sendfile) that reports when its body is sent or cut off."""

    def __init__(self, path: Path, report: Callable[[Kind, HttpDetail], None]) -> None:
        super().__init__(path, chunk_size=256 * 1024)
        self._report = report

    async def prepare(self, request: web.BaseRequest):
        started = time.monotonic()
        try:
            writer = await super().prepare(request)
        except (ConnectionError, asyncio.CancelledError) as exc:
            duration = round(time.monotonic() - started, 3)
            self._report(Kind.HTTP_ABORT, HttpDetail(duration=duration, reason=type(exc).__name__))
            raise
        duration = time.monotonic() - started
        sent = (self.content_length or 0) if request.method != "HEAD" else 0
        self._report(
            Kind.HTTP_DONE,
            HttpDetail(
                status=self.status,
                bytes=sent,
                duration=round(duration, 3),
                rate=round(sent / duration) if duration > 0 else None,
            ),
        )
        return writer


@dataclass(frozen=True)
class _Body:
    body: bytes
    headers: Mapping[str, str]


class SmallFiles:
    """Bodies of small files (loader configs, scripts, seeds) kept in memory with their response headers,
    keyed by the real path and what ``stat`` says of the file, so an edited file is served fresh at once.
    Only plain GET/HEAD requests use it (``plain``): a Range or a conditional request goes to ``FileResponse``,
    which implements them."""

    MAX_SIZE = 64 * 1024
    MAX_FILES = 256

    def __init__(self) -> None:
        self._bodies: dict[str, tuple[tuple[int, int, int, int], _Body]] = {}

    @staticmethod
    def plain(headers: Mapping[str, str]) -> bool:
        """Whether a request with ``headers`` may be answered from memory (no Range, no condition)."""
        return not (
            "Range" in headers
            or "If-Range" in headers
            or "If-Modified-Since" in headers
            or "If-Unmodified-Since" in headers
            or "If-Match" in headers
            or "If-None-Match" in headers
        )

    def get(self, path: str, st: os.stat_result) -> _Body | None:
        """The body and headers for the file at ``path`` (whose ``stat`` is ``st``), or None when it is not
        small (or changed while read): then FileResponse serves it."""
        if st.st_size > self.MAX_SIZE or not stat.S_ISREG(st.st_mode):
            return None
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        known = self._bodies.get(path)
        if known is not None and known[0] == stamp:
            return known[1]
        try:
            with open(path, "rb") as f:
                data = f.read(self.MAX_SIZE + 1)
        except OSError:
            return None
        if len(data) != st.st_size:  # changed while read: let FileResponse deal with it
            return None
        kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
        body = _Body(data, {"Content-Type": kind, "Last-Modified": formatdate(st.st_mtime, usegmt=True)})
        if known is None and len(self._bodies) >= self.MAX_FILES:
            del self._bodies[next(iter(self._bodies))]
        self._bodies[path] = (stamp, body)
        return body


class HttpService:
    """The aiohttp application on ``port``: the routes ``routes`` add (status page, API), then every other GET
    answered by the Booter (node files, scripts, cloud-init, httproot)."""

    def __init__(
        self,
        booter: Booter,
        emit: EventSink,
        port: int,
        host: str | Sequence[str] = "0.0.0.0",
        routes: Sequence[RouteAdder] = (),
    ) -> None:
        self._booter = booter
        self._emit = emit
        self._port = port
        self._hosts = [host] if isinstance(host, str) else list(host)
        self._routes = list(routes)
        self._runner: web.AppRunner | None = None
        self._small = SmallFiles()
        self._unreported: list[tuple[web.Request, FileAnswer, int, str]] = []

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        for add in self._routes:
            add(app)
        app.router.add_get("/{path:.*}", self._serve)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(
            self.build_app(), access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_SECONDS
        )
        await self._runner.setup()
        for host in self._hosts:
            site = web.TCPSite(self._runner, host, self._port, reuse_address=True)
            try:
                await site.start()
            except PermissionError as exc:
                raise UserError(
                    f"cannot listen on TCP port {self._port}: permission denied; use a port above 1023 "
                    "in server.http_port or run with sudo"
                ) from exc
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise UserError(
                        f"cannot listen on {host}:{self._port}: no interface of this host has that address; "
                        "fix server.http_listen"
                    ) from exc
                owner = hostnet.port_owner("tcp", self._port) or "another program (a web server?)"
                raise UserError(
                    f"cannot listen on TCP port {self._port}: {exc.strerror}; {owner} uses it: "
                    "stop it or set server.http_port to a free port"
                ) from exc

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The (address, port) pairs listened on."""
        return [tuple(a[:2]) for a in self._runner.addresses] if self._runner is not None else []

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        rel = request.match_info["path"]
        bootif = request.cookies.get(BOOTIF_COOKIE) if "Cookie" in request.headers else None
        ask = HttpAsk(rel, request.remote or "", bootif)
        try:
            answer = self._booter.http(ask)
        except Exception as exc:  # a broken node must not take the server down
            client = _client(request)
            log.error("cannot answer GET /%s from %s: %s", rel, client, exc)
            failure = HttpDetail(path=request.path, status=500, reason=str(exc))
            self._emit(http_event(Kind.HTTP_ERROR, client, None, None, failure))
            raise web.HTTPInternalServerError(text=f"cannot render {request.path}: {exc}\n") from exc
        if isinstance(answer, HttpRefusal):
            refusal = HttpDetail(path="/" + rel, status=answer.status, reason=answer.reason)
            self._emit(http_event(Kind.HTTP_ERROR, _client(request), answer.device_id, answer.mac, refusal))
            raise _refusal(answer)
        return self._send(request, answer)

    def _send(self, request: web.Request, answer: FileAnswer) -> web.StreamResponse:
        """The response for ``answer``. A body from memory (generated, or a small file) is reported once it is
        sent (``_after_reply``); a file streamed by FileResponse is reported as it starts and as it ends."""
        if answer.data is not None:
            self._after_reply(request, answer, len(answer.data), request.path)
            return web.Response(body=answer.data, content_type="text/plain", charset="utf-8")
        assert answer.path is not None
        path = os.fspath(answer.path)
        st = answer.stat or os.stat(path)
        small = self._small.get(path, st) if SmallFiles.plain(request.headers) else None
        if small is not None:
            self._after_reply(request, answer, st.st_size, "/" + request.match_info["path"])
            return web.Response(body=small.body, headers=small.headers)
        client, device_id, mac = _client(request), answer.device_id, answer.mac
        detail = _detail(request, "/" + request.match_info["path"], answer.what, st.st_size)
        self._emit(http_event(Kind.HTTP_GET, client, device_id, mac, detail))

        def report(kind: Kind, facts: HttpDetail) -> None:
            self._emit(http_event(kind, client, device_id, mac, HttpDetail({**detail, **facts})))

        return _ReportedFileResponse(answer.path, report)

    def _after_reply(self, request: web.Request, answer: FileAnswer, size: int, path: str) -> None:
        """Report a body sent from memory once the handler has returned and aiohttp has written the reply
        (one callback per loop iteration reports every reply written in it): building and queueing events
        never delays a reply."""
        if not self._unreported:
            asyncio.get_running_loop().call_soon(self._report_replies)
        self._unreported.append((request, answer, size, path))

    def _report_replies(self) -> None:
        replies, self._unreported = self._unreported, []
        for reply in replies:
            try:
                self._report_sent(*reply)
            except Exception:  # one odd report must not lose the others
                log.exception("cannot report GET %s", reply[3])

    def _report_sent(self, request: web.Request, answer: FileAnswer, size: int, path: str) -> None:
        client, device_id, mac = _client(request), answer.device_id, answer.mac
        if answer.what == "cloud-init":
            assert device_id is not None
            name = request.path.rsplit("/", 1)[-1]
            facts = CloudInitDetail(file=name, path=request.path, bytes=size)
            self._emit(cloud_init_event(client, device_id, mac, facts))
            return
        detail = _detail(request, path, answer.what, size)
        self._emit(http_event(Kind.HTTP_GET, client, device_id, mac, detail))
        sent = size if request.method != "HEAD" else 0
        done = HttpDetail({**detail, "status": 200, "bytes": sent})
        self._emit(http_event(Kind.HTTP_DONE, client, device_id, mac, done))


def _refusal(answer: HttpRefusal) -> web.HTTPException:
    """The aiohttp exception for a refusal (its status and one line of text)."""
    cls = {403: web.HTTPForbidden, 404: web.HTTPNotFound}.get(answer.status, web.HTTPInternalServerError)
    return cls(text=f"{answer.reason}\n")
