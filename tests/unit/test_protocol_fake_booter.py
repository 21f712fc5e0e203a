"""Protocol code against a fake Booter: no inventory, only the answer variants turned into reply bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pypxe_homelab.boot.booter import dhcp_decision
from pypxe_homelab.protocol import pxe_options as pxe
from pypxe_homelab.protocol.dhcp_codec import ACK, OFFER, build_reply, parse_request
from pypxe_homelab.protocol.proxydhcp import (
    BinlOffer,
    BootFile,
    DirectOffer,
    Ignore,
    Menu,
    ServerView,
    UrlOffer,
    arch_zero_menu,
    read_ask,
    reply_for,
)
from tests.booters import FakeBooter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dhcp" / "captured.json"
PACKETS = {p["name"]: bytes.fromhex(p["payload"]) for p in json.loads(FIXTURES.read_text())["packets"]}
SERVER = ServerView(address="10.231.0.3", interface="eth0")


def request(name: str):
    parsed = parse_request(PACKETS[name])
    assert parsed is not None
    return parsed


def test_the_fake_is_asked_with_a_typed_client_and_its_answer_becomes_the_offer() -> None:
    booter = FakeBooter(answers={"efi64": DirectOffer("loader.efi")})
    d = dhcp_decision(booter, request("edk2_discover"), 67, SERVER)
    assert d is not None and d.kind == "offer" and d.reply is not None
    (ask,) = booter.asked
    assert ask.stage == "discover" and ask.client.firmware == "efi64" and ask.client.arch == 7
    assert ask.device_ids == ("01-52-54-00-a0-00-02",) and ask.mac == "52:54:00:a0:00:02"
    assert d.reply.file == "loader.efi" and d.reply.siaddr == "10.231.0.3"
    assert d.reply.pxe == pxe.encode([pxe.discovery_control(pxe.USE_BOOT_FILE), pxe.menu_prompt(0, "PXE")])
    assert d.reason == "UEFI direct: boot file in the offer" and d.boot_file == "loader.efi"


@pytest.mark.parametrize(
    "answer,file,siaddr,vendor",
    [
        (BinlOffer("x.efi"), "", "10.231.0.3", "PXEClient"),
        (
            UrlOffer("http://10.231.0.3:12345/a/boot.ipxe"),
            "http://10.231.0.3:12345/a/boot.ipxe",
            "10.231.0.3",
            "PXEClient",
        ),
        (
            UrlOffer("http://10.231.0.3:12345/a/x.efi", "HTTPClient"),
            "http://10.231.0.3:12345/a/x.efi",
            "10.231.0.3",
            "HTTPClient",
        ),
    ],
)
def test_each_offer_variant_has_its_wire_shape(answer, file: str, siaddr: str, vendor: str) -> None:
    ask = read_ask(request("edk2_discover"), 67)
    assert ask is not None
    reply = reply_for(ask, answer, SERVER)
    assert reply is not None and reply.message_type == OFFER and reply.flags == 0x8000
    assert (reply.file, reply.siaddr, reply.vendor_class) == (file, siaddr, vendor)
    data = build_reply(reply)
    assert len(data) >= 300 and vendor.encode() in data


def test_menu_with_and_without_the_bios_item() -> None:
    ask = read_ask(request("bios_ipxe_discover"), 67)
    assert ask is not None
    full = reply_for(ask, Menu(bios_server=True), SERVER)
    pi_only = reply_for(ask, Menu(bios_server=False), SERVER)
    assert full is not None and full.pxe == arch_zero_menu("10.231.0.3")
    assert pi_only is not None and pi_only.pxe == arch_zero_menu("10.231.0.3", bios=False)


def test_4011_boot_file_becomes_a_binl_ack() -> None:
    booter = FakeBooter(answers={"efi64": BootFile("efi64/loader.efi")})
    d = dhcp_decision(booter, request("edk2_binl_4011"), 4011, SERVER)
    assert d is not None and d.kind == "ack" and d.reply is not None
    assert d.reply.message_type == ACK and d.reply.file == "efi64/loader.efi"
    assert d.reply.sname == "10.231.0.3" and d.reply.ciaddr == "10.231.0.136"


def test_ignore_is_silence_with_a_reason_and_non_pxe_traffic_never_reaches_the_booter() -> None:
    booter = FakeBooter()
    d = dhcp_decision(booter, request("edk2_discover"), 67, SERVER)
    assert d is not None and d.kind == "ignored" and d.reply is None and d.reason == "no answer for efi64"
    booter.asked.clear()
    for name in ("edk2_request67", "syslinux_efi_discover", "edk2_router_offer"):
        assert dhcp_decision(booter, request(name), 67, SERVER) is None
    assert booter.asked == []


def test_an_answer_the_stage_cannot_carry_is_refused() -> None:
    d = dhcp_decision(FakeBooter(answers={"efi64": BootFile("x")}), request("edk2_discover"), 67, SERVER)
    assert d is not None and d.kind == "ignored" and "cannot answer a DISCOVER" in d.reason
    d = dhcp_decision(FakeBooter(answers={"efi64": Menu()}), request("edk2_binl_4011"), 4011, SERVER)
    assert d is not None and d.kind == "ignored" and "cannot answer a request on port 4011" in d.reason
    too_long = DirectOffer("x" * 128)
    d = dhcp_decision(FakeBooter(answers={"efi64": too_long}), request("edk2_discover"), 67, SERVER)
    assert d is not None and d.kind == "ignored" and "at most 127 bytes" in d.reason
    assert reply_for(read_ask(request("edk2_discover"), 67), Ignore("x"), SERVER) is None  # type: ignore[arg-type]


def test_vendor_class_gate_comes_from_the_booter() -> None:
    assert dhcp_decision(FakeBooter(classes=("HTTPClient",)), request("edk2_discover"), 67, SERVER) is None
