"""Secure Boot: signed loaders only for machines marked secure_boot, GRUB configs, the signed bootfiles."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from pypxe_homelab.assets import bootloaders
from pypxe_homelab.boot.booter import loaders_in_use
from pypxe_homelab.boot.grub_config import (
    grub_config_request,
    grub_device_path,
    http_alias_request,
    render_grub_config,
    render_grub_entry,
)
from pypxe_homelab.boot.policy import choose_boot
from pypxe_homelab.config.loader import parse_inventory
from pypxe_homelab.config.model import BootSpec, Defaults, Inventory, Node, ServerSettings
from pypxe_homelab.errors import UserError
from pypxe_homelab.protocol.proxydhcp import ServerView
from tests.booters import decide
from tests.unit.test_ipxe import req

SERVER = ServerView(address="10.231.0.3", interface="eth0")
UEFI_ID = "01-52-54-00-a0-00-02"
BASE = "http://10.231.0.3:12345"
BOOT = BootSpec("boot/linux", ("boot/initrd.gz",), "console=ttyS0 ds=nocloud;s=http://x/")


def inventory(secure: bool | None, default: bool = False, **server) -> Inventory:
    node = Node(UEFI_ID, boot=BOOT, secure_boot=secure)
    return Inventory(
        server=ServerSettings(**server), defaults=Defaults(secure_boot=default), nodes={UEFI_ID: node}
    )


def test_secure_boot_machine_gets_the_signed_shim_on_4011() -> None:
    offer = decide(req("edk2_discover"), 67, inventory(True), SERVER)
    ack = decide(req("edk2_binl_4011"), 4011, inventory(True), SERVER)
    assert offer is not None and offer.boot_file == "shimx64.efi"
    assert ack is not None and ack.reply is not None and ack.reply.file == "shimx64.efi"


def test_other_machines_keep_their_unsigned_loader() -> None:
    ack = decide(req("edk2_binl_4011"), 4011, inventory(False, default=True), SERVER)
    assert ack is not None and ack.boot_file == "efi64/syslinux.efi"


def test_unknown_machines_follow_defaults_secure_boot() -> None:
    inv = Inventory(defaults=Defaults(secure_boot=True))
    ack = decide(req("edk2_binl_4011"), 4011, inv, SERVER)
    assert ack is not None and ack.boot_file == "shimx64.efi"


def test_a_secure_boot_machine_is_never_offered_an_unsigned_loader() -> None:
    inv = inventory(True, secure_boot_loaders={"efi64": "", "arm64": ""})
    offer = decide(req("edk2_discover"), 67, inv, SERVER)
    assert offer is not None and offer.reply is None
    assert "no signed boot loader configured for efi64" in offer.reason


def test_ipxe_signed_chain_gets_the_script_url_in_its_own_round() -> None:
    inv = inventory(True, secure_boot_loaders={"efi64": "ipxe-sb/x64/snponly-shim.efi", "arm64": ""})
    first = decide(req("edk2_binl_4011"), 4011, inv, SERVER)
    assert first is not None and first.boot_file == "ipxe-sb/x64/snponly-shim.efi"
    again = decide(req("snponly_ipxe_proxyrequest_4011"), 4011, inv, SERVER)
    assert again is not None and again.boot_file == f"{BASE}/{UEFI_ID}/boot.ipxe"


def test_config_keys_parse() -> None:
    text = f"""\
server:
  secure_boot_loaders: {{efi64: ipxe-sb/x64/snponly-shim.efi}}
defaults:
  secure_boot: true
  dhcp_reply_delay: 1.5
nodes:
  {UEFI_ID}:
    secure_boot: false
    dhcp_reply_delay: 0
