"""Secure Boot enforced (OVMF .ms.fd, Microsoft keys): shim → signed GRUB → signed kernel through the server.

The router of this LAN names the server as next-server (siaddr) for one machine only, the one setting most
home routers offer; distribution-signed GRUB reads its config from that address.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import NetbootLab, config_head, e2e_skip_reason
from tests.lab.esp_disk import build_esp_disk
from tests.lab.kernel import find_kernel
from tests.lab.mkinitrd import CMDLINE_MARKER, SECURE_BOOT_MARKER, build_secure_boot_initrd
from tests.lab.netns import TestLan
from tests.lab.qemu import DEFAULT_FAIL, qemu_skip_reason
from tests.lab.router import next_server_lines, start_router

SHIM = Path("/usr/lib/shim/shimx64.efi.signed")
GRUB = Path("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (SHIM.is_file() and GRUB.is_file()), reason="needs shim-signed and grub-efi-amd64-signed"
    ),
]

NAMED_MAC = "52:54:00:a0:00:10"  # the router names the server for this machine
UNNAMED_MAC = "52:54:00:a0:00:11"  # ... and not for this one
UNSIGNED_MAC = "52:54:00:a0:00:12"  # its node is not marked secure_boot: it gets syslinux.efi
LOCAL_MAC = "52:54:00:a0:00:13"  # nothing to install: it boots its own disk (the router names us for it too)
LOCAL_GRUB = Path("/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed")  # what an installed disk carries
SB_CMDLINE = "console=ttyS0,115200 panic=-1 pxh.test=a;b"
SB_BOOT_TIMEOUT = 300.0
SB_FAIL = DEFAULT_FAIL + r'|"UiApp"|grub> '  # the firmware's setup screen / GRUB's shell: the chain stopped


def dev(mac: str) -> str:
    return "01-" + mac.replace(":", "-")


def diagnosis(lab: NetbootLab, mac: str, timeout: float = 30.0) -> dict:
    """The server's diagnosis of the machine's last boot attempt (waits for the quiet period)."""
    deadline = time.monotonic() + timeout
    while True:
        res = lab.cli("status", dev(mac), "--json")
        found = json.loads(res.stdout).get("diagnosis") if res.returncode == 0 else None
        if found or time.monotonic() > deadline:
            return found or {}
        time.sleep(1)


def sb_config(lab: NetbootLab) -> str:
    p = lab.lan.prefix
    nodes = ""
    for octet, mac, secure in ((60, NAMED_MAC, True), (61, UNNAMED_MAC, True), (62, UNSIGNED_MAC, False)):
        nodes += f"""\
  {dev(mac)}:
    address: {p}.{octet}/24
    secure_boot: {"true" if secure else "false"}
    boot: {{kernel: boot/linux, initrd: boot/sb-initrd.gz, cmdline: "{SB_CMDLINE}"}}
"""
    nodes += f"""\
  {dev(LOCAL_MAC)}:
    address: {p}.63/24
    secure_boot: true
