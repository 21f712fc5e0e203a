"""A real iSCSI initiator for the lab: QEMU's libiscsi through ``qemu-img`` and ``qemu-io``, run inside a
host of a TestLan."""

from __future__ import annotations

import json
import shutil
import subprocess

from tests.lab.netns import TestLan

TOOLS = ("qemu-img", "qemu-io", "iscsi-inq")


def missing_tools() -> list[str]:
    """The initiator tools not installed here (Debian: qemu-utils, qemu-block-extra, libiscsi-bin)."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def image_opts(portal: str, iqn: str, initiator: str) -> str:
    """The ``--image-opts`` text of LUN 1 of ``iqn`` at ``portal`` (``ADDR:PORT``)."""
    return f"driver=iscsi,transport=tcp,portal={portal},target={iqn},lun=1,initiator-name={initiator}"


def disk_info(lan: TestLan, host: str, portal: str, iqn: str, initiator: str) -> dict | None:
    """``qemu-img info`` of the disk as JSON, or None when the login is refused."""
    result = lan.run(
        host,
        ["qemu-img", "info", "--output=json", "--image-opts", image_opts(portal, iqn, initiator)],
        timeout=60,
    )
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)


def qemu_io(
    lan: TestLan, host: str, portal: str, iqn: str, initiator: str, command: str
) -> subprocess.CompletedProcess:
    """Run one qemu-io command (``write -P 0xab 0 1M``, ``read -P 0xab 0 1M``) on the disk."""
    return lan.run(
        host,
        ["qemu-io", "--image-opts", image_opts(portal, iqn, initiator), "-c", command],
        timeout=120,
    )


def pattern_ok(
    lan: TestLan, host: str, portal: str, iqn: str, initiator: str, byte: int, offset: int, length: str
) -> bool:
    """True when ``length`` bytes at ``offset`` all hold ``byte`` (qemu-io ``read -P`` checks them)."""
    result = qemu_io(lan, host, portal, iqn, initiator, f"read -P 0x{byte:02x} {offset} {length}")
    return result.returncode == 0 and "Pattern verification failed" not in result.stdout + result.stderr
