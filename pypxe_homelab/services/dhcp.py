"""The ProxyDHCP service: UDP 67 and 4011 sockets, one pair per served interface.

Each datagram is parsed, answered through the Booter, sent from the socket it arrived on, and only then
reported as an Event (the event sink queues it for the recorder; nothing on the way to the reply waits for the
state store). A bad packet is logged in one line and never stops the service.

A datagram whose bytes show it is not a PXE request (not a BOOTREQUEST, no magic cookie, no vendor class the
booter answers) is dropped before scapy sees it; requests are parsed once per shape and replies encoded once
per decision (``RequestParser``, ``ReplyEncoder``), then patched per client. The Booter decides every packet
afresh, so a config reload changes the answers at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import ipaddress
import logging
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pypxe_homelab.boot.booter import Booter, Decision, dhcp_decision
from pypxe_homelab.config import hostnet
from pypxe_homelab.errors import UserError
from pypxe_homelab.events import DhcpDetail, Event, EventSink, Kind, dhcp_event
from pypxe_homelab.protocol.dhcp_codec import DhcpRequest, ReplyEncoder, RequestParser
from pypxe_homelab.protocol.proxydhcp import DHCP_PORT, PXE_PORT, ServerView, destination, relay_problem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InterfaceInfo:
    """A served network interface and its IPv4 address."""

    name: str
    address: str
    netmask: str = "255.255.255.0"
    mtu: int = 1500

    @property
    def network(self) -> ipaddress.IPv4Interface:
        """The interface's address with its prefix."""
        return ipaddress.IPv4Interface(f"{self.address}/{self.netmask}")

    @classmethod
    def of(cls, name: str) -> InterfaceInfo:
        """Read the interface's IPv4 address, netmask and MTU from the kernel; UserError if it has none."""
        if not hostnet.interface_exists(name):
            raise UserError(
                f"network interface {name!r} does not exist: fix server.interfaces in config.yaml (see `ip -br addr`)"
            )
        ipif = hostnet.interface_ipv4(name)
        if ipif is None:
            raise UserError(
                f"network interface {name!r} has no IPv4 address: give it one (from the router's DHCP or "
                "static) or serve another interface with server.interfaces"
            )
        return cls(name, str(ipif.ip), str(ipif.netmask), hostnet.interface_mtu(name))


def _bind_error(exc: OSError, port: int, iface: str) -> UserError:
    if exc.errno == errno.EADDRINUSE:
        owner = hostnet.port_owner("udp", port)
        other = "DHCP server such as dnsmasq or isc-dhcp-server" if port == DHCP_PORT else "PXE server"
        who = f"by {owner}" if owner else f"(another {other}?)"
        return UserError(f"UDP port {port} is in use on {iface} {who}: stop it or disable its DHCP/PXE part")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return UserError(
            f"binding UDP {port} needs root or CAP_NET_BIND_SERVICE (+CAP_NET_RAW for SO_BINDTODEVICE): "
            "run with sudo"
        )
    if exc.errno == errno.ENODEV:
        return UserError(f"network interface {iface!r} does not exist: fix server.interfaces in config.yaml")
    return UserError(f"cannot bind UDP {port} on {iface}: {exc.strerror}")


RECEIVE_BUFFER = 4 << 20  # a boot storm (a rack powering on at once) waits here while the loop is busy
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux; the socket module does not name it


def _large_receive_buffer(sock: socket.socket) -> None:
    """Ask for RECEIVE_BUFFER bytes of receive buffer: past net.core.rmem_max when allowed (root or
    CAP_NET_ADMIN), else as much as the kernel grants."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)


def open_socket(iface: str, port: int, bind_port: int | None = None) -> socket.socket:
    """A UDP socket on 0.0.0.0:<port> tied to ``iface`` (broadcast allowed); UserError on failure."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # No SO_REUSEADDR: it would let us bind beside another DHCP server on this host (and miss its
        # traffic) instead of saying so. Sockets tied to different devices never conflict.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
        _large_receive_buffer(sock)
        sock.bind(("0.0.0.0", bind_port if bind_port is not None else port))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise _bind_error(exc, port, iface) from None
    return sock


_KINDS = {"offer": Kind.DHCP_OFFER, "ack": Kind.DHCP_ACK, "ignored": Kind.DHCP_IGNORED}