"""
    inv = parse_inventory(text, None, detect_host=False)
    assert inv.server.secure_boot_loaders == {
        "efi64": "ipxe-sb/x64/snponly-shim.efi",
        "arm64": "shimaa64.efi",
    }
    assert inv.secure_boot(None) and not inv.secure_boot(inv.nodes[UEFI_ID])
    assert inv.reply_delay(None) == 1.5 and inv.reply_delay(inv.nodes[UEFI_ID]) == 0


# ---- GRUB configs ------------------------------------------------------------------------------


def test_grub_paths() -> None:
    assert grub_config_request("grub/grub.cfg") == "entry"
    assert grub_config_request("grub/mac/52:54:00:A0:00:02.cfg") == UEFI_ID
    assert grub_config_request("grub/x86_64-efi/grub.cfg") is None
    assert http_alias_request("grub/http/boot/linux") == "boot/linux"
    assert http_alias_request("grub/http/") is None


def test_grub_entry_hands_over_by_mac() -> None:
    assert "configfile ${prefix}/mac/${net_default_mac}.cfg" in render_grub_entry()


def test_grub_boot_entry_has_the_pxelinux_command_line_quoted_for_grub() -> None:
    inv = inventory(True)
    text = render_grub_config(choose_boot(inv, UEFI_ID, None), base_url=BASE, inventory=inv)
    assert "linux (tftp,10.231.0.3)/grub/http/boot/linux console=ttyS0 ds=nocloud\\;s=http://x/" in text
    assert "initrd (tftp,10.231.0.3)/grub/http/boot/initrd.gz" in text


def test_grub_local_boot_chains_the_disks_signed_loader() -> None:
    node = Node(UEFI_ID, os="ubuntu-24.04", install="never")
    inv = Inventory(nodes={UEFI_ID: node})
    text = render_grub_config(choose_boot(inv, UEFI_ID, None), base_url=BASE, inventory=inv)
    assert "search --no-floppy --file --set=pxh_disk ${pxh_loader}" in text and "chainloader" in text
    assert "install: never" in text


def test_grub_unknown_screen_names_the_add_command() -> None:
    inv = Inventory()
    text = render_grub_config(choose_boot(inv, "01-52-54-00-a0-00-09", None), base_url=BASE, inventory=inv)
    assert "pypxe-homelab add 01-52-54-00-a0-00-09" in text and "sleep 10" in text


def test_grub_refuses_urls_of_other_servers() -> None:
    with pytest.raises(UserError, match="TFTP from this server only"):
        grub_device_path("http://elsewhere/boot/linux", BASE)


# ---- boot files ----------------------------------------------------------------------------------


def test_shims_need_their_second_stage() -> None:
    assert bootloaders.required_files({"a": "shimx64.efi", "b": "ipxe-sb/x64/snponly-shim.efi"}) == [
        "shimx64.efi",
        "grubx64.efi",
        "ipxe-sb/x64/snponly-shim.efi",
        "ipxe-sb/x64/snponly.efi",
    ]


def test_signed_loaders_are_needed_only_when_a_machine_uses_secure_boot() -> None:
    assert "secure_boot/efi64" not in loaders_in_use(inventory(False))
    used = loaders_in_use(inventory(True), optional=False)
    assert used["secure_boot/efi64"] == "shimx64.efi" and "secure_boot/arm64" not in used


def test_install_signed_copies_the_package_files(tmp_path: Path) -> None:
    src = tmp_path / "shimx64.efi.signed"
    src.write_bytes(b"shim")
    assert bootloaders.install_signed(
        tmp_path / "tftp", {"shimx64.efi": src, "x.efi": tmp_path / "none"}
    ) == [tmp_path / "tftp" / "shimx64.efi"]


def test_ipxe_secure_boot_manifest_entry_is_pinned() -> None:
    release = bootloaders.load_manifest("ipxe_secure_boot")
    assert release.url == "https://github.com/ipxe/ipxe/releases/download/v2.0.0/ipxeboot.tar.gz"
    assert release.sha256 == "01a526d4cc791fc30362259c609d6c506cc64a7bdff51b9a5eb788354e17eee1"
    assert release.files["ipxe-sb/x64/snponly-shim.efi"] == "x86_64-sb/snponly-shim.efi"


def _stand_in_archive() -> bytes:
    """An archive laid out like iPXE's ipxeboot.tar.gz (symlinked shim names included), stand-in contents."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for arch, shim in (("x86_64-sb", "shimx64.efi"), ("arm64-sb", "shimaa64.efi")):
            for name, data in (
                (shim, b"signed shim " + arch.encode()),
                ("snponly.efi", b"ipxe " + arch.encode()),
            ):
                info = tarfile.TarInfo(f"ipxeboot/{arch}/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            link = tarfile.TarInfo(f"ipxeboot/{arch}/snponly-shim.efi")
            link.type, link.linkname = tarfile.SYMTYPE, shim
            tar.addfile(link)
    return buf.getvalue()


def test_ipxe_secure_boot_install_unpacks_the_pinned_archive(tmp_path: Path) -> None:
    archive = _stand_in_archive()
    pinned = bootloaders.load_manifest("ipxe_secure_boot")
    release = bootloaders.UpstreamRelease(
        pinned.version, pinned.url, hashlib.sha256(archive).hexdigest(), pinned.files
    )
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "ipxeboot.tar.gz").write_bytes(archive)  # in the cache with the right sha256: no download
    files = bootloaders.install_ipxe_secure_boot(tmp_path / "tftp", cache, release=release, progress=False)
    assert (tmp_path / "tftp/ipxe-sb/x64/snponly-shim.efi").read_bytes() == b"signed shim x86_64-sb"
    assert (tmp_path / "tftp/ipxe-sb/aa64/snponly.efi").read_bytes() == b"ipxe arm64-sb"
    assert len(files) == 4
    assert not bootloaders.missing_bootloaders(tmp_path / "tftp", {"efi64": "ipxe-sb/x64/snponly-shim.efi"})
