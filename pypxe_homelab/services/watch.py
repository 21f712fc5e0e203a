"""Two watchers beside the services: rival PXE servers heard on the LAN, and the boot-attempt diagnosis.

``RivalListener`` only listens (UDP 68 on each served interface, where broadcast OFFERs arrive) and never
sends; a port it cannot bind is skipped. ``Diagnoser`` looks at each machine once it has been quiet for
``server.diagnose_after`` seconds and records one ``boot.diagnosis`` event per boot attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections.abc import Callable, Sequence

from pypxe_homelab.config.model import Inventory
from pypxe_homelab.events import Event, EventSink, Kind, diagnosis_event, rival_event
from pypxe_homelab.identity import device_id_of_mac
from pypxe_homelab.protocol.rival import rival_offer
from pypxe_homelab.services.dhcp import InterfaceInfo
from pypxe_homelab.state.diagnosis import Machine, diagnose
from pypxe_homelab.state.store import StateStore

log = logging.getLogger(__name__)

CLIENT_PORT = 68
POLL_SECONDS = 2.0
LATE_SECONDS = 60.0  # how late an event may reach the store (the recorder queue) and still be diagnosed


class _RivalEndpoint(asyncio.DatagramProtocol):
    def __init__(self, listener: RivalListener, iface: InterfaceInfo) -> None:
        self.listener, self.iface = listener, iface

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.listener.heard(data, addr, self.iface)
        except Exception as exc:  # a bad packet never stops the listener
            log.debug("rivals: dropped a packet from %s on %s: %r", addr[0], self.iface.name, exc)


class RivalListener:
    """Listens for other servers' PXE answers; reports each as a ``dhcp.rival`` event, warns once per server."""

    def __init__(
        self, interfaces: Sequence[InterfaceInfo], emit: EventSink, own: Callable[[], set[str]]
    ) -> None:
        self.interfaces = list(interfaces)
        self._emit = emit
        self._own = own
        self._warned: set[str] = set()
        self._transports: list[asyncio.BaseTransport] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for iface in self.interfaces:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.name.encode())
                sock.bind(("0.0.0.0", CLIENT_PORT))
                sock.setblocking(False)
            except OSError as exc:
                sock.close()
                log.info("not listening for other PXE servers on %s (UDP 68: %s)", iface.name, exc.strerror)
                continue
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(_RivalEndpoint, self, iface), sock=sock
            )
            self._transports.append(transport)

    async def stop(self) -> None:
        for transport in self._transports:
            with contextlib.suppress(Exception):
                transport.close()
        self._transports.clear()

    def heard(self, data: bytes, addr: tuple[str, int], iface: InterfaceInfo) -> None:
        rival = rival_offer(data, addr[0], self._own())
        if rival is None:
            return
        kind = "ProxyDHCP" if rival.proxy else "DHCP"
        if rival.server not in self._warned:
            self._warned.add(rival.server)
            log.warning(
                "another PXE server answers on %s: %s (%s offer, vendor class %s, boot file %s); machines "
                "may boot from it instead of this server",
                iface.name,
                rival.server,
                kind,
                rival.vendor_class or "-",
                rival.boot_file or "-",
            )
        self._emit(
            rival_event(
                f"{addr[0]}:{addr[1]}",
                device_id_of_mac(rival.mac),
                rival.mac,
                {
                    "server": rival.server,
                    "kind": kind,
                    "vendor_class": rival.vendor_class,
                    "file": rival.boot_file or None,
                    "siaddr": rival.siaddr,
                    "xid": rival.xid,
                    "interface": iface.name,
                },
            )
        )


class Diagnoser:
    """Diagnoses each quiet boot attempt once (see ``state.diagnosis``) and emits the answer as an event."""

    def __init__(
        self, inventory: Callable[[], Inventory], store: StateStore, emit: EventSink, server_address: str
    ) -> None:
        self._inventory = inventory
        self._store = store
        self._emit = emit
        self._server = server_address
        # (device, attempt, last seen) already looked at: an attempt is looked at again only after it was
        # heard from again (a long transfer sends no events until it ends, so it can look quiet halfway)
        self._done: set[tuple[str, float, float]] = set()
        self._checked_until = 0.0  # devices last seen before this were looked at (less LATE_SECONDS)

    def check(self, now: float | None = None) -> list[Event]:
        """Diagnose every machine whose current attempt has been quiet long enough; returns the events sent."""
        inventory = self._inventory()
        quiet = inventory.server.diagnose_after
        now = time.time() if now is None else now
        sent = []
        cutoff = now - quiet
        # only the devices that went quiet since the last look: an index range, not every device
        since, self._checked_until = self._checked_until - LATE_SECONDS, cutoff
        self._done = {key for key in self._done if key[2] >= since}
        for rec in self._store.devices_seen_between(since, cutoff):
            if not rec.boots or rec.boot_started is None:
                continue
            key = (rec.device_id, rec.boot_started, rec.last_seen)
            if key in self._done:
                continue
            self._done.add(key)
            entries = [
                e for e in self._store.timeline(rec.device_id, 500) if e.event.time >= rec.boot_started
            ]
            if any(e.event.kind is Kind.BOOT_DIAGNOSIS for e in entries):
                continue  # diagnosed before a restart
            node = inventory.node(rec.device_id)
            machine = Machine(
                rec.device_id,
                registered=node is not None,
                secure_boot=inventory.secure_boot(node),
                server=self._server,
            )
            found = diagnose(entries, machine)
            if found is None:
                continue
            event = diagnosis_event(
                rec.device_id,
                rec.mac,
                {"cause": found.cause, "reason": found.reason, "fix": found.fix, "attempt": rec.boots},
                now,
            )
            self._emit(event)
            sent.append(event)
        return sent

    async def run(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.check)
            except Exception:
                log.exception("diagnosis failed")