def event_for(decision: Decision, request: DhcpRequest, iface: str, src: tuple[str, int]) -> Event:
    """The Event reporting one decision."""
    client = decision.client
    detail = DhcpDetail(
        {
            "arch": client.arch,
            "class": client.name,
            "firmware": client.firmware,
            "ipxe": client.ipxe,
            "http": client.http,
            "pi": client.pi,
            "file": decision.boot_file,
            "xid": request.xid,
            "port": decision.port,
            "vendor_class": request.vendor_class,
            "uuid": request.uuid,
            "nic": ".".join(map(str, request.nic)) if request.nic else None,
            "ciaddr": request.ciaddr,
            "interface": iface,
            "known": decision.known,
            "reason": decision.reason,
        }
    )
    if client.pi_serial:
        detail["serial"] = client.pi_serial
    return dhcp_event(_KINDS[decision.kind], f"{src[0]}:{src[1]}", decision.device_id, decision.mac, detail)


READS_PER_WAKEUP = 64  # datagrams answered per wake-up of a socket before the loop's other work gets a turn
MAX_UNSENT = 1024  # replies held while a socket's send buffer is full (firmware retries past that)


class _Endpoint:
    """One bound socket: at each wake-up it reads every datagram waiting (up to READS_PER_WAKEUP) and answers
    each at once, with plain socket calls (an asyncio datagram transport costs a loop turn per datagram)."""

    def __init__(
        self, service: ProxyDhcpService, iface: InterfaceInfo, port: int, sock: socket.socket | None = None
    ) -> None:
        self.service, self.iface, self.port, self.sock = service, iface, port, sock
        self._size = max(2048, iface.mtu)
        self._unsent: collections.deque[tuple[bytes, tuple[str, int]]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start answering on ``loop``."""
        assert self.sock is not None
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self.readable)

    def close(self) -> None:
        """Stop answering and close the socket."""
        if self.sock is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop.remove_writer(self.sock.fileno())
        self.sock.close()
        self.sock = None

    def readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        for _ in range(READS_PER_WAKEUP):
            try:
                data, addr = sock.recvfrom(self._size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error queued on the socket
                log.debug("dhcp: socket error on %s/%s: %s", self.iface.name, self.port, exc)
                return
            self.datagram_received(data, addr)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            out, event, delay = self.service.answer_later(data, addr, self.iface, self.port)
            if out is not None:
                if delay > 0 and self._loop is not None:  # a firmware quirk setting: after the router's offer
                    self._loop.call_later(delay, self.send, out)
                else:
                    self.send(out)
            if event is not None:
                self.service.report(event)
        except Exception as exc:
            log.warning(
                "dhcp: dropped a packet from %s:%s on %s/%s: %r", *addr, self.iface.name, self.port, exc
            )

    def send(self, out: tuple[bytes, tuple[str, int]]) -> None:
        """Send one reply now, or hold it until the socket can take it."""
        if self.sock is None:
            return
        if self._unsent:
            self._hold(out)
            return
        try:
            self.sock.sendto(*out)
        except (BlockingIOError, InterruptedError):
            self._hold(out)
        except OSError as exc:
            log.debug("dhcp: could not send to %s:%s on %s: %s", *out[1], self.iface.name, exc)

    def _hold(self, out: tuple[bytes, tuple[str, int]]) -> None:
        if len(self._unsent) >= MAX_UNSENT:
            return
        if not self._unsent and self._loop is not None and self.sock is not None:
            self._loop.add_writer(self.sock.fileno(), self._writable)
        self._unsent.append(out)

    def _writable(self) -> None:
        while self._unsent and self.sock is not None:
            try:
                self.sock.sendto(*self._unsent[0])
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("dhcp: could not send on %s: %s", self.iface.name, exc)
            self._unsent.popleft()
        if self._loop is not None and self.sock is not None:
            self._loop.remove_writer(self.sock.fileno())


class ProxyDhcpService:
    """ProxyDHCP on UDP 67 and 4011 for each interface in ``interfaces``.

    Every packet is answered by ``booter``, which reads the current inventory, so a reload takes effect at
    once. ``ports`` maps the protocol port (67, 4011) to the port actually bound (for tests).
    """

    def __init__(
        self,
        booter: Booter,
        interfaces: Sequence[InterfaceInfo],
        emit: EventSink,
        *,
        ports: Mapping[int, int] | None = None,
    ) -> None:
        self._booter = booter
        self.interfaces = list(interfaces)
        self._emit = emit
        self._ports = dict(ports or {DHCP_PORT: DHCP_PORT, PXE_PORT: PXE_PORT})
        self._endpoints: list[_Endpoint] = []
        self._parser = RequestParser()
        self._encoder = ReplyEncoder()
        self._views: dict[InterfaceInfo, ServerView] = {}
        self._vendor_classes: tuple[str, ...] = ()
        self._vendor_prefixes: tuple[bytes, ...] = ()

    def _prefixes(self) -> tuple[bytes, ...]:
        """The booter's option-60 prefixes as bytes (re-read at every packet: a reload may change them)."""
        classes = self._booter.vendor_classes()
        if classes != self._vendor_classes:
            self._vendor_classes = classes
            self._vendor_prefixes = tuple(c.encode("latin-1") for c in classes if c)
        return self._vendor_prefixes

    async def start(self) -> None:
        """Bind every socket (UserError with one line if one cannot be bound) and start answering."""
        loop = asyncio.get_running_loop()
        try:
            for iface in self.interfaces:
                for port in (DHCP_PORT, PXE_PORT):
                    endpoint = _Endpoint(self, iface, port, open_socket(iface.name, port, self._ports[port]))
                    self._endpoints.append(endpoint)
                    endpoint.open(loop)
        except BaseException:
            await self.stop()
            raise
        names = ", ".join(f"{i.name} ({i.address})" for i in self.interfaces)
        log.info("ProxyDHCP listening on UDP 67 and 4011 on %s", names)

    @property
    def bound(self) -> bool:
        """True while its sockets are open."""
        return bool(self._endpoints)

    async def stop(self) -> None:
        """Close all sockets."""
        for endpoint in self._endpoints:
            with contextlib.suppress(Exception):
                endpoint.close()
        self._endpoints.clear()

    def answer(
        self, data: bytes, src: tuple[str, int], iface: InterfaceInfo, port: int
    ) -> tuple[tuple[bytes, tuple[str, int]] | None, Event | None]:
        """Parse, decide and build one datagram: ((reply bytes, destination) or None, the event to report)."""
        out, event, _delay = self.answer_later(data, src, iface, port)
        return out, event

    def answer_later(
        self, data: bytes, src: tuple[str, int], iface: InterfaceInfo, port: int
    ) -> tuple[tuple[bytes, tuple[str, int]] | None, Event | None, float]:
        """``answer``, plus the seconds the booter wants the reply held back (``dhcp_reply_delay``)."""
        request = self._parser.parse(data, self._prefixes())
        if request is None:
            return None, None, 0.0
        server = self._views.get(iface)
        if server is None:
            server = self._views[iface] = ServerView(address=iface.address, interface=iface.name)
        decision = dhcp_decision(self._booter, request, port, server)
        if decision is None:
            return None, None, 0.0
        if decision.reply is not None and request.giaddr != "0.0.0.0":
            problem = relay_problem(request.giaddr, iface.network)
            if (
                problem is None
                and hostnet.route_interface(ipaddress.IPv4Address(request.giaddr)) != iface.name
            ):
                problem = f"relay address {request.giaddr} is not reached through {iface.name}"
            if problem is not None:
                decision = decision.silenced(problem)
        out = None
        if decision.reply is not None:
            out = (self._encoder.encode(decision.reply), destination(request, port, src[0], src[1]))
        log.debug(
            "dhcp: %s %s %s arch=%s on %s/%s: %s",
            decision.kind,
            decision.mac,
            decision.device_id,
            decision.client.arch,
            iface.name,
            port,
            decision.reason,
        )
        return out, event_for(decision, request, iface.name, src), decision.delay

    def report(self, event: Event) -> None:
        """Hand ``event`` to the sink (after the reply went out); a failing sink is logged, never raised."""
        try:
            self._emit(event)
        except Exception as exc:
            log.warning("dhcp: event sink failed: %r", exc)

    def handle(
        self, data: bytes, src: tuple[str, int], iface: InterfaceInfo, port: int
    ) -> tuple[bytes, tuple[str, int]] | None:
        """``answer`` then ``report``: the reply (bytes, destination) or None."""
        out, event = self.answer(data, src, iface, port)
        if event is not None:
            self.report(event)
        return out
