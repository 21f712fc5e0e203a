"""The ProxyDHCP hot path: the byte-level pre-check, the per-shape parse cache and the per-decision reply
templates give exactly what scapy's parse and a fresh build give, for every captured firmware packet."""

from __future__ import annotations

import ipaddress
import json
import random
import struct
from dataclasses import replace
from pathlib import Path

from pypxe_homelab.boot.booter import InventoryBooter, dhcp_decision
from pypxe_homelab.config.model import Inventory, ServerSettings
from pypxe_homelab.protocol.dhcp_codec import (
    OPT_MACHINE_ID,
    DhcpReply,
    ReplyEncoder,
    RequestParser,
    build_reply,
    may_be_pxe,
    option_spans,
    parse_request,
)
from pypxe_homelab.protocol.proxydhcp import DEFAULT_VENDOR_CLASSES, ServerView, destination, read_ask
from pypxe_homelab.runtime import Runtime
from pypxe_homelab.services.dhcp import InterfaceInfo, ProxyDhcpService

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dhcp" / "captured.json"
PACKETS = {p["name"]: bytes.fromhex(p["payload"]) for p in json.loads(FIXTURES.read_text())["packets"]}
IFACE = InterfaceInfo("eth0", "10.231.0.3")
VIEW = ServerView(IFACE.address, IFACE.name)
PREFIXES = tuple(p.encode() for p in DEFAULT_VENDOR_CLASSES)
SOURCES = {67: ("0.0.0.0", 68), 4011: ("10.231.0.136", 4011)}


def booter(inventory: Inventory | None = None) -> tuple[InventoryBooter, Runtime]:
    runtime = Runtime(
        inventory or Inventory(), None, lambda _e: None, ipaddress.IPv4Address(IFACE.address), 8080
    )  # type: ignore[arg-type]
    return InventoryBooter(lambda: runtime), runtime


def fresh_answer(b: InventoryBooter, data: bytes, port: int) -> tuple[bytes, tuple[str, int]] | None:
    """What the service answered before the fast path: scapy parse, decide, scapy build."""
    request = parse_request(data)
    if request is None:
        return None
    decision = dhcp_decision(b, request, port, VIEW)
    if decision is None or decision.reply is None:
        return None
    return build_reply(decision.reply), destination(request, port, *SOURCES[port])


# What differs between two machines of one firmware, besides the header fields: the machine id (97), iPXE's
# client identifier (61), a REQUEST's requested address (50), a host name (12)
PER_MACHINE_OPTIONS = (OPT_MACHINE_ID, 61, 50, 12)


def vary(data: bytes, rng: random.Random) -> bytes:
    """``data`` as another machine of the same firmware would send it: a random xid, secs, ciaddr (when set),
    client MAC and values of the per-machine options present."""
    out = bytearray(data)
    out[4:8] = struct.pack("!I", rng.getrandbits(32))
    out[8:10] = struct.pack("!H", rng.getrandbits(16))
    if out[12:16] != bytes(4):
        out[12:16] = bytes([10, 231, 0, rng.randrange(1, 255)])
    out[28:34] = rng.randbytes(6)
    spans = option_spans(data) or {}
    for code in PER_MACHINE_OPTIONS:
        if code in spans:
            start, end = spans[code]
            keep = 1 if code in (OPT_MACHINE_ID, 61) else 0  # the type byte
            out[start + keep : end] = rng.randbytes(end - start - keep)
    return bytes(out)


def test_the_pre_check_never_drops_a_pxe_request() -> None:
    for name, data in PACKETS.items():
        request = parse_request(data)
        asked = request is not None and any(read_ask(request, port) for port in (67, 4011))
        if asked:
            assert may_be_pxe(data, PREFIXES), name
        if not may_be_pxe(data, PREFIXES):
            assert request is None or not any(read_ask(request, port) for port in (67, 4011)), name


def test_the_pre_check_drops_what_is_clearly_not_ours() -> None:
    discover = PACKETS["bios_ipxe_discover"]
    assert may_be_pxe(discover, PREFIXES)
    assert not may_be_pxe(PACKETS["syslinux_efi_discover"], PREFIXES)  # plain DHCP, no option 60
    assert not may_be_pxe(PACKETS["bios_ipxe_discover.dnsmasq_offer"], PREFIXES)  # a BOOTREPLY
    assert not may_be_pxe(discover[:236] + b"\0\0\0\0" + discover[240:], PREFIXES)  # no magic cookie
    assert not may_be_pxe(discover[:250], PREFIXES)  # options cut off
    assert not may_be_pxe(discover, (b"HTTPClient",))  # a vendor class the booter does not answer
    assert not may_be_pxe(b"", PREFIXES) and not may_be_pxe(b"\x01garbage", PREFIXES)


