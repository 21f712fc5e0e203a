"""Real firmware network-boots the node's kernel through the server, on a LAN whose router hands out addresses."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import BIOS_MAC, NODE_CMDLINE, UEFI_MAC
from tests.lab.mkinitrd import CMDLINE_MARKER

pytestmark = pytest.mark.e2e


def kernel_cmdline(serial: str) -> str:
    """The /proc/cmdline the booted initrd printed."""
    m = re.search(re.escape(CMDLINE_MARKER) + r" (.*)", serial)
    assert m, "the initrd did not print its kernel command line"
    return m.group(1).strip()


@pytest.mark.parametrize(("firmware", "mac"), [("bios", BIOS_MAC), ("uefi", UEFI_MAC)])
def test_known_node_boots_its_kernel_with_its_cmdline(netboot_lab, firmware, mac):
    # wait for the whole command-line line: the VM is stopped as soon as `expect` matches
    result = netboot_lab.boot(firmware, mac, expect=re.escape(CMDLINE_MARKER) + r" .*\n")

    assert result.ok, result.describe() + "\n---- server log ----\n" + netboot_lab.server_log()[-4000:]
    assert NODE_CMDLINE in kernel_cmdline(result.serial)
    # the address came from the home router; the server only added the boot information
    assert mac in netboot_lab.router.leases()
