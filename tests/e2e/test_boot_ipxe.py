"""UEFI firmware PXE → iPXE's snponly.efi over TFTP → its own DHCP gets the script URL → kernel over HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import NODE_CMDLINE, UEFI_MAC, NetbootLab, default_config
from tests.lab.mkinitrd import CMDLINE_MARKER

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/usr/lib/ipxe/snponly.efi").exists(), reason="needs Debian's ipxe"),
]

UEFI_ID = "01-" + UEFI_MAC.replace(":", "-")
IPXE_BOOT_TIMEOUT = 240.0  # iPXE waits ~13 s for IPv6 router advertisements before its DHCP


@pytest.fixture(scope="module")
def ipxe_lab(netboot_lab: NetbootLab) -> Iterator[NetbootLab]:
    """The lab's server with ``server.loaders.efi64: snponly.efi``; the default config is restored after."""
    text = default_config(netboot_lab)
    ipxe = text.replace("  http_port:", "  loaders: {efi64: snponly.efi}\n  http_port:", 1)
    assert ipxe != text
    try:
        netboot_lab.write_config(ipxe)
        netboot_lab.install_bootfiles()
        netboot_lab.restart_server()
        yield netboot_lab
    finally:
        netboot_lab.write_config(text)
        netboot_lab.restart_server()


def test_uefi_pxe_chains_snponly_which_boots_the_node_from_its_script(ipxe_lab: NetbootLab) -> None:
    assert (ipxe_lab.tftproot / "snponly.efi").is_file()
    result = ipxe_lab.boot(
        "uefi", UEFI_MAC, expect=re.escape(CMDLINE_MARKER) + r" .*\n", timeout=IPXE_BOOT_TIMEOUT
    )
    log = ipxe_lab.server_log()
    assert result.ok, result.describe() + "\n---- server log ----\n" + log[-4000:]
    m = re.search(re.escape(CMDLINE_MARKER) + r" (.*)", result.serial)
    assert m, "the initrd did not print its kernel command line"
    cmdline = m.group(1).strip()
    assert NODE_CMDLINE in cmdline and "initrd=initrd0" in cmdline
    # the firmware got the iPXE binary, iPXE got the script: no chain-load loop
    script = f"http://{ipxe_lab.server_ip}:{ipxe_lab.http_port}/{UEFI_ID}/boot.ipxe"
    assert "file=snponly.efi" in log and f"tftp.done {UEFI_ID}" in log
    assert f"dhcp.offer {UEFI_ID}" in log and f"file={script}" in log
    assert f"http.done {UEFI_ID}" in log and f"path=/{UEFI_ID}/boot.ipxe" in log
    assert "path=/boot/linux" in log and "path=/boot/initrd.gz" in log
    assert log.count("path=snponly.efi") <= 4  # rrq + done (+ the firmware's size probe), once
    assert UEFI_MAC in ipxe_lab.router.leases()
