"""A boot storm against the real `serve`: 1,000 distinct PXE clients within a second, with ordinary DHCP
traffic flooding the LAN meanwhile; every PXE client is answered and recorded, no ordinary packet answered."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.lab.netns import TestLan, ip_netns_available
from tests.lab.serverproc import REPO, ServerProcess, base_config

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or not ip_netns_available(), reason="needs root and `ip netns`"),
    pytest.mark.skipif(not Path("/usr/lib/PXELINUX/lpxelinux.0").exists(), reason="needs Debian's pxelinux"),
]

PACKETS = {
    p["name"]: p["payload"]
    for p in json.loads((REPO / "tests" / "fixtures" / "dhcp" / "captured.json").read_text())["packets"]
}


def test_a_storm_is_all_answered_and_all_recorded(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with TestLan(["server", "client"]) as lan:
        config = tmp_path / "config.yaml"
        config.write_text(base_config(lan, root))
        server = ServerProcess(lan, config)
        server.cli("bootfiles", "install")
        with server.running():
            load = [sys.executable, str(REPO / "bench" / "dhcp_load.py"), "eth0", PACKETS["bios_ipxe_discover"],
                    "storm", "1000", "1.0", PACKETS["syslinux_efi_discover"], "2000", "1.5"]  # fmt: skip
            res = lan.run("client", load, cwd=REPO, timeout=120)
            assert res.returncode == 0, res.stderr
            result = json.loads(res.stdout)
        db = sqlite3.connect(root / "state.db")
        pxe = db.execute("SELECT count(*) FROM devices WHERE mac LIKE '52:54:02:%'").fetchone()[0]
        flood = db.execute("SELECT count(*) FROM devices WHERE mac LIKE '52:54:03:%'").fetchone()[0]
        offers = db.execute(
            "SELECT count(DISTINCT device_id) FROM events WHERE kind = 'dhcp.offer'"
        ).fetchone()[0]
    assert result["answered"] == 1000 and result["lost"] == 0, result
    assert result["flood_sent"] == 3000 and result["flood_replies"] == 0, result
    assert pxe == 1000 and offers == 1000 and flood == 0
