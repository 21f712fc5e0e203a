"""A tgt iSCSI target (Debian's ``tgtd``) inside a lab namespace, with its own control port.

Lab plumbing for tests that need a target before the server exports one itself: one target per call of
``export`` with LUN 1 on a disk file and a name ACL for one initiator.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from tests.lab.netns import TestLan, stop_process

CONTROL_PORT = 47  # not 0: never talk to a system tgt


def tgt_skip_reason() -> str | None:
    if shutil.which("tgtd") is None or shutil.which("tgtadm") is None:
        return "needs Debian's tgt (tgtd, tgtadm)"
    return None


class LabTarget:
    def __init__(self, lan: TestLan, host: str, log: Path) -> None:
        self.lan, self.host = lan, host
        address = lan.ip(host)
        self._log = log.open("wb")
        self.proc = lan.popen(
            host,
            ["tgtd", "-f", "-C", str(CONTROL_PORT), "--iscsi", f"portal={address}:3260"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        lan.wait_port(host, "tcp", 3260, timeout=15)
        self._tid = 0

    def adm(self, *args: str) -> None:
        self.lan.run(self.host, ["tgtadm", "-C", str(CONTROL_PORT), "--lld", "iscsi", *args], check=True)

    def export(self, iqn: str, disk: Path, initiator: str) -> None:
        self._tid += 1
        tid = str(self._tid)
        self.adm("--op", "new", "--mode", "target", "--tid", tid, "-T", iqn)
        self.adm("--op", "new", "--mode", "logicalunit", "--tid", tid, "--lun", "1", "-b", str(disk))
        self.adm("--op", "bind", "--mode", "target", "--tid", tid, "-Q", initiator)

    def close(self) -> None:
        stop_process(self.proc)
        self._log.close()
        time.sleep(0.2)
