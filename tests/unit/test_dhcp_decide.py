"""ProxyDHCP decisions for captured firmware packets and synthetic clients."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from pathlib import Path

import pytest

from pypxe_homelab.config.model import DEFAULT_LOADERS, Defaults, Inventory, Node, ServerSettings
from pypxe_homelab.protocol import pxe_options as pxe
from pypxe_homelab.protocol.client_class import classify, pi_guid
from pypxe_homelab.protocol.dhcp_codec import DhcpRequest, build_reply, parse_request
from pypxe_homelab.protocol.proxydhcp import ServerView, arch_zero_menu, destination, relay_problem
from tests.booters import decide
from tests.lab.pxeclient import build_4011, build_discover

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dhcp" / "captured.json"
PACKETS = {p["name"]: p for p in json.loads(FIXTURES.read_text())["packets"]}
SERVER = ServerView(address="10.231.0.3", interface="eth0")
PI_MAC = "dc:a6:32:01:36:c2"


def req(name: str) -> DhcpRequest:
    r = parse_request(bytes.fromhex(PACKETS[name]["payload"]))
    assert r is not None
    return r


def ref(name: str) -> bytes:
    return bytes.fromhex(PACKETS[name]["payload"])


def inventory(**server: object) -> Inventory:
    return Inventory(server=ServerSettings(**server))  # type: ignore[arg-type]


def without_secs(data: bytes) -> bytes:
    return data[:8] + b"\0\0" + data[10:]


INV = inventory()


# ---- port 67 -------------------------------------------------------------------------------


def test_bios_ipxe_rom_gets_arch0_menu() -> None:
    d = decide(req("bios_ipxe_discover"), 67, INV, SERVER)
    assert d is not None and d.kind == "offer" and d.reply is not None
    assert d.client.firmware == "bios" and d.client.ipxe and not d.client.pi
    assert d.boot_file == "lpxelinux.0"
    assert d.device_id == "01-52-54-00-a0-00-01" and d.mac == "52:54:00:a0:00:01"
    r = d.reply
    assert (r.yiaddr, r.ciaddr, r.siaddr, r.flags, r.file, r.sname) == ("0.0.0.0",) * 3 + (0x8000, "", "")
    assert r.pxe == arch_zero_menu("10.231.0.3")
    data = build_reply(r)
    ref_offer = ref("bios_ipxe_discover.dnsmasq_offer")
    assert data[:8] == ref_offer[:8] and data[10:240] == ref_offer[10:240]  # header as the reference proxy
    assert data[240:280] == ref_offer[240:280]  # options 53, 54, 60, 97 identical, then 43
    assert data[280] == len(r.pxe) and data[281 : 281 + len(r.pxe)] == r.pxe
    subs = pxe.decode(r.pxe)
    assert subs[6] == b"\x03" and subs[10] == b"\x00PXE"
    assert subs[8] == bytes.fromhex("8000010ae70003")
    assert pxe.parse_menu(subs[9])[1] == pxe.MenuItem(0, "Raspberry Pi Boot")


def test_arch0_menu_is_the_golden_vector() -> None:
    want = (
        bytes.fromhex("060103 08078000 01c0a8010a 0924 80000d")
        + b"Boot x86 BIOS\x00\x00\x11Raspberry Pi Boot"
        + bytes.fromhex("0a0400505845 ff")
    )
    assert arch_zero_menu("192.168.1.10") == want


@pytest.mark.parametrize(
    "name", ["edk2_discover", "snponly_edk2_discover", "grub_edk2_discover", "ipxe_efi_discover"]
)
def test_uefi_binl_offer_matches_reference(name: str) -> None:
    d = decide(req(name), 67, INV, SERVER)
    assert d is not None and d.reply is not None
    assert d.client.firmware == "efi64" and d.boot_file == "efi64/syslinux.efi"
    assert d.reply.pxe is None and d.reply.file == "" and d.reply.siaddr == "10.231.0.3"
    if name + ".dnsmasq_offer" in PACKETS:
        assert without_secs(build_reply(d.reply)) == without_secs(ref(name + ".dnsmasq_offer"))


def test_ipxe_efi_is_classified_but_answered_like_uefi() -> None:
    d = decide(req("snponly_ipxe_discover"), 67, INV, SERVER)
    assert d is not None and d.client.ipxe and d.client.firmware == "efi64"
    assert d.reply is not None and d.reply.pxe is None


def test_uefi_direct_mode_per_node() -> None:
    node = Node(device_id="01-52-54-00-a0-00-02", uefi_mode="direct")
    inv = Inventory(nodes={node.device_id: node})
    d = decide(req("edk2_discover"), 67, inv, SERVER)
    assert d is not None and d.reply is not None and d.known
    assert d.reply.file == "efi64/syslinux.efi" and d.reply.siaddr == "10.231.0.3"
    assert d.reply.pxe == bytes.fromhex("060108 0a0400505845 ff")
    data = build_reply(d.reply)
    assert data[108:127] == b"efi64/syslinux.efi\0"


def test_uefi_direct_mode_from_defaults_and_server() -> None:
    inv = Inventory(defaults=Defaults(uefi_mode="direct"))
    assert decide(req("edk2_discover"), 67, inv, SERVER).reply.pxe is not None  # type: ignore[union-attr]
    inv = inventory(uefi_mode="direct")
    assert decide(req("edk2_discover"), 67, inv, SERVER).reply.pxe is not None  # type: ignore[union-attr]
    node = Node(device_id="01-52-54-00-a0-00-02", uefi_mode="binl")
    inv = Inventory(server=ServerSettings(uefi_mode="direct"), nodes={node.device_id: node})
    assert decide(req("edk2_discover"), 67, inv, SERVER).reply.pxe is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "name",
    [
        "bios_ipxe_request67",
        "edk2_request67",
        "ipxe_efi_request67",
        "snponly_ipxe_request67",
        "syslinux_efi_discover",
        "syslinux_efi_request67",
        "edk2_router_offer",
        "edk2_router_ack",
        "edk2_discover.dnsmasq_offer",
    ],
)
def test_silence_on_67(name: str) -> None:
    assert decide(req(name), 67, INV, SERVER) is None


def test_4011_packets_are_not_answered_on_67() -> None:
    # a boot-server REQUEST arriving on 67 is still a REQUEST
    assert decide(req("bios_ipxe_pxebs_4011"), 67, INV, SERVER) is None


def _with(r: DhcpRequest, **kw: object) -> DhcpRequest:
    return dataclasses.replace(r, **kw)


def test_bootp_and_other_vendors_are_ignored() -> None:
    r = req("edk2_discover")
    assert decide(_with(r, message_type=None), 67, INV, SERVER) is None
    assert decide(_with(r, vendor_class="MSFT 5.0"), 67, INV, SERVER) is None
    assert decide(_with(r, vendor_class=None), 67, INV, SERVER) is None
    assert decide(_with(r, op=2), 67, INV, SERVER) is None
    assert decide(_with(r, htype=6), 67, INV, SERVER) is None
    assert decide(_with(r, arch=None, arches=()), 67, INV, SERVER) is None
    assert decide(r, 68, INV, SERVER) is None


def test_extra_vendor_prefix() -> None:
    r = _with(req("edk2_discover"), vendor_class="HW-Client:Arch:00007")
    assert decide(r, 67, INV, SERVER) is None
    d = decide(r, 67, inventory(pxe_vendor_classes=("PXEClient", "HW-Client")), SERVER)
    assert d is not None and d.kind == "offer"


@pytest.mark.parametrize("arch,firmware", [(7, "efi64"), (9, "efi64"), (6, "efi32")])
def test_uefi_arch_map(arch: int, firmware: str) -> None:
    r = _with(req("edk2_discover"), arch=arch, arches=(arch,))
    d = decide(r, 67, INV, SERVER)
    assert d is not None and d.client.firmware == firmware
    assert d.boot_file == DEFAULT_LOADERS[firmware]


@pytest.mark.parametrize("arch", [1, 2, 3, 10, 15, 16, 0x19])
def test_unmapped_arch_is_ignored(arch: int) -> None:
    d = decide(_with(req("edk2_discover"), arch=arch, arches=(arch,)), 67, INV, SERVER)
    assert d is not None and d.kind == "ignored" and d.reply is None


def test_arm64_only_when_a_loader_is_configured() -> None:
    r = _with(req("edk2_discover"), arch=11, arches=(11,))
    assert decide(r, 67, INV, SERVER).kind == "ignored"  # type: ignore[union-attr]
    loaders = dict(DEFAULT_LOADERS, arm64="arm64/grubnetaa64.efi")
    d = decide(r, 67, inventory(loaders=loaders), SERVER)
    assert d is not None and d.kind == "offer" and d.boot_file == "arm64/grubnetaa64.efi"
    d = decide(_with(req("edk2_binl_4011"), arch=11, arches=(11,)), 4011, inventory(loaders=loaders), SERVER)
    assert d is not None and d.reply is not None and d.reply.file == "arm64/grubnetaa64.efi"


def test_disabled_loader_means_silence() -> None:
    inv = inventory(loaders=dict(DEFAULT_LOADERS, efi64=""))
    assert decide(req("edk2_discover"), 67, inv, SERVER).kind == "ignored"  # type: ignore[union-attr]
    assert decide(req("edk2_binl_4011"), 4011, inv, SERVER).kind == "ignored"  # type: ignore[union-attr]
    inv = inventory(loaders=dict(DEFAULT_LOADERS, bios=""))
    assert decide(req("bios_ipxe_discover"), 67, inv, SERVER).kind == "ignored"  # type: ignore[union-attr]


def test_offer_carries_no_lease_options() -> None:
    for name in ("bios_ipxe_discover", "edk2_discover"):
        data = build_reply(decide(req(name), 67, INV, SERVER).reply)  # type: ignore[union-attr,arg-type]
        answer = parse_request(data)
        assert answer is not None
        assert not set(answer.option_order) & {1, 3, 6, 51, 58, 59}
        assert answer.option_order[:3] == (53, 54, 60) and answer.vendor_class == "PXEClient"
        assert answer.yiaddr == "0.0.0.0" and len(data) >= 300


def test_machine_id_echoed_only_when_17_bytes() -> None:
    r = req("edk2_discover")
    assert decide(r, 67, INV, SERVER).reply.machine_id == r.machine_id  # type: ignore[union-attr]
    short = _with(r, machine_id=b"\x00abc")
    assert decide(short, 67, INV, SERVER).reply.machine_id is None  # type: ignore[union-attr]


# ---- unknown-device policy -----------------------------------------------------------------


def test_unknown_ignored_when_policy_says_so() -> None:
    inv = inventory(unknown="ignore")
    d = decide(req("edk2_discover"), 67, inv, SERVER)
    assert d is not None and d.kind == "ignored" and not d.known and "unknown" in d.reason
    assert decide(req("edk2_binl_4011"), 4011, inv, SERVER).kind == "ignored"  # type: ignore[union-attr]
    node = Node(device_id="01-52-54-00-a0-00-02")
    inv = Inventory(server=ServerSettings(unknown="ignore"), nodes={node.device_id: node})
    assert decide(req("edk2_discover"), 67, inv, SERVER).kind == "offer"  # type: ignore[union-attr]
    assert decide(req("edk2_binl_4011"), 4011, inv, SERVER).kind == "ack"  # type: ignore[union-attr]


# ---- Raspberry Pi --------------------------------------------------------------------------


def pi4_discover(mac: str = PI_MAC) -> DhcpRequest:
    r = parse_request(build_discover("pi4", mac, 0x1234))
    assert r is not None
    return r


def test_pi4_gets_the_menu_and_is_identified_by_serial() -> None:
    d = decide(pi4_discover(), 67, INV, SERVER)
    assert d is not None and d.reply is not None
    assert d.client.pi and d.client.pi_model == "RPi4" and d.client.pi_serial == "1e2d3c4b"
    assert d.device_id == "1e2d3c4b" and d.boot_file is None
    assert d.reply.pxe == arch_zero_menu("10.231.0.3")
    assert b"Raspberry Pi Boot" in build_reply(d.reply)


def test_pi_guid_layout() -> None:
    guid = (
        b"\x00RPi5"
        + bytes.fromhex("11 31 c0 00")
        + bytes.fromhex("c2 36 01 32")
        + bytes.fromhex("6e 24 09 70")
    )
    assert pi_guid(guid) == ("RPi5", "7009246e")
    assert pi_guid(b"\x00" + bytes.fromhex("164c6cb6") * 4) is None


@pytest.mark.parametrize("oui", ["b8:27:eb", "dc:a6:32", "e4:5f:01", "28:cd:c1", "d8:3a:dd", "2c:cf:67"])
def test_pi_by_oui(oui: str) -> None:
    r = _with(req("bios_ipxe_discover"), chaddr=oui + ":01:02:03", machine_id=None)
    assert classify(r).pi
    d = decide(r, 67, INV, SERVER)
    assert d is not None and d.device_id == "01-" + (oui + ":01:02:03").replace(":", "-")


def test_pi_serial_or_mac_in_inventory() -> None:
    by_serial = Node(device_id="1e2d3c4b")
    inv = Inventory(server=ServerSettings(unknown="ignore"), nodes={by_serial.device_id: by_serial})
    assert decide(pi4_discover(), 67, inv, SERVER).kind == "offer"  # type: ignore[union-attr]
    by_mac = Node(device_id="01-dc-a6-32-01-36-c2")
    inv = Inventory(server=ServerSettings(unknown="ignore"), nodes={by_mac.device_id: by_mac})
    d = decide(pi4_discover(), 67, inv, SERVER)
    assert d is not None and d.kind == "offer" and d.device_id == "01-dc-a6-32-01-36-c2"
    inv = inventory(unknown="ignore")
    assert decide(pi4_discover(), 67, inv, SERVER).kind == "ignored"  # type: ignore[union-attr]


def test_pi_answered_even_when_bios_is_not_served() -> None:
    inv = inventory(loaders=dict(DEFAULT_LOADERS, bios=""))
    d = decide(pi4_discover(), 67, inv, SERVER)
    assert d is not None and d.reply is not None
    assert d.reply.pxe == bytes.fromhex("060103 0a0400505845 0914000011") + b"Raspberry Pi Boot\xff"


def test_non_pi_arch0_with_pi_guid_only() -> None:
    r = _with(pi4_discover("02:00:00:00:00:01"))
    assert classify(r).pi and classify(r).pi_serial == "1e2d3c4b"
    uefi = _with(r, arch=7, arches=(7,))
    assert not classify(uefi).pi


# ---- port 4011 -----------------------------------------------------------------------------


def test_4011_boot_server_request_ipxe_bios() -> None:
    r = req("bios_ipxe_pxebs_4011")
    d = decide(r, 4011, INV, SERVER)
    assert d is not None and d.kind == "ack" and d.reply is not None
    assert d.reply.yiaddr == "10.231.0.135" and d.reply.ciaddr == "0.0.0.0"
    assert d.reply.file == "lpxelinux.0" and d.reply.sname == ""
    assert d.reply.pxe == bytes.fromhex("47048000 0000ff")
    assert without_secs(build_reply(d.reply)) == without_secs(ref("bios_ipxe_pxebs_4011.dnsmasq_ack"))
    assert destination(r, 4011, "10.231.0.135", 68) == ("10.231.0.135", 68)


@pytest.mark.parametrize("name", ["ipxe_efi_proxyrequest_4011", "snponly_ipxe_proxyrequest_4011"])
def test_4011_ipxe_efi_proxy_request(name: str) -> None:
    r = req(name)
    d = decide(r, 4011, INV, SERVER)
    assert d is not None and d.reply is not None and d.client.ipxe
    assert d.reply.xid == r.xid and d.reply.file == "efi64/syslinux.efi" and d.reply.sname == "10.231.0.3"
    assert d.reply.yiaddr == "0.0.0.0" and d.reply.ciaddr == "10.231.0.136" and d.reply.pxe is None
    if name + ".dnsmasq_ack" in PACKETS:
        assert without_secs(build_reply(d.reply)) == without_secs(ref(name + ".dnsmasq_ack"))
    assert destination(r, 4011, "10.231.0.136", 68) == ("10.231.0.136", 68)


@pytest.mark.parametrize("name", ["edk2_binl_4011", "snponly_edk2_binl_4011", "grub_edk2_binl_4011"])
def test_4011_edk2_binl(name: str) -> None:
    r = req(name)
    d = decide(r, 4011, INV, SERVER)
    assert d is not None and d.reply is not None and not d.client.ipxe
    assert d.reply.file == "efi64/syslinux.efi"
    if name + ".dnsmasq_ack" in PACKETS:
        assert build_reply(d.reply) == ref(name + ".dnsmasq_ack")
    assert destination(r, 4011, "10.231.0.136", 4011) == ("10.231.0.136", 4011)


def test_4011_discover_and_plain_are_ignored() -> None:
    assert decide(req("edk2_discover"), 4011, INV, SERVER) is None
    assert decide(req("syslinux_efi_request67"), 4011, INV, SERVER) is None


def test_4011_boot_item_rules() -> None:
    r = req("bios_ipxe_pxebs_4011")
    bis = _with(r, boot_item=(0x8000, 0x8000))
    assert decide(bis, 4011, INV, SERVER).kind == "ignored"  # type: ignore[union-attr]
    local = _with(r, boot_item=(0, 0), pxe={71: b"\0\0\0\0"})
    assert decide(local, 4011, INV, SERVER).kind == "ignored"  # type: ignore[union-attr]
    broken = _with(r, boot_item=None, pxe={71: b"\x80"})
    assert decide(broken, 4011, INV, SERVER).kind == "ignored"  # type: ignore[union-attr]
    layer3 = _with(r, boot_item=(0x8000, 3))
    assert decide(layer3, 4011, INV, SERVER).reply.pxe == bytes.fromhex("47048000 0003ff")  # type: ignore[union-attr]


def test_4011_binl_needs_arch() -> None:
    r = _with(req("edk2_binl_4011"), arch=None, arches=())
    assert decide(r, 4011, INV, SERVER).kind == "ignored"  # type: ignore[union-attr]


def test_4011_inform_is_answered() -> None:
    d = decide(_with(req("edk2_binl_4011"), message_type=8), 4011, INV, SERVER)
    assert d is not None and d.kind == "ack"


@pytest.mark.parametrize("profile", ["bios-ipxe", "edk2", "ipxe-efi"])
def test_scripted_client_profiles_are_answered(profile: str) -> None:
    mac = "52:54:00:12:34:56"
    assert decide(parse_request(build_discover(profile, mac, 7)), 67, INV, SERVER).kind == "offer"  # type: ignore[arg-type,union-attr]
    payload, sport = build_4011(profile, mac, 7, "10.231.0.50", "10.231.0.3")
    d = decide(parse_request(payload), 4011, INV, SERVER)  # type: ignore[arg-type]
    assert d is not None and d.kind == "ack"
    assert sport == (4011 if profile == "edk2" else 68)
    assert decide(parse_request(build_discover("plain", mac, 7)), 67, INV, SERVER) is None  # type: ignore[arg-type]


# ---- destinations --------------------------------------------------------------------------


def test_destinations() -> None:
    r = req("edk2_discover")
    assert destination(r, 67, "0.0.0.0", 68) == ("255.255.255.255", 68)
    relayed = _with(r, giaddr="10.9.0.1")
    assert destination(relayed, 67, "10.9.0.1", 67) == ("10.9.0.1", 67)
    assert destination(_with(req("edk2_binl_4011"), giaddr="10.9.0.1"), 4011, "10.9.0.1", 67) == (
        "10.9.0.1",
        67,
    )
    assert destination(req("edk2_binl_4011"), 4011, "0.0.0.0", 4011) == ("255.255.255.255", 4011)


def test_relayed_reply_keeps_giaddr() -> None:
    d = decide(_with(req("edk2_discover"), giaddr="10.9.0.1"), 67, INV, SERVER)
    assert d is not None and d.reply is not None and d.reply.giaddr == "10.9.0.1"
    assert build_reply(d.reply)[24:28] == bytes([10, 9, 0, 1])


@pytest.mark.parametrize(
    "giaddr,problem",
    [
        ("10.231.0.77", None),
        ("10.9.0.1", None),
        ("127.0.0.1", "loopback"),
        ("10.231.0.3", "our own address"),
        ("255.255.255.255", "not a unicast"),
        ("10.231.0.255", "not a unicast"),
        ("224.0.0.1", "not a unicast"),
        ("240.0.0.1", "not a unicast"),
    ],
)
def test_relay_address_checks(giaddr: str, problem: str | None) -> None:
    found = relay_problem(giaddr, ipaddress.IPv4Interface("10.231.0.3/24"))
    assert (found is None) if problem is None else (found is not None and problem in found)
