"""UEFI HTTP Boot: HTTPClient DISCOVERs (arch 15/16/19) get option 60 HTTPClient and a URL the server serves."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pypxe_homelab.boot.booter import HttpAsk, dhcp_decision
from pypxe_homelab.config.model import Defaults, Inventory, Node, Paths, ServerSettings
from pypxe_homelab.protocol.dhcp_codec import build_reply, parse_request
from pypxe_homelab.protocol.proxydhcp import ServerView
from tests.booters import inventory_booter
from tests.unit.test_ipxe import req

SERVER = ServerView(address="10.231.0.3", interface="eth0")
ID = "01-52-54-00-a0-00-02"


def http_discover(arch: int):
    r = req("edk2_discover")
    vendor = f"HTTPClient:Arch:{arch:05d}:UNDI:003000"
    return dataclasses.replace(r, arch=arch, arches=(arch,), vendor_class=vendor)


def inv(tmp_path: Path | None = None, **server) -> Inventory:
    paths = Paths(tmp_path) if tmp_path else Paths()
    return Inventory(server=ServerSettings(**server), paths=paths, nodes={ID: Node(ID)})


@pytest.mark.parametrize(
    ("arch", "loader"), [(16, "snponly.efi"), (15, "x86/ipxe.efi"), (19, "ipxe-arm64.efi")]
)
def test_http_client_gets_http_client_offer_with_an_absolute_url(arch: int, loader: str) -> None:
    loaders = {"efi64": "snponly.efi", "efi32": "x86/ipxe.efi", "arm64": "ipxe-arm64.efi"}
    d = dhcp_decision(inventory_booter(inv(http_boot_loaders=loaders)), http_discover(arch), 67, SERVER)
    assert d is not None and d.reply is not None and d.kind == "offer"
    assert d.reply.vendor_class == "HTTPClient"
    assert d.reply.file == f"http://10.231.0.3:12345/bootfiles/{loader}"
    wire = parse_request(build_reply(d.reply))
    assert wire is not None and wire.vendor_class == "HTTPClient"


def test_http_boot_of_a_class_without_loader_is_not_answered() -> None:
    d = dhcp_decision(inventory_booter(inv()), http_discover(19), 67, SERVER)
    assert d is not None and d.reply is None and "server.http_boot_loaders" in d.reason


def test_pxe_clients_claiming_an_http_arch_are_not_served() -> None:
    r = dataclasses.replace(req("edk2_discover"), arch=16, arches=(16,))
    d = dhcp_decision(inventory_booter(inv()), r, 67, SERVER)
    assert d is not None and d.reply is None


def test_the_http_booted_ipxe_gets_its_script() -> None:
    booter = inventory_booter(inv())
    dhcp_decision(booter, http_discover(16), 67, SERVER)
    script = dhcp_decision(booter, req("ipxe_efi_discover"), 67, SERVER)
    assert script is not None and script.boot_file == f"http://10.231.0.3:12345/{ID}/boot.ipxe"
    # an iPXE ROM that did not come through HTTP Boot still gets the PXE loader, as before
    other = dhcp_decision(inventory_booter(inv()), req("ipxe_efi_discover"), 67, SERVER)
    assert other is not None and other.boot_file != script.boot_file


def test_uefi_mode_http_leaves_the_firmware_pxe_unanswered() -> None:
    i = Inventory(defaults=Defaults(uefi_mode="http"), nodes={ID: Node(ID)})
    d = dhcp_decision(inventory_booter(i), req("edk2_discover"), 67, SERVER)
    assert d is not None and d.reply is None and "HTTP Boot" in d.reason


def test_secure_boot_machines_need_ipxes_signed_chain_for_http_boot() -> None:
    i = Inventory(nodes={ID: Node(ID, secure_boot=True)})
    d = dhcp_decision(inventory_booter(i), http_discover(16), 67, SERVER)
    assert d is not None and d.reply is None and "signed chain" in d.reason
    signed = dataclasses.replace(
        i, server=ServerSettings(secure_boot_loaders={"efi64": "ipxe-sb/x64/snponly-shim.efi"})
    )
    d = dhcp_decision(inventory_booter(signed), http_discover(16), 67, SERVER)
    assert d is not None and d.boot_file == "http://10.231.0.3:12345/bootfiles/ipxe-sb/x64/snponly-shim.efi"


def test_bootfiles_url_serves_the_loader_from_tftproot(tmp_path: Path) -> None:
    (tmp_path / "tftproot").mkdir()
    (tmp_path / "tftproot" / "snponly.efi").write_bytes(b"MZ ipxe")
    booter = inventory_booter(inv(tmp_path))
    answer = booter.http(HttpAsk("bootfiles/snponly.efi", "10.231.0.50"))
    assert getattr(answer, "path", None) == (tmp_path / "tftproot" / "snponly.efi").resolve()
    assert getattr(booter.http(HttpAsk("bootfiles/../config.yaml", "10.231.0.50")), "status", None) == 404
