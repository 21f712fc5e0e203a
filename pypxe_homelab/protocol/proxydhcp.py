"""ProxyDHCP mechanism: which requests on UDP 67 and 4011 are PXE asks, and the reply bytes for a boot answer.

No policy lives here. ``read_ask`` turns a parsed request into a typed ``PxeAsk`` (or None: not our business);
the policy (a Booter) answers it with one of the ``DhcpAnswer`` variants; ``reply_for`` turns that answer into
the ``DhcpReply`` the codec encodes. Pure functions, no sockets, no logging, no inventory.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pypxe_homelab.protocol import pxe_options as pxe
from pypxe_homelab.protocol.client_class import (
    HTTP_VENDOR_CLASS,
    PXE_VENDOR_CLASS,
    ClientClass,
    classify,
    device_ids,
)
from pypxe_homelab.protocol.dhcp_codec import (
    ACK,
    BOOTREQUEST,
    DISCOVER,
    INFORM,
    OFFER,
    REQUEST,
    DhcpReply,
    DhcpRequest,
)

DHCP_PORT = 67
PXE_PORT = 4011
CLIENT_PORT = 68
BROADCAST = "255.255.255.255"
BROADCAST_FLAG = 0x8000

BOOT_SERVER_TYPE = 0x8000  # the one boot server type our menu offers
BIOS_MENU_TEXT = "Boot x86 BIOS"
PI_MENU_TEXT = "Raspberry Pi Boot"
PROMPT = (0, "PXE")  # boot the first menu item at once
MAX_FILE = 127  # the header's file field holds 128 bytes including the NUL
DEFAULT_VENDOR_CLASSES = (PXE_VENDOR_CLASS, HTTP_VENDOR_CLASS)

Stage = Literal["discover", "boot-server", "binl"]


@dataclass(frozen=True)
class ServerView:
    """What the server knows about the interface a request arrived on."""

    address: str  # IPv4 address of that interface: option 54, siaddr, boot server
    interface: str = ""


@dataclass(frozen=True)
class PxeAsk:
    """A PXE or HTTP-boot client and what it asked for.

    ``stage``: ``discover`` (a DISCOVER on 67), ``boot-server`` (a REQUEST/INFORM on 4011 naming a boot server
    item of our menu) or ``binl`` (a REQUEST/INFORM on 4011 without one, as UEFI firmware sends).
    """

    request: DhcpRequest
    port: int
    stage: Stage
    client: ClientClass
    device_ids: tuple[str, ...]

    @property
    def mac(self) -> str:
        return self.request.chaddr

    @property
    def firmware(self) -> str | None:
        """The firmware class to serve: a 4011 boot-server request without option 93 is a BIOS ROM."""
        if self.stage == "boot-server" and self.client.arch is None:
            return "bios"
        return self.client.firmware


# -- the answers a policy can give ------------------------------------------------------------------------


@dataclass(frozen=True)
class Menu:
    """Arch-0 clients (BIOS ROMs, every Raspberry Pi): the PXE boot menu. ``bios_server`` False sends only the
    Raspberry Pi item, as the Raspberry Pi documentation shows. ``boot_file`` is what the BIOS item leads to."""

    bios_server: bool = True
    boot_file: str | None = None


@dataclass(frozen=True)
class BinlOffer:
    """UEFI 'binl': an offer naming us as boot server; the boot file (``boot_file``) follows on 4011."""

    boot_file: str


@dataclass(frozen=True)
class DirectOffer:
    """UEFI 'direct': the boot file in the offer itself, no menu and no discovery."""

    boot_file: str


@dataclass(frozen=True)
class UrlOffer:
    """A URL in the offer's file field: an iPXE script (vendor class PXEClient) or a UEFI HTTP Boot file
    (vendor class HTTPClient, which HTTP Boot firmware requires in the answer)."""

    url: str
    vendor_class: str = PXE_VENDOR_CLASS


@dataclass(frozen=True)
class BootFile:
    """The answer on 4011: the boot file (or an iPXE script URL) for a boot-server or BINL request."""

    boot_file: str


@dataclass(frozen=True)
class Ignore:
    """Stay silent, on purpose, for ``reason``."""

    reason: str


DhcpAnswer = Menu | BinlOffer | DirectOffer | UrlOffer | BootFile | Ignore
OFFER_ANSWERS = (Menu, BinlOffer, DirectOffer, UrlOffer, Ignore)
ACK_ANSWERS = (BootFile, Ignore)


def answer_file(answer: DhcpAnswer) -> str | None:
    """The boot file or URL an answer hands out (or leads to), for reports."""
    if isinstance(answer, UrlOffer):
        return answer.url
    if isinstance(answer, Ignore):
        return None
    return answer.boot_file


def answer_reason(ask: PxeAsk, answer: DhcpAnswer) -> str:
    """One line saying what the reply does."""
    if isinstance(answer, Ignore):
        return answer.reason
    if isinstance(answer, Menu):
        return "arch-0 boot menu"
    if isinstance(answer, BinlOffer):
        return "UEFI binl: boot file on 4011"
    if isinstance(answer, DirectOffer):
        return "UEFI direct: boot file in the offer"
    if isinstance(answer, UrlOffer):
        if answer.vendor_class == HTTP_VENDOR_CLASS:
            return "UEFI HTTP Boot: URL in the offer"
        return "iPXE: script URL in the offer"
    url = ": iPXE script URL" if answer.boot_file.startswith("http://") else ""
    return ("boot server ACK" if ask.stage == "boot-server" else "BINL ACK") + url


def file_field_problem(text: str) -> str | None:
    """Why ``text`` cannot go into the BOOTP file field, or None when it fits."""
    if not text.isascii() or len(text.encode("ascii")) > MAX_FILE:
        return f"{text} is not ASCII of at most {MAX_FILE} bytes (the reply's file field)"
    return None


# -- reading requests ---------------------------------------------------------------------------------------


def is_pxe_client(request: DhcpRequest, vendor_prefixes: Sequence[str] = DEFAULT_VENDOR_CLASSES) -> bool:
    """An Ethernet BOOTREQUEST whose vendor class starts with one of the PXE prefixes."""
    return (
        request.op == BOOTREQUEST
        and request.htype == 1
        and request.hlen == 6
        and request.vendor_class is not None
        and any(request.vendor_class.startswith(p) for p in vendor_prefixes if p)
    )


def read_ask(
    request: DhcpRequest, port: int, vendor_prefixes: Sequence[str] = DEFAULT_VENDOR_CLASSES
) -> PxeAsk | None:
    """The PXE ask in ``request`` received on ``port`` (67 or 4011), or None when it is none of our business
    (plain DHCP clients, REQUESTs on 67, DISCOVERs without option 93, other ports)."""
    if not is_pxe_client(request, vendor_prefixes):
        return None
    stage: Stage
    if port == DHCP_PORT:
        if request.message_type != DISCOVER or request.arch is None:
            return None
        stage = "discover"
    elif port == PXE_PORT:
        if request.message_type not in (REQUEST, INFORM):
            return None
        stage = "boot-server" if pxe.BOOT_ITEM in request.pxe else "binl"
    else:
        return None
    client = classify(request)
    return PxeAsk(request, port, stage, client, device_ids(request, client))


def ask_problem(ask: PxeAsk) -> Ignore | None:
    """What no policy can answer: a malformed or foreign boot item, PXE BIS, a BINL request without arch."""
    request = ask.request
    if ask.stage == "boot-server":
        if request.boot_item is None:
            return Ignore("malformed boot item (option 43.71)")
        item_type, layer = request.boot_item
        if layer & pxe.BIS_LAYER_BIT:
            return Ignore("PXE BIS (credentials) is not supported")
        if item_type != BOOT_SERVER_TYPE:
            return Ignore(f"boot item type {item_type:#06x} is not offered")
    elif ask.stage == "binl" and ask.client.arch is None:
        return Ignore("no client architecture (option 93)")
    return None


# -- building replies ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def arch_zero_menu(server: str, bios: bool = True) -> bytes:
    """Option 43 for arch-0 clients (BIOS ROMs and every Raspberry Pi).

    With ``bios`` the menu offers the boot server and a Pi item (golden vector of the old setup);
    without it only the Pi item is sent, as the Raspberry Pi documentation shows.
    """
    if not bios:
        return pxe.encode(
            [
                pxe.discovery_control(pxe.NO_BROADCAST | pxe.NO_MULTICAST),
                pxe.menu_prompt(*PROMPT),
                pxe.boot_menu([pxe.MenuItem(pxe.LOCAL_BOOT, PI_MENU_TEXT)]),
            ]
        )
    return pxe.encode(
        [
            pxe.discovery_control(pxe.NO_BROADCAST | pxe.NO_MULTICAST),
            pxe.boot_servers([pxe.BootServer(BOOT_SERVER_TYPE, (server,))]),
            pxe.boot_menu(
                [pxe.MenuItem(BOOT_SERVER_TYPE, BIOS_MENU_TEXT), pxe.MenuItem(pxe.LOCAL_BOOT, PI_MENU_TEXT)]
            ),
            pxe.menu_prompt(*PROMPT),
        ]
    )


@functools.cache
def direct_boot_options() -> bytes:
    """Option 43 for UEFI 'direct' mode: take the file in this offer, no menu or discovery."""
    return pxe.encode([pxe.discovery_control(pxe.USE_BOOT_FILE), pxe.menu_prompt(*PROMPT)])


def relay_problem(giaddr: str, interface: ipaddress.IPv4Interface) -> str | None:
    """Why a relayed request (giaddr set) must not be answered on ``interface``, or None when it may.

    A relay agent's address is a unicast host address: never loopback, multicast, broadcast (global or the
    interface's subnet), unspecified or reserved, and never our own address (each would make us a reflector).
    Whether the kernel routes to it through the receiving interface is the service's check.
    """
    try:
        address = ipaddress.IPv4Address(giaddr)
    except ValueError:
        return f"relay address {giaddr!r} is not an IPv4 address"
    if address.is_loopback:
        return f"relay address {address} is a loopback address"
    if address == interface.ip:
        return f"relay address {address} is our own address"
    if (
        address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or address == ipaddress.IPv4Address("255.255.255.255")
        or (interface.network.prefixlen < 31 and address == interface.network.broadcast_address)
    ):
        return f"relay address {address} is not a unicast host address"
    return None


def destination(request: DhcpRequest, port: int, src_ip: str, src_port: int) -> tuple[str, int]:
    """Where the reply goes: relay agent, else broadcast on 67, else back to the sender on 4011."""
    if request.giaddr != "0.0.0.0":
        return request.giaddr, DHCP_PORT
    if port == DHCP_PORT:
        return BROADCAST, CLIENT_PORT
    return (BROADCAST if src_ip == "0.0.0.0" else src_ip), src_port


def _base(request: DhcpRequest, server: ServerView, message_type: int, **fields: object) -> DhcpReply:
    mid = request.machine_id
    return DhcpReply(
        message_type=message_type,
        xid=request.xid,
        chaddr_raw=request.chaddr_raw,
        server_id=server.address,
        htype=request.htype,
        hlen=request.hlen,
        giaddr=request.giaddr,
        machine_id=mid if mid is not None and len(mid) == 17 else None,
        **fields,  # type: ignore[arg-type]
    )


def reply_for(ask: PxeAsk, answer: DhcpAnswer, server: ServerView) -> DhcpReply | None:
    """The reply that carries ``answer`` to ``ask`` (None for Ignore); ValueError for an answer the stage
    cannot carry (an offer on 4011, a boot file on 67) or a file that does not fit the file field."""
    request = ask.request
    if isinstance(answer, Ignore):
        return None
    file = answer_file(answer)
    if file is not None and not isinstance(answer, Menu) and (problem := file_field_problem(file)):
        raise ValueError(problem)
    if ask.stage == "discover":
        if isinstance(answer, Menu):
            menu = arch_zero_menu(server.address, bios=answer.bios_server)
            return _base(request, server, OFFER, flags=BROADCAST_FLAG, pxe=menu)
        if isinstance(answer, BinlOffer):
            return _base(request, server, OFFER, flags=BROADCAST_FLAG, siaddr=server.address)
        if isinstance(answer, DirectOffer):
            return _base(
                request,
                server,
                OFFER,
                flags=BROADCAST_FLAG,
                siaddr=server.address,
                file=answer.boot_file,
                pxe=direct_boot_options(),
            )
        if isinstance(answer, UrlOffer):
            return _base(
                request,
                server,
                OFFER,
                flags=BROADCAST_FLAG,
                siaddr=server.address,
                file=answer.url,
                vendor_class=answer.vendor_class,
            )
        raise ValueError(f"{type(answer).__name__} cannot answer a DISCOVER")
    if not isinstance(answer, BootFile):
        raise ValueError(f"{type(answer).__name__} cannot answer a request on port {PXE_PORT}")
    if ask.stage == "boot-server":
        assert request.boot_item is not None
        item_type, layer = request.boot_item
        return _base(
            request,
            server,
            ACK,
            flags=request.flags,
            yiaddr=request.ciaddr,
            siaddr=server.address,
            file=answer.boot_file,
            pxe=pxe.encode([pxe.boot_item(item_type, layer)]),
        )
    return _base(
        request,
        server,
        ACK,
        flags=request.flags,
        ciaddr=request.ciaddr,
        siaddr=server.address,
        sname=server.address,
        file=answer.boot_file,
    )
