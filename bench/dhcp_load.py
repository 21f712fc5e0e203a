"""A PXE DISCOVER load generator: broadcasts DISCOVERs on one interface and times the matching OFFERs.

    python3 bench/dhcp_load.py IFACE TEMPLATE_HEX latency|burst SECONDS [WINDOW]

``latency`` keeps one DISCOVER outstanding; ``burst`` keeps WINDOW outstanding. Every DISCOVER is the
template (a real firmware DISCOVER) with a fresh xid and client MAC. An OFFER counts only when its xid
matches one in flight; a DISCOVER unanswered after LOST_AFTER seconds is counted lost. Prints one JSON line.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import sys
import time

LOST_AFTER = 0.5
_XID = slice(4, 8)
_CHADDR = slice(28, 34)


def discover(template: bytes, n: int) -> tuple[int, bytes]:
    """The n-th DISCOVER: the template with xid and chaddr derived from ``n``."""
    xid = (0x5EED0000 + n) & 0xFFFFFFFF
    buf = bytearray(template)
    buf[_XID] = struct.pack("!I", xid)
    buf[_CHADDR] = b"\x52\x54\x01" + struct.pack("!I", n)[1:]
    return xid, bytes(buf)


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
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                if len(data) < 240 or data[0] != 2:
                    continue
                sent_at = in_flight.pop(struct.unpack("!I", data[_XID])[0], None)
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


def main() -> None:
    iface, template_hex, mode, seconds = sys.argv[1:5]
    window = 1 if mode == "latency" else int(sys.argv[5]) if len(sys.argv) > 5 else 16
    print(json.dumps(run(iface, bytes.fromhex(template_hex), window, float(seconds))))


if __name__ == "__main__":
    main()
