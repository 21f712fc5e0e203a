"""A new user's first run: no config file at all, `bootfiles install` then `serve` on the embedded default.

The server's default data root (/var/lib/pypxe-homelab) is kept off the host: the server runs in a private
mount namespace with a tmpfs over /var/lib, inside a network namespace with a default route of its own. The
system user it creates for itself goes into a copy of /etc mounted over /etc in that namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.install import Installed, shared_tempdir
from tests.lab.netns import TestLan, ip_netns_available
from tests.lab.serverproc import REPO, tftp_get

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or not ip_netns_available(), reason="needs root and `ip netns`"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)"),
    pytest.mark.skipif(not Path("/usr/lib/PXELINUX/lpxelinux.0").exists(), reason="needs Debian's pxelinux"),
]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder every user can search (the server reads config.yaml there as its service user)."""
    path = shared_tempdir("pxh-first-run-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_first_run_without_a_config_file(
    tmp_path: Path, shared_dir: Path, installed_program: Installed
) -> None:
    missing = shared_dir / "no-such-dir" / "config.yaml"
    cli = f"{installed_program.command} --config {missing}"  # installed as the README says
    private = f"cp -a /etc {tmp_path}/etc && {{ sed -i '/^pypxe-homelab:/d' {tmp_path}/etc/passwd {tmp_path}/etc/group {tmp_path}/etc/shadow {tmp_path}/etc/gshadow 2>/dev/null || true; }} && mount --bind {tmp_path}/etc /etc && mount -t tmpfs tmpfs /var/lib"
    script = f"{private} && {cli} bootfiles install && exec {cli} serve"
    log_path = tmp_path / "serve.log"
    existed = Path("/var/lib/pypxe-homelab").exists()
    with TestLan(["server", "client"]) as lan:
        lan.run("server", ["ip", "route", "add", "default", "via", f"{lan.prefix}.1"])
        with open(log_path, "w") as log:
            proc = lan.popen(
                "server",
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        try:
            lan.wait_port("server", "udp", 67, timeout=30)
            lan.wait_port("server", "tcp", 12345, timeout=30)
            text = log_path.read_text()
            assert "running on the embedded default" in text
            assert f"serving eth0: {lan.ip('server')}" in text and "0 node(s)" in text
            assert "created the system user pypxe-homelab" in text
            assert "running as user pypxe-homelab with no capabilities" in text
            device_id = "01-52-54-00-a0-00-21"
            offers = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    lan.ns("client"),
                    sys.executable,
                    "-m",
                    "tests.lab.pxeclient",
                    "discover",
                    "--profile",
                    "edk2",
                    "--mac",
                    "52:54:00:a0:00:21",
                    "--iface",
                    "eth0",
                ],
                capture_output=True,
                text=True,
                cwd=REPO,
                timeout=60,
                check=True,
            )
            assert any(o["message_type"] == 2 for o in json.loads(offers.stdout))
            [cfg] = tftp_get(lan, "client", lan.ip("server"), [f"efi64/pxelinux.cfg/{device_id}"])
            assert (
                cfg["ok"] and f"pypxe-homelab add {device_id}" in cfg["text"] and "LOCALBOOT" in cfg["text"]
            )
            probe = lan.run("server", [*cli.split(), "probe", "--once", "--json"], cwd=REPO)
            assert probe.returncode == 0, probe.stderr
            assert device_id in {d["device_id"] for d in json.loads(probe.stdout)}
            # registering it creates the config file; the running server picks it up by itself
            added = lan.run(
                "server", [*cli.split(), "add", device_id, "--node-address", f"{lan.prefix}.80/24"]
            )
            assert added.returncode == 0, added.stderr
            assert (
                "Its next network boot erases its disk (storage layout direct) and installs ubuntu-24.04"
                in (added.stdout)
            )
            assert "`pypxe-homelab images fetch ubuntu-24.04`" in added.stdout
            assert missing.exists() and device_id in missing.read_text()
            deadline = time.monotonic() + 10
            while f"node added: {device_id}" not in log_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert f"node added: {device_id}" in log_path.read_text()
            [cfg] = tftp_get(lan, "client", lan.ip("server"), [f"efi64/pxelinux.cfg/{device_id}"])
            assert "image ubuntu-24.04 is not fetched yet" in cfg["text"] and "LOCALBOOT" in cfg["text"]
        finally:
            proc.terminate()
            proc.wait(15)
    assert Path("/var/lib/pypxe-homelab").exists() == existed  # the host's /var/lib was never written
