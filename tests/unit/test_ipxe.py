"""iPXE as a boot loader: the binary-name rule, class C answers (script URL) and the scripts themselves."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from pathlib import Path

import pytest

from pypxe_homelab.assets import bootloaders
from pypxe_homelab.assets.bootloaders import is_ipxe_loader
from pypxe_homelab.boot.ipxe_script import echo_text, render_ipxe_script, script_url
from pypxe_homelab.boot.loader_config import kernel_boot, render_loader_config
from pypxe_homelab.boot.policy import choose_boot
from pypxe_homelab.config import hostnet
from pypxe_homelab.config.model import (
    DEFAULT_LOADERS,
    BootSpec,
    Inventory,
    Node,
    ServerSettings,
)
from pypxe_homelab.errors import UserError
from pypxe_homelab.events import Event
from pypxe_homelab.protocol.dhcp_codec import DhcpRequest, build_reply, parse_request
from pypxe_homelab.protocol.proxydhcp import MAX_FILE, ServerView, arch_zero_menu
from pypxe_homelab.state.discovery import stage_of
from tests.booters import decide
from tests.fixtures.autoinstall.inventories import BASE_URL, PC24_ID
from tests.fixtures.autoinstall.inventories import inventory as install_inventory
from tests.lab.pxeclient import describe

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dhcp" / "captured.json"
PACKETS = {p["name"]: p for p in json.loads(FIXTURES.read_text())["packets"]}
SERVER = ServerView(address="10.231.0.3", interface="eth0")
UEFI_ID = "01-52-54-00-a0-00-02"
BIOS_ID = "01-52-54-00-a0-00-01"


def req(name: str) -> DhcpRequest:
    r = parse_request(bytes.fromhex(PACKETS[name]["payload"]))
    assert r is not None
    return r


def loaders(**changes: str) -> Inventory:
    return Inventory(server=ServerSettings(loaders={**DEFAULT_LOADERS, **changes}))


def url(device_id: str) -> str:
    return f"http://10.231.0.3:12345/{device_id}/boot.ipxe"


# ---- which loaders are iPXE ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "snponly.efi",
        "undionly.kpxe",
        "undionly.kkpxe",
        "ipxe.efi",
        "ipxe.pxe",
        "snp.efi",
        "efi64/snponly.efi",
        "ipxe-arm64.efi",
        "arm64/snp.efi",
        "IPXE.EFI",
        "snp_x86_64.efi",
    ],
)
def test_ipxe_binaries_are_recognised(name: str) -> None:
    assert is_ipxe_loader(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "lpxelinux.0",
        "efi64/syslinux.efi",
        "grubx64.efi",
        "ipxe.lkrn",
        "ipxe.iso",
        "ipxe",
        "myipxe.efi",
        "snpx.efi",
        "snponly.efi.bak",
        "ipxe/syslinux.efi",
    ],
)
def test_other_files_are_not_ipxe(name: str) -> None:
    assert not is_ipxe_loader(name)


# ---- ProxyDHCP class C -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ipxe_efi_discover", "snponly_ipxe_discover"])
def test_ipxe_efi_discover_gets_the_script_url(name: str) -> None:
    d = decide(req(name), 67, loaders(efi64="snponly.efi"), SERVER)
    assert d is not None and d.kind == "offer" and d.reply is not None and d.client.ipxe
    r = d.reply
    assert (r.siaddr, r.file, r.pxe, r.yiaddr, r.flags) == (
        "10.231.0.3",
        url(UEFI_ID),
        None,
        "0.0.0.0",
        0x8000,
    )
    assert d.boot_file == url(UEFI_ID)
    data = build_reply(r)
    assert data[108 : 108 + len(r.file) + 1] == r.file.encode() + b"\0"  # header file field, NUL-terminated
    options = describe(data, "10.231.0.3", 67, "255.255.255.255", 68)["options"]
    assert "43" not in options and "67" not in options and len(data) >= 300


def test_ipxe_efi_with_the_default_loader_is_unchanged() -> None:
    d = decide(req("ipxe_efi_discover"), 67, Inventory(), SERVER)
    assert d is not None and d.reply is not None
    assert d.reply.file == "" and d.boot_file == "efi64/syslinux.efi"
    ack = decide(req("ipxe_efi_proxyrequest_4011"), 4011, Inventory(), SERVER)
    assert ack is not None and ack.reply is not None and ack.reply.file == "efi64/syslinux.efi"


@pytest.mark.parametrize(
    ("discover", "binl"),
    [("edk2_discover", "edk2_binl_4011"), ("snponly_edk2_discover", "snponly_edk2_binl_4011")],
)
def test_firmware_pxe_gets_the_ipxe_binary_via_4011(discover: str, binl: str) -> None:
    inv = loaders(efi64="snponly.efi")
    offer = decide(req(discover), 67, inv, SERVER)
    assert offer is not None and offer.reply is not None and not offer.client.ipxe
    assert offer.reply.file == "" and offer.reply.pxe is None and offer.boot_file == "snponly.efi"
    ack = decide(req(binl), 4011, inv, SERVER)
    assert ack is not None and ack.kind == "ack" and ack.reply is not None
    assert ack.reply.file == "snponly.efi" and ack.reply.siaddr == "10.231.0.3"


@pytest.mark.parametrize("name", ["ipxe_efi_proxyrequest_4011", "snponly_ipxe_proxyrequest_4011"])
def test_ipxe_asking_4011_gets_the_script_url_in_the_ack(name: str) -> None:
    d = decide(req(name), 4011, loaders(efi64="efi64/snponly.efi"), SERVER)
    assert d is not None and d.kind == "ack" and d.reply is not None
    assert d.reply.file == url(UEFI_ID) and d.reply.siaddr == "10.231.0.3" and d.reply.sname == "10.231.0.3"


def test_bios_ipxe_rom_with_undionly_gets_the_script_url_and_no_menu() -> None:
    inv = loaders(bios="undionly.kpxe")
    d = decide(req("bios_ipxe_discover"), 67, inv, SERVER)
    assert d is not None and d.reply is not None and d.client.firmware == "bios"
    assert d.reply.pxe is None and d.reply.file == url(BIOS_ID) and d.reply.siaddr == "10.231.0.3"
    ack = decide(req("bios_ipxe_pxebs_4011"), 4011, inv, SERVER)  # boot-server request, should it come
    assert ack is not None and ack.reply is not None and ack.reply.file == url(BIOS_ID)


def test_bios_pxe_rom_gets_the_menu_then_undionly() -> None:
    inv = loaders(bios="undionly.kpxe")
    plain = dataclasses.replace(req("bios_ipxe_discover"), user_class=None, has_ipxe_opts=False)
    d = decide(plain, 67, inv, SERVER)
    assert d is not None and d.reply is not None and d.reply.pxe == arch_zero_menu("10.231.0.3")
    pxebs = dataclasses.replace(req("bios_ipxe_pxebs_4011"), user_class=None, has_ipxe_opts=False)
    ack = decide(pxebs, 4011, inv, SERVER)
    assert ack is not None and ack.reply is not None and ack.reply.file == "undionly.kpxe"


def test_arm64_is_served_by_an_ipxe_binary_the_same_way() -> None:
    inv = loaders(arm64="ipxe-arm64.efi")
    arm = dataclasses.replace(req("ipxe_efi_discover"), arch=11, arches=(11,))
    d = decide(arm, 67, inv, SERVER)
    assert d is not None and d.client.firmware == "arm64" and d.reply is not None
    assert d.reply.file == url(UEFI_ID)
    firmware = dataclasses.replace(req("edk2_binl_4011"), arch=11, arches=(11,))
    ack = decide(firmware, 4011, inv, SERVER)
    assert ack is not None and ack.reply is not None and ack.reply.file == "ipxe-arm64.efi"


def test_known_node_direct_mode_still_gets_the_script() -> None:
    node = Node(device_id=UEFI_ID, uefi_mode="direct")
    inv = dataclasses.replace(loaders(efi64="snponly.efi"), nodes={UEFI_ID: node})
    d = decide(req("ipxe_efi_discover"), 67, inv, SERVER)
    assert d is not None and d.known and d.reply is not None
    assert d.reply.file == url(UEFI_ID) and d.reply.pxe is None


def test_script_url_fits_the_128_byte_file_field() -> None:
    longest = script_url("255.255.255.255", 65535, "01-ff-ff-ff-ff-ff-ff")
    assert len(longest) <= MAX_FILE == 127
    server = ServerView(address="255.255.255.255")
    inv = loaders(efi64="snponly.efi")
    inv = dataclasses.replace(inv, server=dataclasses.replace(inv.server, http_port=65535))
    d = decide(req("ipxe_efi_discover"), 67, inv, server)
    assert d is not None and d.reply is not None
    data = build_reply(d.reply)
    assert data[108 : 108 + 128].rstrip(b"\0") == d.reply.file.encode() and data[108 + len(d.reply.file)] == 0
    too_long = ServerView(address="10.231.0.3." + "x" * 100)
    d = decide(req("ipxe_efi_discover"), 67, loaders(efi64="snponly.efi"), too_long)
    assert d is not None and d.kind == "ignored" and "longer than 127 bytes" in d.reason


def test_unknown_ignore_policy_still_ignores_ipxe() -> None:
    inv = Inventory(
        server=ServerSettings(unknown="ignore", loaders={**DEFAULT_LOADERS, "efi64": "snponly.efi"})
    )
    d = decide(req("ipxe_efi_discover"), 67, inv, SERVER)
    assert d is not None and d.kind == "ignored"


# ---- scripts -----------------------------------------------------------------------------------


def boot_inventory(cmdline: str = "console=ttyS0,115200 panic=-1", **server: object) -> Inventory:
    node = Node(
        device_id=UEFI_ID,
        boot=BootSpec(kernel="boot/linux", initrd=("boot/initrd.gz", "boot/extra.cpio"), cmdline=cmdline),
    )
    return Inventory(server=ServerSettings(**server), nodes={UEFI_ID: node})  # type: ignore[arg-type]


def script(inv: Inventory, device_id: str, state: str | None = None, client_ip: str | None = None) -> str:
    choice = choose_boot(inv, device_id, state)
    return render_ipxe_script(choice, base_url=BASE_URL, inventory=inv, client_ip=client_ip)


def test_unknown_machine_sees_its_id_and_add_line_then_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostnet, "local_networks", lambda: (ipaddress.IPv4Network("192.168.0.0/23"),))
    text = script(boot_inventory(menu_timeout=7), "01-52-54-00-a0-00-09", client_ip="192.168.1.77")
    lines = text.splitlines()
    assert lines[0] == "#!ipxe"
    assert "echo device id: 01-52-54-00-a0-00-09" in lines and "echo MAC: 52:54:00:a0:00:09" in lines
    # the served network's prefix, and not its current lease as the address to give it
    assert "echo pypxe-homelab add 01-52-54-00-a0-00-09 --node-address <address>/23" in lines
    assert (
        "echo <address>: a free address of 192.168.0.0/23 outside your router's DHCP pool (192.168.1.77, "
        "which it has now, comes from that pool), or an address reserved for this machine on the router"
    ) in lines
    assert lines[-2:] == ["sleep 7", "exit"]
    assert not any(line.startswith(("kernel", "initrd", "boot", "chain")) for line in lines)


def test_boot_node_gets_kernel_initrds_and_its_cmdline() -> None:
    lines = script(boot_inventory(), UEFI_ID).splitlines()
    assert lines[0] == "#!ipxe"
    assert lines[-4:] == [
        f"kernel {BASE_URL}/boot/linux initrd=initrd0 initrd=initrd1 console=ttyS0,115200 panic=-1",
        f"initrd --name initrd0 {BASE_URL}/boot/initrd.gz",
        f"initrd --name initrd1 {BASE_URL}/boot/extra.cpio",
        "boot",
    ]


def test_boot_node_shares_its_words_with_the_pxelinux_config() -> None:
    inv = boot_inventory('console=ttyS0   quiet foo="a b"')
    choice = choose_boot(inv, UEFI_ID, None)
    kb = kernel_boot(choice, BASE_URL, inv)
    assert kb.tokens == ("console=ttyS0", "quiet", 'foo="a b"')
    pxelinux = render_loader_config(choice, tree="efi64", base_url=BASE_URL, inventory=inv)
    assert f"  APPEND {kb.append}" in pxelinux.splitlines()
    kernel_line = next(line for line in script(inv, UEFI_ID).splitlines() if line.startswith("kernel "))
    assert kernel_line.endswith(" initrd=initrd0 initrd=initrd1 " + kb.append)


def test_arguments_ipxe_would_interpret_are_refused() -> None:
    with pytest.raises(UserError, match="iPXE"):
        script(boot_inventory("a=${b}"), UEFI_ID)


def test_install_node_gets_the_installer_with_literal_semicolon(tmp_path: Path) -> None:
    inv = install_inventory(tmp_path)
    choice = choose_boot(inv, PC24_ID, None)
    assert choice.action == "install"
    text = render_ipxe_script(choice, base_url=BASE_URL, inventory=inv)
    node_url = f"{BASE_URL}/{PC24_ID}"
    [kernel_line] = [line for line in text.splitlines() if line.startswith("kernel ")]
    assert kernel_line.startswith(f"kernel {node_url}/casper/vmlinuz initrd=initrd0 root=/dev/ram0 ")
    words = kernel_line.split()
    assert "autoinstall" in words and "ip=dhcp" in words and "cloud-config-url=/dev/null" in words
    assert f"ds=nocloud-net;s={node_url}/cloud-init/" in words  # iPXE keeps `;` inside a word
    assert f"url={node_url}/ubuntu-24.04.4-live-server-amd64.iso" in words
    assert f"initrd --name initrd0 {node_url}/casper/initrd" in text.splitlines()
    assert text.splitlines()[-1] == "boot"
    pxelinux = render_loader_config(choice, tree="bios", base_url=BASE_URL, inventory=inv)
    assert words[-1] == "BOOTIF=01-${netX/mac:hexhyp}"  # iPXE fills in the MAC of the NIC that booted
    assert (
        " ".join(words[3:-1]) in pxelinux
    )  # the same words as the PXELINUX APPEND line (SYSAPPEND adds BOOTIF)
    assert "SYSAPPEND 2" in pxelinux


def test_installed_node_exits_to_its_disk(tmp_path: Path) -> None:
    inv = install_inventory(tmp_path)
    text = script(inv, PC24_ID, state="installed")
    lines = text.splitlines()
    assert lines[-1] == "exit" and not any(line.startswith(("kernel", "initrd", "boot")) for line in lines)
    assert any(line.startswith("echo") and f"reinstall {PC24_ID}" in line for line in lines)


def test_local_node_exits() -> None:
    inv = Inventory(nodes={UEFI_ID: Node(device_id=UEFI_ID)})
    assert script(inv, UEFI_ID).splitlines()[-1] == "exit"


def test_echo_text_cannot_run_or_expand_anything() -> None:
    assert echo_text("a ${x} ; b || c && d #e") == "a $ {x} , b or c and d e"
    assert echo_text("installed; run 'x'") == "installed; run 'x'"


# ---- timeline, boot files ----------------------------------------------------------------------


def test_script_fetch_counts_as_the_config_stage() -> None:
    event = Event(
        "http.get", "10.0.0.9:5000", UEFI_ID, None, {"path": f"/{UEFI_ID}/boot.ipxe", "what": "config"}
    )
    assert stage_of(event) == "config"


def test_install_ipxe_copies_what_is_installed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "snponly.efi").write_bytes(b"snp")
    sources = {"snponly.efi": src / "snponly.efi", "undionly.kpxe": src / "undionly.kpxe"}
    written = bootloaders.install_ipxe(tmp_path / "tftp", sources)
    assert written == [tmp_path / "tftp" / "snponly.efi"] and written[0].read_bytes() == b"snp"


def test_ipxe_files_are_only_required_when_configured(tmp_path: Path) -> None:
    assert not any(is_ipxe_loader(f) for f in bootloaders.required_files(DEFAULT_LOADERS))
    missing = bootloaders.missing_bootloaders(tmp_path, {**DEFAULT_LOADERS, "efi64": "snponly.efi"})
    assert "snponly.efi" in missing and "undionly.kpxe" not in missing and "ipxe.efi" not in missing
    advice = bootloaders.install_advice(missing, "`pypxe-homelab bootfiles install`")
    assert advice == "`sudo apt-get install ipxe`, then `pypxe-homelab bootfiles install`"
    syslinux_only = bootloaders.missing_bootloaders(tmp_path, DEFAULT_LOADERS)
    assert bootloaders.install_advice(syslinux_only, "X") == "X"


@pytest.mark.skipif(
    not all(p.is_file() for p in bootloaders.IPXE_FILES.values()) or not bootloaders.packages_available(),
    reason="needs the packages ipxe, pxelinux, syslinux-efi and syslinux-common",
)
def test_bootfiles_install_adds_the_ipxe_binaries(tmp_path: Path) -> None:
    report = bootloaders.install_bootloaders(tmp_path / "tftp", source="packages", cache=tmp_path / "cache")
    assert sorted(p.name for p in report.ipxe) == ["ipxe.efi", "snponly.efi", "undionly.kpxe"]
    assert (tmp_path / "tftp" / "snponly.efi").read_bytes() == Path("/usr/lib/ipxe/snponly.efi").read_bytes()
    assert "3 iPXE binaries" in report.summary()
