"""100,000 mutated DHCP packets from real firmware captures (bit flips, truncation, option garbage) through
the whole ProxyDHCP reply path (parse, Booter decision, relay check, reply bytes): no exception escapes, and
nothing that is not a PXE/HTTP-boot client request is ever answered."""

from __future__ import annotations

import ipaddress
import json
import random
import time
from pathlib import Path

from pypxe_homelab.boot.booter import InventoryBooter
from pypxe_homelab.config.model import Inventory, Node
from pypxe_homelab.events import Event
from pypxe_homelab.protocol.dhcp_codec import parse_request
from pypxe_homelab.runtime import Runtime
from pypxe_homelab.services.dhcp import InterfaceInfo, ProxyDhcpService

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dhcp" / "captured.json"
SEEDS = [(bytes.fromhex(p["payload"]), p["dport"]) for p in json.loads(FIXTURES.read_text())["packets"]]
IFACE = InterfaceInfo("eth0", "10.231.0.3")
PACKETS = 100_000
BOOT_CLASSES = ("PXEClient", "HTTPClient")


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    how = rng.randrange(6)
    if how == 0:  # bit flips anywhere
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(out))
            out[position] ^= 1 << rng.randrange(8)
    elif how == 1:  # truncation
        del out[rng.randrange(len(out)) :]
    elif how == 2 and len(out) > 240:  # garbage bytes in the options
        for _ in range(rng.randint(1, 16)):
            out[rng.randrange(240, len(out))] = rng.randrange(256)
    elif how == 3 and len(out) > 240:  # a random option inserted (odd lengths, overlong, zero)
        code, length = rng.randrange(256), rng.choice([0, 1, 2, 255, rng.randrange(256)])
        at = rng.randrange(240, len(out))
        out[at:at] = bytes([code, length]) + rng.randbytes(rng.randrange(300))
    elif how == 4:  # header fields scrambled (op, htype, hlen, hops, flags, giaddr, ciaddr)
        for offset in rng.sample([0, 1, 2, 3, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27], 3):
            out[offset] = rng.randrange(256)
    else:  # random tail after the magic cookie
        out[240:] = rng.randbytes(rng.randrange(400))
    return bytes(out)


def _is_boot_client_request(data: bytes) -> bool:
    request = parse_request(data)
    return bool(
        request is not None
        and request.op == 1
        and request.vendor_class is not None
        and request.vendor_class.startswith(BOOT_CLASSES)
    )


def test_a_hundred_thousand_mutated_packets() -> None:
    events: list[Event] = []
    node = Node(device_id="01-52-54-00-a0-00-01")
    inventory = Inventory(nodes={node.device_id: node})
    runtime = Runtime(inventory, None, events.append, ipaddress.IPv4Address("10.231.0.3"), 12345)  # type: ignore[arg-type]
    service = ProxyDhcpService(InventoryBooter(lambda: runtime), [IFACE], events.append)
    rng = random.Random(12)
    crashes: list[str] = []
    wrong_replies: list[str] = []
    replies = 0
    started = time.monotonic()
    for number in range(PACKETS):
        seed, dport = SEEDS[number % len(SEEDS)]
        data = _mutate(rng, seed)
        port = 4011 if dport == 4011 else 67
        src = ("10.231.0.136", 4011) if port == 4011 else ("0.0.0.0", 68)
        try:
            out = service.handle(data, src, IFACE, port)
        except Exception as exc:
            crashes.append(f"{data.hex()}: {exc!r}")
            continue
        if out is not None:
            replies += 1
            if not _is_boot_client_request(data):
                wrong_replies.append(data.hex())
        events.clear()
    elapsed = time.monotonic() - started
    assert crashes == [], crashes[:3]
    assert wrong_replies == [], wrong_replies[:3]
    assert replies > 1000  # the mutations left many real requests: the answering path was exercised
    print(f"{PACKETS} packets in {elapsed:.1f} s, {replies} answered")