def test_every_captured_packet_is_answered_exactly_as_before() -> None:
    b, _ = booter()
    service = ProxyDhcpService(b, [IFACE], lambda _e: None)
    answered = 0
    for name, data in PACKETS.items():
        for port in (67, 4011):
            for _ in range(2):  # the second time from the caches
                got = service.handle(data, SOURCES[port], IFACE, port)
                assert got == fresh_answer(b, data, port), (name, port)
            answered += got is not None
    assert answered >= 16


def test_cached_parse_equals_scapy_for_random_clients() -> None:
    rng = random.Random(11)
    parser = RequestParser()
    for name, data in PACKETS.items():
        parser.parse(data)
        for _ in range(50):
            varied = vary(data, rng)
            assert parser.parse(varied) == parse_request(varied), name


def test_machines_of_one_firmware_share_one_parse() -> None:
    rng = random.Random(61)
    for name in (
        "bios_ipxe_discover",
        "ipxe_efi_proxyrequest_4011",
        "edk2_request67",
        "snponly_ipxe_request67",
    ):
        parser = RequestParser()
        for _ in range(20):
            varied = vary(PACKETS[name], rng)
            assert parser.parse(varied) == parse_request(varied), name
        assert len(parser._cache) == 1, name  # scapy parsed only the first


def test_patched_replies_equal_a_fresh_build() -> None:
    rng = random.Random(97)
    b, _ = booter()
    encoder = ReplyEncoder()
    replies: list[DhcpReply] = []
    for data in PACKETS.values():
        request = parse_request(data)
        for port in (67, 4011):
            decision = dhcp_decision(b, request, port, VIEW) if request else None
            if decision is not None and decision.reply is not None:
                replies.append(decision.reply)
    assert len(replies) >= 16
    for reply in replies:
        for _ in range(100):
            mid = reply.machine_id
            varied = replace(
                reply,
                xid=rng.getrandbits(32),
                flags=rng.choice((0, 0x8000)),
                chaddr_raw=rng.randbytes(16),
                machine_id=None if mid is None else bytes([0]) + rng.randbytes(len(mid) - 1),
            )
            assert encoder.encode(varied) == build_reply(varied)


def test_service_answers_many_clients_as_a_fresh_build_would() -> None:
    rng = random.Random(5)
    b, _ = booter()
    service = ProxyDhcpService(b, [IFACE], lambda _e: None)
    for name in ("bios_ipxe_discover", "edk2_discover", "edk2_binl_4011", "bios_ipxe_pxebs_4011"):
        port = 4011 if "4011" in name else 67
        for _ in range(100):
            varied = vary(PACKETS[name], rng)
            assert service.handle(varied, SOURCES[port], IFACE, port) == fresh_answer(b, varied, port)


def test_a_reload_changes_the_answer_at_once() -> None:
    b, runtime = booter()
    service = ProxyDhcpService(b, [IFACE], lambda _e: None)
    data = PACKETS["edk2_discover"]
    before = service.handle(data, SOURCES[67], IFACE, 67)
    assert before is not None and parse_request(before[0]).siaddr == IFACE.address  # type: ignore[union-attr]
    loaders = {**runtime.inventory.server.loaders, "efi64": "other/grubx64.efi"}
    runtime.inventory = Inventory(server=ServerSettings(loaders=loaders, uefi_mode="direct"))
    after = service.handle(data, SOURCES[67], IFACE, 67)
    assert after is not None and after == fresh_answer(b, data, 67)
    assert b"other/grubx64.efi" in after[0] and after[0] != before[0]
    runtime.inventory = Inventory(server=ServerSettings(unknown="ignore"))
    assert service.handle(data, SOURCES[67], IFACE, 67) is None
    runtime.inventory = Inventory(server=ServerSettings(pxe_vendor_classes=("HTTPClient",)))
    assert service.handle(data, SOURCES[67], IFACE, 67) is None  # PXEClient no longer answered


def test_caches_stay_bounded() -> None:
    parser, encoder = RequestParser(entries=8), ReplyEncoder(entries=8)
    data = PACKETS["bios_ipxe_discover"]
    request = parse_request(data)
    for n in range(50):
        shape = bytearray(data)
        shape[24:28] = struct.pack("!I", n)  # giaddr: part of the shape
        assert parser.parse(bytes(shape)) == parse_request(bytes(shape))
        reply = DhcpReply(message_type=2, xid=n, chaddr_raw=request.chaddr_raw, server_id=f"10.0.0.{n + 1}")  # type: ignore[union-attr]
        assert encoder.encode(reply) == build_reply(reply)
    assert len(parser._cache) <= 8 and len(encoder._cache) <= 8
