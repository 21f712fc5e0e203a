"""Secure Boot enforced, router naming nobody: an Ubuntu node boots the chain read out of its own ISO.

The ISO is built in Ubuntu 24.04's layout from Ubuntu's own packages (``tests/lab/ubuntu_debs.py``):
EFI/boot/bootx64.efi = Ubuntu's Microsoft-signed shim, EFI/boot/grubx64.efi = Ubuntu's signed GRUB, the
signed GRUB package in the ISO's pool, casper/vmlinuz = a Canonical-signed kernel, casper/initrd = an initrd
that prints the SecureBoot variable. The router (dnsmasq) sends its own address as siaddr, as home routers do:
Ubuntu 24.04's network GRUB takes its server from the ProxyDHCP answer instead, so no router setting is needed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import NetbootLab, config_head, e2e_skip_reason
from tests.e2e.test_autoinstall_boot import ssh_public_key
from tests.fixtures.autoinstall.isobuild import build_test_iso
from tests.lab import ubuntu_debs
from tests.lab.kernel import find_kernel
from tests.lab.mkinitrd import CMDLINE_MARKER, SECURE_BOOT_INIT, SECURE_BOOT_MARKER, build_initrd
from tests.lab.netns import TestLan
from tests.lab.qemu import DEFAULT_FAIL, qemu_skip_reason
from tests.lab.router import start_router

pytestmark = pytest.mark.e2e

MAC = "52:54:00:a0:00:30"
DEVICE_ID = "01-" + MAC.replace(":", "-")
IMAGE = "noble-sb"
LABEL = 'Ubuntu-Server 24.04 LTS "Noble Numbat" - Release amd64 (20240423)'
TIMEOUT = 300.0
FAIL = DEFAULT_FAIL + r'|"UiApp"|grub> '


def noble_iso(path: Path) -> Path:
    """A small ISO in Ubuntu's live-server layout, its boot chain and kernel from Ubuntu's packages."""
    grub_deb = ubuntu_debs.ubuntu_deb(ubuntu_debs.GRUB_DEB)
    extra = {
        "EFI/boot/bootx64.efi": ubuntu_debs.member(ubuntu_debs.SHIM_DEB, ubuntu_debs.SHIM_FILE),
        "EFI/boot/mmx64.efi": ubuntu_debs.member(ubuntu_debs.SHIM_DEB, "usr/lib/shim/mmx64.efi"),
        "EFI/boot/grubx64.efi": ubuntu_debs.member(ubuntu_debs.GRUB_DEB, ubuntu_debs.ISO_GRUB_FILE),
        f"pool/main/g/grub2-signed/{grub_deb.name}": grub_deb.read_bytes(),
    }
    kernel = ubuntu_debs.member(ubuntu_debs.KERNEL_DEB, ubuntu_debs.KERNEL_FILE)
    return build_test_iso(path, kernel, build_initrd(SECURE_BOOT_INIT), label=LABEL, extra=extra)


@pytest.fixture(scope="module")
def ubuntu_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetbootLab]:
    reason = e2e_skip_reason() or qemu_skip_reason("uefi-sb")
    if reason:
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("ubuntu-sb")
    iso = noble_iso(workdir / "noble-sb-live-server-amd64.iso")
    kernel = find_kernel()
    assert kernel is not None
    with TestLan(["router", "server"]) as lan:
        router = start_router(lan, workdir / "router")  # no next-server for anyone
        lab = NetbootLab(lan=lan, router=router, kernel=kernel, workdir=workdir)
        lab.write_config(
            config_head(lab)
            + f"""\
  {DEVICE_ID}:
    address: {lan.prefix}.70/24
    os: {IMAGE}
    secure_boot: true
    ssh_authorized_keys:
      - {ssh_public_key(workdir)}
    cmdline: console=ttyS0,115200 panic=-1
"""
        )
        lab.install_bootfiles()
        res = lab.cli("images", "add", str(iso), "--name", IMAGE)
        assert res.returncode == 0, f"images add failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
        lab.start_server()
        try:
            yield lab
        finally:
            lab.stop_server()


def test_ubuntu_installer_boots_with_secure_boot_on_through_proxydhcp_only(ubuntu_lab: NetbootLab) -> None:
    lab = ubuntu_lab
    chain = lab.httproot / "images" / IMAGE / "efi"
    assert (chain / "grubx64.efi").read_bytes() == ubuntu_debs.noble_net_grub()  # the network build
    result = lab.boot("uefi-sb", MAC, expect=re.escape(CMDLINE_MARKER) + r" .*\n", fail=FAIL, timeout=TIMEOUT)
    log = lab.server_log()
    assert result.ok, result.describe() + "\n---- server log ----\n" + log[-6000:]
    assert re.search(re.escape(SECURE_BOOT_MARKER) + r" 1\b", result.serial), result.tail()
    assert "PXH-LOCKDOWN: none [integrity] confidentiality" in result.serial  # Canonical's kernel saw it
    cmdline = re.search(re.escape(CMDLINE_MARKER) + r" (.*)", result.serial)
    assert cmdline and " autoinstall" in f" {cmdline.group(1)}" and f"BOOTIF={DEVICE_ID}" in cmdline.group(1)
    for path in (
        f"ubuntu-sb/{IMAGE}/shimx64.efi",
        f"ubuntu-sb/{IMAGE}/grubx64.efi",
        "grub/grub.cfg",  # asked of us, the ProxyDHCP server: the router's siaddr names itself
        f"grub/mac/{MAC}.cfg",
        f"grub/http/{DEVICE_ID}/casper/vmlinuz",
        f"grub/http/{DEVICE_ID}/casper/initrd",
    ):
        assert f"tftp.done {DEVICE_ID}" in log and f"path={path} " in log, path
    assert "path=shimx64.efi " not in log  # Debian's chain is not what this node got
