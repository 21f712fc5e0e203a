"""BOOTP/DHCP codec and option-43 encoding: captured packets, golden vectors, robustness."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from pypxe_homelab.protocol import pxe_options as pxe
from pypxe_homelab.protocol.dhcp_codec import (
    ACK,
    OFFER,
    DhcpReply,
    build_reply,
    parse_request,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dhcp" / "captured.json"
PACKETS = {p["name"]: p for p in json.loads(FIXTURES.read_text())["packets"]}


def payload(name: str) -> bytes:
    return bytes.fromhex(PACKETS[name]["payload"])


# ---- parsing -------------------------------------------------------------------------------


def test_parse_bios_ipxe_discover() -> None:
    r = parse_request(payload("bios_ipxe_discover"))
    assert r is not None
    assert (r.op, r.htype, r.hlen, r.message_type) == (1, 1, 6, 1)
    assert r.xid == 0x3B14E024 and r.secs == 4 and r.flags == 0
    assert r.chaddr == "52:54:00:a0:00:01"
    assert r.chaddr_raw == bytes.fromhex("525400a00001") + bytes(10)
    assert r.vendor_class == "PXEClient:Arch:00000:UNDI:002001"
    assert r.arch == 0 and r.arches == (0,)
    assert r.nic == (1, 2, 1)
    assert r.user_class == b"iPXE"
    assert r.has_ipxe_opts
    assert r.machine_id == bytes.fromhex("002e1b5c8a000000408000525400a00001")
    assert r.uuid == "8a5c1b2e-0000-4000-8000-525400a00001"
    assert r.server_id is None and r.pxe == {} and r.boot_item is None
    assert r.option_order == (53, 57, 93, 94, 60, 77, 55, 175, 61, 97)


def test_parse_edk2_discover() -> None:
    r = parse_request(payload("edk2_discover"))
    assert r is not None
    assert r.flags == 0x8000 and r.arch == 7 and r.nic == (1, 3, 0)
    assert r.user_class is None and not r.has_ipxe_opts
    assert r.option_order == (53, 57, 55, 97, 94, 93, 60)


def test_parse_boot_server_request_on_4011() -> None:
    r = parse_request(payload("bios_ipxe_pxebs_4011"))
    assert r is not None
    assert r.message_type == 3 and r.xid == 0
    assert r.ciaddr == "10.231.0.135"
    assert r.vendor_class == "PXEClient"
    assert r.pxe == {71: b"\x80\x00\x00\x00"}
    assert r.boot_item == (0x8000, 0)


def test_parse_ipxe_proxy_request_has_server_id() -> None:
    r = parse_request(payload("ipxe_efi_proxyrequest_4011"))
    assert r is not None and r.server_id == "10.231.0.3" and r.arch == 7
    assert r.xid == parse_request(payload("ipxe_efi_discover")).xid  # type: ignore[union-attr]


def test_parse_reply_packets_too() -> None:
    r = parse_request(payload("edk2_router_offer"))
    assert r is not None and r.op == 2 and r.message_type == 2 and r.yiaddr == "10.231.0.136"


@pytest.mark.parametrize("name", sorted(PACKETS))
def test_every_captured_packet_parses(name: str) -> None:
    assert parse_request(payload(name)) is not None


def test_multiple_architectures_use_first() -> None:
    data = bytearray(payload("edk2_discover"))
    i = data.index(bytes([93, 2, 0, 7]))
    data[i : i + 4] = bytes([93, 4, 0, 9, 0, 7])
    r = parse_request(bytes(data))
    assert r is not None and r.arch == 9 and r.arches == (9, 7)


# ---- robustness ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01",
        bytes(239),
        bytes(300),  # no magic cookie
        b"\xff" * 600,
        payload("edk2_discover")[:236],
        payload("edk2_discover")[:250],  # option cut in the middle
        payload("edk2_discover")[:240] + bytes([53, 200, 1]),
    ],
)
def test_malformed_is_none(data: bytes) -> None:
    assert parse_request(data) is None


def test_fuzz_never_raises() -> None:
    rng = random.Random(4011)
    seeds = [payload(n) for n in sorted(PACKETS)]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 12)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        result = parse_request(bytes(data))
        assert result is None or result.xid >= 0
    for _ in range(500):
        data = rng.randbytes(rng.randrange(0, 700))
        parse_request(data)  # must not raise
        parse_request(payload("edk2_discover")[:240] + data)


def test_truncated_option_after_end_is_ignored() -> None:
    data = payload("edk2_discover")
    end = data.index(b"\xff", 240)
    r = parse_request(data[: end + 1] + bytes([60, 50, 1, 2]))
    assert r is not None and r.vendor_class == "PXEClient:Arch:00007:UNDI:003000"


# ---- option 43 golden vectors --------------------------------------------------------------


def test_golden_pi_only_menu() -> None:
    got = pxe.encode(
        [
            pxe.discovery_control(3),
            pxe.menu_prompt(0, "PXE"),
            pxe.boot_menu([pxe.MenuItem(0, "Raspberry Pi Boot")]),
        ]
    )
    want = bytes.fromhex("060103 0a0400505845 0914000011") + b"Raspberry Pi Boot" + b"\xff"
    assert got == want and len(got) == 32


def test_golden_arch0_menu() -> None:
    got = pxe.encode(
        [
            pxe.discovery_control(3),
            pxe.boot_servers([pxe.BootServer(0x8000, ("192.168.1.10",))]),
            pxe.boot_menu([pxe.MenuItem(0x8000, "Boot x86 BIOS"), pxe.MenuItem(0, "Raspberry Pi Boot")]),
            pxe.menu_prompt(0, "PXE"),
        ]
    )
    want = (
        bytes.fromhex("060103 08078000 01c0a8010a 0924 80000d")
        + b"Boot x86 BIOS"
        + bytes.fromhex("000011")
        + b"Raspberry Pi Boot"
        + bytes.fromhex("0a0400505845 ff")
    )
    assert got == want and len(got) == 57


def test_golden_boot_item_echo() -> None:
    assert pxe.encode([pxe.boot_item(0x8000, 0)]) == bytes.fromhex("47048000 0000ff")


def test_golden_direct_mode() -> None:
    assert pxe.encode([pxe.discovery_control(8), pxe.menu_prompt(0, "PXE")]) == bytes.fromhex(
        "060108 0a0400505845 ff"
    )


def test_decode_round_trip_and_menu() -> None:
    data = pxe.encode(
        [pxe.discovery_control(3), pxe.boot_menu([pxe.MenuItem(0x8000, "a"), pxe.MenuItem(0, "bc")])]
    )
    subs = pxe.decode(data)
    assert subs[6] == b"\x03"
    assert pxe.parse_menu(subs[9]) == [pxe.MenuItem(0x8000, "a"), pxe.MenuItem(0, "bc")]


def test_decode_tolerates_truncation_and_padding() -> None:
    assert pxe.decode(b"\x00\x06\x01\x03\x09\x05ab") == {6: b"\x03"}
    assert pxe.parse_boot_item(b"\x80\x00") is None


def test_encode_refuses_oversized() -> None:
    with pytest.raises(ValueError):
        pxe.encode([(9, bytes(256))])
    with pytest.raises(ValueError):
        pxe.encode([(9, bytes(200)), (10, bytes(100))])


# ---- building ------------------------------------------------------------------------------


def _reply(**kw: object) -> DhcpReply:
    r = parse_request(payload("edk2_discover"))
    assert r is not None
    base: dict = dict(
        message_type=OFFER,
        xid=r.xid,
        chaddr_raw=r.chaddr_raw,
        server_id="10.231.0.3",
        flags=0x8000,
        siaddr="10.231.0.3",
        machine_id=r.machine_id,
    )
    base.update(kw)
    return DhcpReply(**base)


def test_build_matches_reference_proxy_offer_byte_for_byte() -> None:
    assert build_reply(_reply()) == payload("edk2_discover.dnsmasq_offer")


def test_build_matches_reference_binl_ack_byte_for_byte() -> None:
    req = parse_request(payload("edk2_binl_4011"))
    assert req is not None
    reply = DhcpReply(
        message_type=ACK,
        xid=req.xid,
        chaddr_raw=req.chaddr_raw,
        server_id="10.231.0.3",
        flags=req.flags,
        ciaddr=req.ciaddr,
        siaddr="10.231.0.3",
        sname="10.231.0.3",
        file="efi64/syslinux.efi",
        machine_id=req.machine_id,
    )
    assert build_reply(reply) == payload("edk2_binl_4011.dnsmasq_ack")


def test_build_header_layout_padding_and_option_order() -> None:
    data = build_reply(_reply(file="x" * 127, sname="s", pxe=b"\x06\x01\x08\xff", machine_id=None))
    assert len(data) == 300
    assert data[0] == 2 and data[3] == 0
    assert data[16:20] == bytes(4)  # yiaddr
    assert data[108 + 127] == 0 and data[44:46] == b"s\0"
    assert data[236:240] == b"\x63\x82\x53\x63"
    opts = data[240:]
    assert opts.startswith(bytes([53, 1, 2, 54, 4, 10, 231, 0, 3, 60, 9]) + b"PXEClient" + bytes([43, 4]))
    assert opts[22:27] == b"\x06\x01\x08\xff\xff"


def test_build_refuses_unterminated_file() -> None:
    with pytest.raises(ValueError):
        build_reply(_reply(file="x" * 128))


def test_build_long_reply_is_not_truncated() -> None:
    big = pxe.encode([(9, bytes(250))])
    assert len(build_reply(_reply(pxe=big))) > 300
