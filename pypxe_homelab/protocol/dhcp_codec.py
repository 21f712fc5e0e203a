"""BOOTP/DHCP bytes ↔ typed records for the PXE proxy (parsing and building with scapy).

``parse_request`` never raises: anything it cannot read is None. ``build_reply`` writes the header
fields as given, the options in one fixed order (53, 54, 60, 97, 43, end) and pads to 300 bytes.

The hot path of the service uses three cheap helpers around scapy, which stays the codec:
``vendor_class_of`` reads option 60 straight from the bytes, so a request that is clearly not a PXE one is
dropped before scapy sees it; ``RequestParser`` parses each distinct request shape once (firmware sends the same
bytes but for xid, secs, chaddr and option 97) and copies the client's own fields into the parsed record;
``ReplyEncoder`` builds each distinct reply once and patches xid, flags, chaddr and option 97 per client.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from scapy.config import conf as _scapy_conf

# scapy is the codec only (it never sends here): it need not read the host's IPv4 and IPv6 routing tables as its
# layers load, which is most of the time importing it takes
_scapy_conf.route_autoload = False
_scapy_conf.route6_autoload = False

from scapy.layers.dhcp import BOOTP, DHCP, DHCPRevOptions  # noqa: E402

from pypxe_homelab.protocol import pxe_options  # noqa: E402

MAGIC_COOKIE = b"\x63\x82\x53\x63"
HEADER_LEN = 236
OPTIONS_START = HEADER_LEN + 4
MIN_REPLY_LEN = 300
CACHE_ENTRIES = 1024  # distinct request shapes / replies kept by RequestParser and ReplyEncoder

BOOTREQUEST = 1
BOOTREPLY = 2

DISCOVER = 1
OFFER = 2
REQUEST = 3
DECLINE = 4
ACK = 5
NAK = 6
RELEASE = 7
INFORM = 8

OPT_SERVER_ID = 54
OPT_VENDOR_CLASS = 60
OPT_MESSAGE_TYPE = 53
OPT_VENDOR_SPECIFIC = 43
OPT_USER_CLASS = 77
OPT_CLIENT_ARCH = 93
OPT_CLIENT_NDI = 94
OPT_MACHINE_ID = 97
OPT_IPXE_ENCAP = 175


@dataclass(frozen=True)
class DhcpRequest:
    """What a client sent, with the PXE-relevant options decoded."""

    op: int
    htype: int
    hlen: int
    hops: int
    xid: int
    secs: int
    flags: int
    ciaddr: str
    yiaddr: str
    siaddr: str
    giaddr: str
    chaddr: str  # 'aa:bb:cc:dd:ee:ff' (first hlen bytes, at most 6)
    chaddr_raw: bytes  # the 16 header bytes, copied into replies
    message_type: int | None
    vendor_class: str | None
    arch: int | None  # first entry of option 93
    arches: tuple[int, ...]
    nic: tuple[int, ...] | None  # option 94: type, major, minor
    machine_id: bytes | None  # option 97, raw
    user_class: bytes | None  # option 77, raw
    has_ipxe_opts: bool  # option 175 present
    server_id: str | None
    pxe: Mapping[int, bytes] = field(default_factory=dict)  # option 43 sub-options
    boot_item: tuple[int, int] | None = None  # 43.71 as (type, layer)
    option_order: tuple[int, ...] = ()

    @property
    def uuid(self) -> str | None:
        """Option 97 as a UUID string (type 0, 16 bytes; first three fields little-endian as PXE sends them)."""
        if self.machine_id is None or len(self.machine_id) != 17 or self.machine_id[0] != 0:
            return None
        m = self.machine_id
        # bytes_le order, as uuid.UUID(bytes_le=…) reads it, formatted without building the object
        return "-".join((m[4:0:-1].hex(), m[6:4:-1].hex(), m[8:6:-1].hex(), m[9:11].hex(), m[11:17].hex()))


@dataclass(frozen=True)
class DhcpReply:
    """A reply to build. Addresses are dotted quads; ``pxe`` is the encoded option-43 value or None."""

    message_type: int
    xid: int
    chaddr_raw: bytes
    server_id: str
    htype: int = 1
    hlen: int = 6
    flags: int = 0
    secs: int = 0
    ciaddr: str = "0.0.0.0"
    yiaddr: str = "0.0.0.0"
    siaddr: str = "0.0.0.0"
    giaddr: str = "0.0.0.0"
    sname: str = ""
    file: str = ""
    vendor_class: str = "PXEClient"
    machine_id: bytes | None = None
    pxe: bytes | None = None


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("latin-1")
    raise TypeError(f"unexpected option value {value!r}")


def _options(pkt: BOOTP) -> tuple[dict[int, object], tuple[int, ...]] | None:
    """``{code: value}`` and the order of the options up to the end marker; None when truncated."""
    values: dict[int, object] = {}
    order: list[int] = []
    if DHCP not in pkt:
        return values, ()
    for opt in pkt[DHCP].options:
        if opt == "end":
            break
        if opt == "pad":
            continue
        if not isinstance(opt, tuple) or len(opt) < 2:
            return None  # a truncated option: scapy hands back the raw rest
        name = opt[0]
        code = name if isinstance(name, int) else DHCPRevOptions[name][0]
        values[code] = opt[1] if len(opt) == 2 else list(opt[1:])
        order.append(code)
    return values, tuple(order)


def _mac(chaddr: bytes, hlen: int) -> str:
    return chaddr[: min(hlen, 6) or 6].hex(":")


def _parse(payload: bytes) -> DhcpRequest | None:
    if len(payload) < HEADER_LEN + 4 or payload[HEADER_LEN : HEADER_LEN + 4] != MAGIC_COOKIE:
        return None
    pkt = BOOTP(payload)
    parsed = _options(pkt)
    if parsed is None:
        return None
    values, order = parsed
    raw_arch = _as_bytes(values[OPT_CLIENT_ARCH]) if OPT_CLIENT_ARCH in values else b""
    arches = tuple(struct.unpack(f"!{len(raw_arch) // 2}H", raw_arch[: len(raw_arch) // 2 * 2]))
    nic = tuple(_as_bytes(values[OPT_CLIENT_NDI])) if OPT_CLIENT_NDI in values else None
    vendor = _as_bytes(values[OPT_VENDOR_CLASS]).decode("latin-1") if OPT_VENDOR_CLASS in values else None
    pxe = pxe_options.decode(_as_bytes(values[OPT_VENDOR_SPECIFIC])) if OPT_VENDOR_SPECIFIC in values else {}
    mtype = values.get(OPT_MESSAGE_TYPE)
    server_id = values.get(OPT_SERVER_ID)
    chaddr_raw = bytes(payload[28:44])
    return DhcpRequest(
        op=pkt.op,
        htype=pkt.htype,
        hlen=pkt.hlen,
        hops=pkt.hops,
        xid=pkt.xid,
        secs=pkt.secs,
        flags=int(pkt.flags),
        ciaddr=str(pkt.ciaddr),
        yiaddr=str(pkt.yiaddr),
        siaddr=str(pkt.siaddr),
        giaddr=str(pkt.giaddr),
        chaddr=_mac(chaddr_raw, pkt.hlen),
        chaddr_raw=chaddr_raw,
        message_type=int(mtype) if isinstance(mtype, int) else None,
        vendor_class=vendor,
        arch=arches[0] if arches else None,
        arches=arches,
        nic=nic,
        machine_id=_as_bytes(values[OPT_MACHINE_ID]) if OPT_MACHINE_ID in values else None,
        user_class=_as_bytes(values[OPT_USER_CLASS]) if OPT_USER_CLASS in values else None,
        has_ipxe_opts=OPT_IPXE_ENCAP in values,
        server_id=str(ipaddress.IPv4Address(server_id)) if isinstance(server_id, str) else None,
        pxe=pxe,
        boot_item=pxe_options.parse_boot_item(pxe.get(pxe_options.BOOT_ITEM)),
        option_order=order,
    )


def parse_request(payload: bytes) -> DhcpRequest | None:
    """Decode a BOOTP/DHCP datagram; None for anything malformed (never raises)."""
    try:
        return _parse(bytes(payload))
    except Exception:
        return None


def _nul_terminated(text: str, size: int, what: str) -> bytes:
    raw = text.encode("ascii")
    if len(raw) >= size:
        raise ValueError(f"{what} {text!r} is longer than {size - 1} bytes")
    return raw


def build_reply(reply: DhcpReply) -> bytes:
    """Encode ``reply`` as a BOOTREPLY: NUL-terminated sname/file, fixed option order, padded to 300 bytes."""
    options: list[object] = [
        (OPT_MESSAGE_TYPE, bytes([reply.message_type])),
        (OPT_SERVER_ID, ipaddress.IPv4Address(reply.server_id).packed),
        (OPT_VENDOR_CLASS, reply.vendor_class.encode("ascii")),
    ]
    if reply.machine_id is not None:
        options.append((OPT_MACHINE_ID, reply.machine_id))
    if reply.pxe is not None:
        options.append((OPT_VENDOR_SPECIFIC, reply.pxe))
    options.append("end")
    pkt = BOOTP(
        op=BOOTREPLY,
        htype=reply.htype,
        hlen=reply.hlen,
        hops=0,
        xid=reply.xid,
        secs=reply.secs,
        flags=reply.flags,
        ciaddr=reply.ciaddr,
        yiaddr=reply.yiaddr,
        siaddr=reply.siaddr,
        giaddr=reply.giaddr,
        chaddr=reply.chaddr_raw[:16].ljust(16, b"\0"),
        sname=_nul_terminated(reply.sname, 64, "server name"),
        file=_nul_terminated(reply.file, 128, "boot file name"),
    ) / DHCP(options=options)
    data = bytes(pkt)
    return data.ljust(MIN_REPLY_LEN, b"\0")


# -- the hot path: byte-level pre-check, per-shape parse cache, per-decision reply templates ----------------

_OPT_PAD = 0
_OPT_END = 255
_XID = slice(4, 8)
_SECS = slice(8, 10)
_FLAGS = slice(10, 12)
_CHADDR = slice(28, 44)


def option_spans(payload: bytes) -> dict[int, tuple[int, int]] | None:
    """``{code: (start, end)}`` of each option value up to the end marker (the last one of a repeated code),
    read from the bytes alone; None when the packet has no magic cookie or an option runs past its end."""
    if len(payload) < OPTIONS_START or payload[HEADER_LEN:OPTIONS_START] != MAGIC_COOKIE:
        return None
    spans: dict[int, tuple[int, int]] = {}
    i, n = OPTIONS_START, len(payload)
    while i < n:
        code = payload[i]
        if code == _OPT_PAD:
            i += 1
        elif code == _OPT_END:
            break
        elif i + 1 >= n or (end := i + 2 + payload[i + 1]) > n:
            return None
        else:
            spans[code] = (i + 2, end)
            i = end
    return spans


def vendor_class_of(payload: bytes) -> bytes | None:
    """Option 60 of a BOOTREQUEST, read from the bytes; None for anything else (a reply, no magic cookie, no
    option 60, a truncated option), which scapy would not take for a PXE request either."""
    if not payload or payload[0] != BOOTREQUEST:
        return None
    spans = option_spans(payload)
    if spans is None or OPT_VENDOR_CLASS not in spans:
        return None
    start, end = spans[OPT_VENDOR_CLASS]
    return payload[start:end]


def may_be_pxe(payload: bytes, vendor_prefixes: Sequence[bytes]) -> bool:
    """The cheap pre-check: a BOOTREQUEST with the magic cookie whose option 60 starts with one of
    ``vendor_prefixes``. False means the request is certainly not one the proxy answers."""
    vendor = vendor_class_of(payload)
    return vendor is not None and vendor.startswith(tuple(p for p in vendor_prefixes if p) or (b"\0",))


# Options whose bytes differ from machine to machine of one firmware and which the parsed record does not
# keep: the client identifier (61, iPXE sends htype + MAC), a REQUEST's requested address (50), host name (12),
# FQDN (81). Their values are masked in the shape (the code and length stay), so such machines share one parse.
# Any other per-machine option only costs a parse by scapy, never a wrong record.
_UNKEPT_PER_MACHINE = (61, 50, 12, 81)
_CIADDR = slice(12, 16)


class RequestParser:
    """``parse_request`` with a cache per request shape: the bytes with xid, secs, ciaddr, chaddr, the option
    97 value and the per-machine options the record does not keep masked. scapy parses the first request of a
    shape; later ones get a copy of that record with their own xid, secs, ciaddr, chaddr and machine id, which
    are plain copies of those bytes."""

    def __init__(self, entries: int = CACHE_ENTRIES) -> None:
        self._entries = entries
        self._cache: dict[bytes, DhcpRequest | None] = {}

    def parse(self, payload: bytes, vendor_prefixes: Sequence[bytes] | None = None) -> DhcpRequest | None:
        """The parsed request (None when malformed); with ``vendor_prefixes``, None also for what
        ``may_be_pxe`` refuses, checked on the same read of the options and before scapy."""
        payload = bytes(payload)
        spans = option_spans(payload)
        if spans is None:
            return None
        if vendor_prefixes is not None:
            vendor = spans.get(OPT_VENDOR_CLASS)
            if (
                payload[0] != BOOTREQUEST
                or vendor is None
                or not any(payload.startswith(p, vendor[0], vendor[1]) for p in vendor_prefixes if p)
            ):
                return None
        key = bytearray(payload)
        key[4:10] = bytes(6)  # xid, secs
        key[_CIADDR] = bytes(4)
        key[_CHADDR] = bytes(16)
        machine = spans.get(OPT_MACHINE_ID)
        for span in (machine, *map(spans.get, _UNKEPT_PER_MACHINE)):
            if span is not None:
                key[span[0] : span[1]] = bytes(span[1] - span[0])
        shape = bytes(key)
        template = self._cache.get(shape, _MISSING)
        if template is _MISSING:
            template = parse_request(payload)
            if len(self._cache) >= self._entries:
                del self._cache[next(iter(self._cache))]
            self._cache[shape] = template
            return template
        if template is None:
            return None
        assert isinstance(template, DhcpRequest)
        chaddr_raw = payload[_CHADDR]
        own = {
            "xid": int.from_bytes(payload[_XID], "big"),
            "secs": int.from_bytes(payload[_SECS], "big"),
            "ciaddr": socket.inet_ntoa(payload[_CIADDR]),
            "chaddr_raw": chaddr_raw,
            "chaddr": _mac(chaddr_raw, template.hlen),
        }
        if machine is not None:
            own["machine_id"] = payload[machine[0] : machine[1]]
        # A copy of the frozen record with the client's own fields: filled in once, here, never changed.
        request = object.__new__(DhcpRequest)
        vars(request).update(vars(template), **own)
        return request


_MISSING = object()


class ReplyEncoder:
    """``build_reply`` with a template per reply: everything but xid, flags, chaddr and the option 97 value
    (which only its length shapes) is encoded by scapy once, then those fields are written in per client."""

    def __init__(self, entries: int = CACHE_ENTRIES) -> None:
        self._entries = entries
        self._cache: dict[tuple, tuple[bytes, int]] = {}

    def encode(self, reply: DhcpReply) -> bytes:
        mid = reply.machine_id
        key = (
            reply.message_type,
            reply.server_id,
            reply.htype,
            reply.hlen,
            reply.secs,
            reply.ciaddr,
            reply.yiaddr,
            reply.siaddr,
            reply.giaddr,
            reply.sname,
            reply.file,
            reply.vendor_class,
            None if mid is None else len(mid),
            reply.pxe,
        )
        found = self._cache.get(key)
        if found is None:
            blank = replace(
                reply,
                xid=0,
                flags=0,
                chaddr_raw=bytes(16),
                machine_id=None if mid is None else bytes(len(mid)),
            )
            template = build_reply(blank)
            spans = option_spans(template)
            offset = spans[OPT_MACHINE_ID][0] if spans and mid is not None else -1
            found = (template, offset)
            if len(self._cache) >= self._entries:
                del self._cache[next(iter(self._cache))]
            self._cache[key] = found
        template, offset = found
        out = bytearray(template)
        out[_XID] = reply.xid.to_bytes(4, "big")
        out[_FLAGS] = reply.flags.to_bytes(2, "big")
        out[_CHADDR] = reply.chaddr_raw[:16].ljust(16, b"\0")
        if mid is not None:
            out[offset : offset + len(mid)] = mid
        return bytes(out)