"""
    return config_head(lab).replace("server:\n", "server:\n  diagnose_after: 5\n", 1) + nodes


@pytest.fixture(scope="module")
def sb_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetbootLab]:
    """A LAN whose router names the server for NAMED_MAC, the server with the Secure Boot chain installed."""
    reason = e2e_skip_reason() or qemu_skip_reason("uefi-sb")
    if reason:
        pytest.skip(reason)
    kernel = find_kernel()
    assert kernel is not None
    workdir = tmp_path_factory.mktemp("secureboot")
    with TestLan(["router", "server"]) as lan:
        names_us = [*next_server_lines(NAMED_MAC, lan.ip("server")), f"dhcp-host={LOCAL_MAC},set:namesus"]
        router = start_router(lan, workdir / "router", extra=names_us)
        lab = NetbootLab(lan=lan, router=router, kernel=kernel, workdir=workdir)
        lab.put_http("boot/linux", kernel.vmlinuz.read_bytes())
        lab.put_http("boot/sb-initrd.gz", build_secure_boot_initrd(kernel))
        lab.write_config(sb_config(lab))
        lab.install_bootfiles()
        lab.start_server()
        try:
            yield lab
        finally:
            lab.stop_server()


def test_router_names_us_shim_grub_kernel_boot_with_secure_boot_on(sb_lab: NetbootLab) -> None:
    assert (sb_lab.tftproot / "shimx64.efi").read_bytes() == SHIM.read_bytes()
    assert (sb_lab.tftproot / "grubx64.efi").read_bytes() == GRUB.read_bytes()
    result = sb_lab.boot(
        "uefi-sb",
        NAMED_MAC,
        expect=re.escape(CMDLINE_MARKER) + r" .*\n",
        fail=SB_FAIL,
        timeout=SB_BOOT_TIMEOUT,
    )
    log = sb_lab.server_log()
    assert result.ok, result.describe() + "\n---- server log ----\n" + log[-6000:]
    assert re.search(re.escape(SECURE_BOOT_MARKER) + r" 1\b", result.serial), result.tail()
    assert "PXH-LOCKDOWN: none [integrity] confidentiality" in result.serial  # the kernel saw Secure Boot
    cmdline = re.search(re.escape(CMDLINE_MARKER) + r" (.*)", result.serial)
    assert cmdline and "pxh.test=a;b" in cmdline.group(1)  # GRUB quoting kept the ';'
    ident = dev(NAMED_MAC)
    for path in ("shimx64.efi", "grubx64.efi", "grub/grub.cfg", f"grub/mac/{NAMED_MAC}.cfg"):
        assert f"path={path}" in log, path
    assert "path=grub/http/boot/linux" in log and "path=grub/http/boot/sb-initrd.gz" in log
    assert f"dhcp.ack {ident}" in log
    assert "syslinux.efi" not in log  # a Secure Boot machine is never offered an unsigned loader


def test_router_not_naming_us_stops_after_grub_and_the_server_says_why(sb_lab: NetbootLab) -> None:
    # GRUB asks the router (no TFTP there) and retries for minutes before its prompt: watch it for 60 s
    result = sb_lab.boot("uefi-sb", UNNAMED_MAC, expect=r"grub> ", fail=DEFAULT_FAIL, timeout=60)
    log = sb_lab.server_log()
    assert result.reason in ("expect", "timeout") and "Welcome to GRUB!" in result.serial, result.describe()
    assert f"tftp.done {dev(UNNAMED_MAC)}" in log and "path=grubx64.efi" in log
    assert f"grub/mac/{UNNAMED_MAC}.cfg" not in log  # GRUB never reached us again
    found = diagnosis(sb_lab, UNNAMED_MAC)
    assert found.get("cause") == "secure-boot-router", log[-4000:]
    assert sb_lab.server_ip in found["fix"] and "--ipxe-secure-boot" in found["fix"]
    lines = [
        line for line in sb_lab.server_log().splitlines() if f"boot.diagnosis {dev(UNNAMED_MAC)}" in line
    ]
    assert len(lines) == 1


def test_an_unsigned_loader_is_refused_by_the_firmware_and_the_server_says_why(sb_lab: NetbootLab) -> None:
    result = sb_lab.boot("uefi-sb", UNSIGNED_MAC, expect=r"Access Denied", fail=None, timeout=SB_BOOT_TIMEOUT)
    log = sb_lab.server_log()
    assert result.ok, result.describe() + "\n---- server log ----\n" + log[-4000:]
    assert "path=efi64/syslinux.efi" in log
    found = diagnosis(sb_lab, UNSIGNED_MAC)
    assert found.get("cause") == "loader-rejected", log[-4000:]
    assert f"nodes.{dev(UNSIGNED_MAC)}.secure_boot: true" in found["fix"]


def test_local_boot_from_grub_starts_the_disk_s_own_shim_with_secure_boot_still_on(
    sb_lab: NetbootLab,
) -> None:
    # the disk of an installed machine: its ESP with Debian's signed shim and GRUB and a GRUB config that
    # starts the signed kernel with a command line the network never sent
    kernel = sb_lab.kernel
    grub_cfg = (
        f"set timeout=0\nlinux /vmlinuz {SB_CMDLINE.replace(';', '')} pxh.disk=own\ninitrd /initrd.gz\nboot\n"
    ).encode()
    disk = build_esp_disk(
        sb_lab.workdir / "installed-disk.img",
        {
            "EFI/BOOT/BOOTX64.EFI": SHIM.read_bytes(),
            "EFI/BOOT/grubx64.efi": LOCAL_GRUB.read_bytes(),
            "EFI/BOOT/grub.cfg": grub_cfg,
            "EFI/debian/grub.cfg": grub_cfg,
            "vmlinuz": kernel.vmlinuz.read_bytes(),
            "initrd.gz": (sb_lab.httproot / "boot" / "sb-initrd.gz").read_bytes(),
        },
    )
    result = sb_lab.boot(
        "uefi-sb",
        LOCAL_MAC,
        expect=re.escape(CMDLINE_MARKER) + r" .*pxh\.disk=own.*\n",
        fail=SB_FAIL,
        timeout=SB_BOOT_TIMEOUT,
        disk=disk,
    )
    log = sb_lab.server_log()
    assert result.ok, result.describe() + "\n---- server log ----\n" + log[-6000:]
    assert re.search(r"booting from the\s+local disk", result.serial)  # our GRUB config said so, then chained
    assert re.search(re.escape(SECURE_BOOT_MARKER) + r" 1\b", result.serial), result.tail()
    assert "PXH-LOCKDOWN: none [integrity] confidentiality" in result.serial
    assert f"path=grub/mac/{LOCAL_MAC}.cfg" in log
    assert f"tftp.rrq {dev(LOCAL_MAC)}" in log and "path=grub/http/" not in _lines_of(log, dev(LOCAL_MAC))


def _lines_of(log: str, device_id: str) -> str:
    return "\n".join(line for line in log.splitlines() if f" {device_id} " in line)
