"""TFTP on the wire (RFC 1350, 2347, 2348, 2349, 7440): bytes in, decisions out.

What a request asks for, what the server answers in its OACK, which block an ACK acknowledges across the
16-bit block-number rollover, and the fixed packets. The transfer engine (``services.tftp_transfer``) sends and
receives; it takes every decision about bytes from here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

OP_RRQ, OP_WRQ, OP_DATA, OP_ACK, OP_ERROR, OP_OACK = 1, 2, 3, 4, 5, 6

ERR_UNDEFINED = 0
ERR_NOT_FOUND = 1
ERR_ACCESS = 2
ERR_ILLEGAL_OP = 4
ERR_UNKNOWN_TID = 5
ERR_OPTIONS = 8

DEFAULT_BLKSIZE = 512
MIN_BLKSIZE = 8
MAX_BLKSIZE = 65464  # RFC 2348
MAX_WINDOWSIZE = 65535  # RFC 7440
DEFAULT_MAX_WINDOWSIZE = 64  # the server's cap unless configured otherwise
IP_UDP_TFTP_OVERHEAD = 32  # 20 (IPv4) + 8 (UDP) + 4 (TFTP DATA header)


class MalformedPacket(ValueError):
    """A datagram that is not a well-formed TFTP request or error."""


@dataclass(frozen=True)
class TftpRequest:
    """An RRQ or WRQ. ``raw_name`` is the name as sent (decoded latin-1, so every byte survives);
    option names are lower-cased (RFC 2347: case-insensitive), values kept as sent."""

    opcode: int
    raw_name: str
    mode: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def is_write(self) -> bool:
        return self.opcode == OP_WRQ


def opcode_of(datagram: bytes) -> int | None:
    """The opcode of a datagram, or None if it is too short to carry one."""
    return struct.unpack("!H", datagram[:2])[0] if len(datagram) >= 2 else None


def parse_request(datagram: bytes) -> TftpRequest:
    """Decode an RRQ/WRQ; raise MalformedPacket for anything else or a broken one."""
    op = opcode_of(datagram)
    if op not in (OP_RRQ, OP_WRQ):
        raise MalformedPacket(f"not a request (opcode {op})")
    body = datagram[2:]
    if not body.endswith(b"\x00"):
        raise MalformedPacket("request does not end with NUL")
    fields = [f.decode("latin-1") for f in body[:-1].split(b"\x00")]
    if len(fields) < 2 or not fields[0] or not fields[1]:
        raise MalformedPacket("request lacks a file name or a mode")
    name, mode, rest = fields[0], fields[1].lower(), fields[2:]
    if mode not in ("octet", "netascii"):
        raise MalformedPacket(f"unsupported transfer mode {mode!r}")
    while rest and not rest[-1]:
        rest.pop()  # some ROMs pad the request with NUL bytes
    options: dict[str, str] = {}
    for key, value in zip(rest[::2], rest[1::2], strict=False):  # a dangling option name is ignored
        if key:
            options.setdefault(key.lower(), value)  # RFC 2347: each option at most once; keep the first
    return TftpRequest(op, name, mode, options)


def max_blksize_for_mtu(mtu: int) -> int:
    """Largest block that fits one unfragmented IPv4 datagram on a link of this MTU."""
    return max(MIN_BLKSIZE, min(MAX_BLKSIZE, mtu - IP_UDP_TFTP_OVERHEAD))


def negotiate(
    requested: dict[str, str], *, size: int | None, max_blksize: int, max_windowsize: int = 1
) -> dict[str, str]:
    """The OACK options answering ``requested`` (empty dict: send no OACK, start with DATA 1).

    blksize is clamped to ``max_blksize`` (an invalid or too-small value is ignored); tsize is answered with
    ``size`` when known; windowsize (RFC 7440) is clamped to ``max_windowsize`` and left out when that is 1
    (lock-step) or the value is invalid. Everything else (timeout, …) is left out: the server keeps its own
    retransmission timer.
    """
    answer: dict[str, str] = {}
    for name, value in requested.items():
        if name == "blksize":
            wanted = _int_option(value)
            if wanted is not None and wanted >= MIN_BLKSIZE:
                answer[name] = str(min(wanted, max_blksize))
        elif name == "tsize" and size is not None:
            answer[name] = str(size)
        elif name == "windowsize" and max_windowsize > 1:
            wanted = _int_option(value)
            if wanted is not None and 1 <= wanted <= MAX_WINDOWSIZE:
                answer[name] = str(min(wanted, max_windowsize))
    return answer


def _int_option(value: str) -> int | None:
    """A decimal option value, or None if it is not one."""
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 9 else None


def oack_packet(options: dict[str, str]) -> bytes:
    """An OACK datagram carrying ``options`` in the given order."""
    body = b"".join(k.encode("ascii") + b"\x00" + v.encode("ascii") + b"\x00" for k, v in options.items())
    return struct.pack("!H", OP_OACK) + body


def block_count(size: int, blksize: int) -> int:
    """How many DATA blocks carry ``size`` bytes: the last one is always shorter than ``blksize`` (maybe empty)."""
    return size // blksize + 1


def acknowledged(wire_block: int, acked: int, sent: int) -> int | None:
    """The absolute block an ACK of 16-bit ``wire_block`` acknowledges, or None if it acknowledges nothing new.

    ``acked`` is the highest block already acknowledged (0 is the OACK, -1 before it), ``sent`` the highest
    block sent. Block numbers roll over from 65535 to 0, so the ACK is read relative to ``acked``: an ACK
    of ``acked`` itself (a duplicate) or of an older block is not new; neither is one beyond ``sent``.
    """
    step = (wire_block - acked) & 0xFFFF
    if step == 0 or step > sent - acked:
        return None
    return acked + step


def ack_block(datagram: bytes) -> int | None:
    """The block number of an ACK datagram, or None if it is not a well-formed ACK."""
    if len(datagram) < 4 or datagram[0] != 0 or datagram[1] != OP_ACK:
        return None
    return (datagram[2] << 8) | datagram[3]


def error_packet(code: int, message: str) -> bytes:
    """An ERROR datagram with an ASCII message."""
    return struct.pack("!HH", OP_ERROR, code) + message.encode("ascii", "replace") + b"\x00"


def parse_error(datagram: bytes) -> tuple[int, str]:
    """``(code, message)`` of an ERROR datagram; raise MalformedPacket if it is not one."""
    if opcode_of(datagram) != OP_ERROR or len(datagram) < 4:
        raise MalformedPacket("not an ERROR packet")
    code = struct.unpack("!H", datagram[2:4])[0]
    return code, datagram[4:].split(b"\x00", 1)[0].decode("ascii", "replace")
