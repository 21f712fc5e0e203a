"""A PXE DISCOVER load generator: broadcasts DISCOVERs on one interface and times the matching OFFERs.

    python3 bench/dhcp_load.py IFACE TEMPLATE_HEX latency|burst SECONDS [WINDOW]
    python3 bench/dhcp_load.py IFACE TEMPLATE_HEX storm CLIENTS SPREAD [FLOOD_HEX PPS FLOOD_SECONDS] [--base N]

``latency`` keeps one DISCOVER outstanding; ``burst`` keeps WINDOW outstanding. Every DISCOVER is the
template (a real firmware DISCOVER) with a fresh xid and client MAC. An OFFER counts only when its xid
matches one in flight; a DISCOVER unanswered after LOST_AFTER seconds is counted lost. Prints one JSON line.

``storm``: CLIENTS distinct PXE clients (MACs 52:54:02:…, from ``--base``) each send one DISCOVER, evenly
spread over SPREAD seconds; meanwhile, with FLOOD_HEX, ordinary DHCP packets (that template with fresh xids
and MACs 52:54:03:…) go out at PPS for FLOOD_SECONDS. Reports every PXE client's answer time (a DISCOVER
unanswered after STORM_LOST_AFTER seconds is lost) and how many replies named a flood packet's xid.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import sys
import time
from collections.abc import Iterator

LOST_AFTER = 0.5
STORM_LOST_AFTER = 2.0
STORM_XID = 0x57000000
FLOOD_XID = 0xF1000000
_SO_SNDBUFFORCE, _SO_RCVBUFFORCE = 32, 33  # Linux; Python's socket module does not name them
_XID = slice(4, 8)
_CHADDR = slice(28, 34)


def discover(template: bytes, n: int) -> tuple[int, bytes]:
    """The n-th DISCOVER: the template with xid and chaddr derived from ``n``."""
    xid = (0x5EED0000 + n) & 0xFFFFFFFF
    buf = bytearray(template)
    buf[_XID] = struct.pack("!I", xid)
    buf[_CHADDR] = b"\x52\x54\x01" + struct.pack("!I", n)[1:]
    return xid, bytes(buf)


def replies(sock: socket.socket) -> Iterator[int]:
    """The xid of every BOOTREPLY waiting on the non-blocking ``sock``."""
    while True:
        try:
            data = sock.recv(2048)
        except BlockingIOError:
            return
        if len(data) >= 240 and data[0] == 2:
            yield struct.unpack("!I", data[_XID])[0]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def run(iface: str, template: bytes, window: int, seconds: float) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("0.0.0.0", 68))
    sock.setblocking(False)
    target = ("255.255.255.255", 67)
    in_flight: dict[int, float] = {}
    rtts: list[float] = []
    sent = lost = n = 0
    start = last = time.monotonic()
    end = start + seconds
    while True:
        now = time.monotonic()
        if now < end:
            while len(in_flight) < window:
                n += 1
                xid, packet = discover(template, n)
                in_flight[xid] = time.monotonic()
                sock.sendto(packet, target)
                sent += 1
        elif not in_flight:
            break
        oldest = min(in_flight.values()) if in_flight else now
        wait = max(0.0, oldest + LOST_AFTER - time.monotonic())
        readable, _, _ = select.select([sock], [], [], wait)
        if readable:
            for xid in replies(sock):
                sent_at = in_flight.pop(xid, None)
                if sent_at is not None:
                    last = time.monotonic()
                    rtts.append(last - sent_at)
        now = time.monotonic()
        for xid, sent_at in list(in_flight.items()):
            if now - sent_at > LOST_AFTER:
                del in_flight[xid]
                lost += 1
    elapsed = max(last - start, 1e-9)  # up to the last answer: the wait for lost packets is not work
    rtts.sort()
    return {
        "sent": sent,
        "answered": len(rtts),
        "lost": lost,
        "seconds": elapsed,
        "offers_per_s": len(rtts) / elapsed,
        "p50_us": percentile(rtts, 50) * 1e6,
        "p90_us": percentile(rtts, 90) * 1e6,
        "p99_us": percentile(rtts, 99) * 1e6,
    }


def _client(template: bytes, n: int, xid_base: int, oui: bytes) -> tuple[int, bytes]:
    xid = (xid_base + n) & 0xFFFFFFFF
    buf = bytearray(template)
    buf[_XID] = struct.pack("!I", xid)
    buf[_CHADDR] = oui + struct.pack("!I", n)[1:]
    return xid, bytes(buf)


def storm(
    iface: str, template: bytes, clients: int, spread: float, flood: bytes | None, pps: float, flood_s: float,
    base: int,
) -> dict:  # fmt: skip
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    for force, plain in ((_SO_RCVBUFFORCE, socket.SO_RCVBUF), (_SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:  # past net.core.rmem_max/wmem_max: we run as root in our own namespace
            sock.setsockopt(socket.SOL_SOCKET, force, 8 << 20)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, 8 << 20)
    sock.bind(("0.0.0.0", 68))
    sock.setblocking(False)
    target = ("255.255.255.255", 67)
    pxe = [_client(template, base + i, STORM_XID, b"\x52\x54\x02") for i in range(clients)]
    flood_total = int(pps * flood_s) if flood is not None else 0
    sent_at: dict[int, float] = {}
    rtts: list[float] = []
    flood_replies = other_replies = flood_sent = send_errors = 0
    start = time.monotonic()
    next_pxe = 0
    while True:
        now = time.monotonic()
        due = min(clients, int((now - start) / spread * clients) + 1) if spread > 0 else clients
        while next_pxe < due:
            xid, packet = pxe[next_pxe]
            sent_at[xid] = time.monotonic()
            sock.sendto(packet, target)
            next_pxe += 1
        if flood is not None:
            flood_due = min(flood_total, int((now - start) * pps))
            while flood_sent < flood_due:
                _xid, packet = _client(flood, flood_sent, FLOOD_XID, b"\x52\x54\x03")
                try:
                    sock.sendto(packet, target)
                except BlockingIOError:
                    send_errors += 1
                flood_sent += 1
        last_sent = max(sent_at.values()) if sent_at else start
        finished = next_pxe >= clients and flood_sent >= flood_total
        if finished and (len(rtts) >= clients or now - last_sent > STORM_LOST_AFTER):
            break
        readable, _, _ = select.select([sock], [], [], 0.002)
        if readable:
            for xid in replies(sock):
                if xid in sent_at:
                    t0 = sent_at.pop(xid)
                    rtts.append(time.monotonic() - t0)
                elif (xid - FLOOD_XID) & 0xFFFFFFFF < max(flood_total, 1):
                    flood_replies += 1
                else:
                    other_replies += 1
    rtts.sort()
    return {
        "clients": clients,
        "answered": len(rtts),
        "lost": clients - len(rtts),
        "p50_us": percentile(rtts, 50) * 1e6,
        "p99_us": percentile(rtts, 99) * 1e6,
        "max_us": (rtts[-1] if rtts else 0.0) * 1e6,
        "flood_sent": flood_sent,
        "flood_send_errors": send_errors,
        "flood_replies": flood_replies,
        "other_replies": other_replies,
        "seconds": time.monotonic() - start,
    }


def main() -> None:
    if sys.argv[3] == "storm":
        args = sys.argv[1:]
        base = 0
        if "--base" in args:
            i = args.index("--base")
            base = int(args[i + 1])
            del args[i : i + 2]
        iface, template_hex, _mode, clients, spread = args[:5]
        flood = bytes.fromhex(args[5]) if len(args) > 5 else None
        pps, flood_s = (float(args[6]), float(args[7])) if flood is not None else (0.0, 0.0)
        result = storm(
            iface, bytes.fromhex(template_hex), int(clients), float(spread), flood, pps, flood_s, base
        )
        print(json.dumps(result))
        return
    iface, template_hex, mode, seconds = sys.argv[1:5]
    window = 1 if mode == "latency" else int(sys.argv[5]) if len(sys.argv) > 5 else 16
    print(json.dumps(run(iface, bytes.fromhex(template_hex), window, float(seconds))))


if __name__ == "__main__":
    main()
