"""Pi node disks over iSCSI: the real `serve` runs its own tgtd in the server namespace; QEMU's libiscsi
(qemu-img, qemu-io) logs in from the client namespace."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pypxe_homelab.iscsi.naming import initiator_name, target_iqn
from pypxe_homelab.iscsi.target import CONTROL_PORT, SOCKET_NAME, socket_owner
from tests.lab.iscsiclient import disk_info, image_opts, missing_tools, pattern_ok, qemu_io
from tests.lab.netns import TestLan, ip_netns_available
from tests.lab.serverproc import REPO, ServerProcess, base_config, http_request

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or not ip_netns_available(), reason="needs root and `ip netns`"),
    pytest.mark.skipif(not Path("/usr/lib/PXELINUX/lpxelinux.0").exists(), reason="needs Debian's pxelinux"),
    pytest.mark.skipif(shutil.which("tgtd") is None, reason="needs tgtd (Debian package tgt)"),
    pytest.mark.skipif(bool(missing_tools()), reason="needs qemu-utils, qemu-block-extra and libiscsi-bin"),
]

MIB = 2**20
SIZE = 64 * MIB
PI_A, PI_B = "aaaa0001", "aaaa0002"
PC = "01-52-54-00-a0-00-01"
IMAGE = "pi-test"


def pi_nodes(prefix: str, serials: tuple[str, ...]) -> str:
    text = f"{PC}:\n  address: {prefix}.50/24\n"
    for n, serial in enumerate(serials):
        text += f"{serial}:\n  address: {prefix}.{60 + n}/24\n  os: {IMAGE}\n"
    return text


def make_pi_image(root: Path) -> Path:
    """A 64 MiB sparse image: 0x5a in its first MiB, 0xa5 in its last, holes between."""
    path = root / "httproot" / "images" / IMAGE / f"{IMAGE}.img"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(SIZE)
        f.write(b"\x5a" * MIB)
        f.seek(SIZE - MIB)
        f.write(b"\xa5" * MIB)
    return path


class PiLab:
    def __init__(self, lan: TestLan, tmp: Path) -> None:
        self.lan = lan
        self.root = tmp / "root"
        self.config = tmp / "config.yaml"
        self.portal = f"{lan.ip('server')}:3260"
        self.write_config((PI_A, PI_B))
        self.server = ServerProcess(lan, self.config)
        self.server.cli("bootfiles", "install")
        self.image = make_pi_image(self.root)

    def write_config(self, serials: tuple[str, ...], extra_server: str = "") -> None:
        self.config.write_text(
            base_config(
                self.lan, self.root, nodes=pi_nodes(self.lan.prefix, serials), extra_server=extra_server
            )
        )

    def start(self, exported: str = PI_B) -> str:
        """Start the server and wait until it exports ``exported``; returns the log of this start."""
        mark = len(self.server.log())
        self.server.start(ports=(("udp", 67), ("udp", 69), ("tcp", 12345), ("tcp", 3260)))
        return self.server.wait_log(f"exporting {exported}", timeout=30, start=mark)[mark:]

    def info(self, serial: str, initiator: str | None = None) -> dict | None:
        return disk_info(
            self.lan, "client", self.portal, target_iqn(serial), initiator or initiator_name(serial)
        )

    def has(self, serial: str, byte: int, offset: int = 0, length: str = "1M") -> bool:
        return pattern_ok(
            self.lan, "client", self.portal, target_iqn(serial), initiator_name(serial), byte, offset, length
        )

    @property
    def control_socket(self) -> Path:
        return self.root / "tgtd" / f"{SOCKET_NAME}.{CONTROL_PORT}"


@pytest.fixture
def pilab(tmp_path: Path):
    with TestLan(["server", "client"]) as lan:
        lab = PiLab(lan, tmp_path)
        try:
            yield lab
        finally:
            lab.server.stop()


def test_each_pi_logs_into_its_own_disk_only_and_data_survives_a_restart(pilab: PiLab) -> None:
    log = pilab.start()
    assert f"iSCSI: tgtd listening on {pilab.portal}" in log
    disk_a = pilab.root / "iscsiroot" / f"{PI_A}.img"
    assert disk_a.stat().st_size == SIZE and disk_a.stat().st_blocks * 512 < 8 * MIB  # sparse copy

    # the node's initiator name sees a disk of the image's size
    info = pilab.info(PI_A)
    assert info is not None and info["virtual-size"] == SIZE
    # any other name, including the other Pi's, is refused
    assert pilab.info(PI_A, "iqn.2024-01.org.example:intruder") is None
    assert pilab.info(PI_A, initiator_name(PI_B)) is None
    # discovery shows a name only the targets it may open
    listed = pilab.lan.run(
        "client", ["iscsi-ls", "-i", initiator_name(PI_A), f"iscsi://{pilab.portal}"]
    ).stdout
    assert target_iqn(PI_A) in listed and target_iqn(PI_B) not in listed
    # tgtd listens on the served address only
    listening = pilab.lan.run("server", ["ss", "-Htln", "sport = :3260"]).stdout.split()
    assert f"{pilab.portal}" in listening and "0.0.0.0:3260" not in listening

    # two disks, separate: a write through A leaves B as the image made it
    assert pilab.has(PI_A, 0x5A) and pilab.has(PI_B, 0x5A)
    write = qemu_io(
        pilab.lan, "client", pilab.portal, target_iqn(PI_A), initiator_name(PI_A), "write -P 0xab 0 1M"
    )
    assert write.returncode == 0, write.stdout + write.stderr
    assert pilab.has(PI_A, 0xAB) and pilab.has(PI_B, 0x5A)
    assert pilab.has(PI_A, 0xA5, SIZE - MIB)

    # a restart keeps the disk: tgtd is stopped with the server and started again on the same file
    assert pilab.server.stop() == 0
    assert socket_owner(pilab.control_socket) is None, "tgtd outlived the server"
    with open(disk_a, "rb") as f:
        assert f.read(MIB) == b"\xab" * MIB
    log = pilab.start()
    assert f"created the disk of {PI_A}" not in log  # made on first use only
    assert pilab.has(PI_A, 0xAB) and pilab.has(PI_B, 0x5A)


def test_a_node_removed_or_added_while_serving_is_withdrawn_or_exported_live(pilab: PiLab) -> None:
    pilab.write_config((PI_A,))
    pilab.start(exported=PI_A)
    assert pilab.info(PI_B) is None
    mark = len(pilab.server.log())
    pilab.write_config((PI_A, PI_B))
    pilab.server.wait_log(f"exporting {PI_B}", timeout=30, start=mark)
    assert pilab.info(PI_B) is not None

    mark = len(pilab.server.log())
    pilab.write_config((PI_B,))
    pilab.server.wait_log(f"withdrew {target_iqn(PI_A)}", timeout=30, start=mark)
    assert pilab.info(PI_A) is None
    assert pilab.info(PI_B) is not None
    assert (pilab.root / "iscsiroot" / f"{PI_A}.img").exists()  # its disk is kept


def test_reinstall_recreates_the_disk_and_the_server_reopens_it(pilab: PiLab) -> None:
    pilab.start()
    qemu_io(pilab.lan, "client", pilab.portal, target_iqn(PI_A), initiator_name(PI_A), "write -P 0xab 0 1M")
    assert pilab.has(PI_A, 0xAB)
    refused = pilab.lan.run(
        "server",
        [sys.executable, "-m", "pypxe_homelab", "--config", str(pilab.config), "reinstall", PI_A],
        input="n\n",
        cwd=REPO,
    )
    assert "This erases the disk of aaaa0001" in refused.stdout and refused.returncode != 0
    assert pilab.has(PI_A, 0xAB)
    mark = len(pilab.server.log())
    done = pilab.server.cli("reinstall", PI_A, "--yes")
    assert f"{PI_A}: disk made again" in done.stdout
    pilab.server.wait_log(f"exporting {PI_A}", timeout=30, start=mark)
    assert pilab.has(PI_A, 0x5A)


def test_a_killed_server_leaves_no_tgtd_and_a_new_one_starts_cleanly(pilab: PiLab) -> None:
    pilab.start()
    tgtd = socket_owner(pilab.control_socket)
    assert tgtd is not None
    proc = pilab.server.proc
    assert proc is not None
    os.killpg(proc.pid, signal.SIGKILL)  # the ip-netns-exec wrapper, the server and all in its group
    proc.wait(10)
    pilab.server.proc = None
    deadline = time.monotonic() + 10
    while Path(f"/proc/{tgtd}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{tgtd}").exists(), "tgtd outlived a killed server"
    pilab.start()
    assert pilab.info(PI_A) is not None


def test_server_sigkill_alone_takes_tgtd_with_it(pilab: PiLab) -> None:
    """Only the server process is killed (not its group): the parent-death signal stops tgtd."""
    pilab.start()
    tgtd = socket_owner(pilab.control_socket)
    assert tgtd is not None
    server_pid = int(Path(f"/proc/{tgtd}/stat").read_text().rsplit(")", 1)[1].split()[1])
    os.kill(server_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{tgtd}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{tgtd}").exists(), "tgtd outlived a killed server"


def test_port_3260_taken_is_one_line_and_the_pcs_keep_booting(pilab: PiLab) -> None:
    server_ip = pilab.lan.ip("server")
    holder = pilab.lan.popen(
        "server",
        [
            sys.executable,
            "-c",
            f"import socket,time; s=socket.socket(); s.bind(({server_ip!r}, 3260)); s.listen(); time.sleep(300)",
        ],
    )
    pilab.lan.wait_port("server", "tcp", 3260)
    pilab.server.start()
    log = pilab.server.wait_log("iSCSI: TCP", timeout=30)
    [line] = [line for line in log.splitlines() if "iSCSI: TCP" in line]
    assert f"{server_ip}:3260 is taken by another program" in line and "systemctl disable --now tgt" in line
    assert socket_owner(pilab.control_socket) is None  # no tgtd left behind
    assert http_request(pilab.lan, "client", f"http://{server_ip}:12345/")["status"] == 200  # still serving
    # freed, a reload exports the disks
    holder.kill()
    holder.wait()
    mark = len(pilab.server.log())
    pilab.write_config((PI_A, PI_B), extra_server="menu_timeout: 5")
    pilab.server.wait_log(f"exporting {PI_B}", timeout=30, start=mark)
    assert pilab.info(PI_A) is not None


def test_without_pi_nodes_tgtd_is_never_started(pilab: PiLab) -> None:
    pilab.write_config(())
    pilab.server.start()
    pilab.server.wait_log("node(s)")
    time.sleep(1)
    assert "iSCSI" not in pilab.server.log()
    assert not pilab.control_socket.exists()


def test_a_login_and_logout_show_in_the_nodes_timeline(pilab: PiLab) -> None:
    pilab.start()
    session = pilab.lan.popen(
        "client",
        [
            "qemu-io",
            "--image-opts",
            image_opts(pilab.portal, target_iqn(PI_A), initiator_name(PI_A)),
            "-c",
            "sleep 5000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://{pilab.lan.ip('server')}:12345/api/nodes/{PI_A}/events"

    def kinds() -> list[dict]:
        body = http_request(pilab.lan, "client", url)
        assert body["status"] == 200, body
        return [e for e in json.loads(body["text"])["events"] if e["kind"].startswith("iscsi.")]

    deadline = time.monotonic() + 20
    while not kinds() and time.monotonic() < deadline:
        time.sleep(0.5)
    [login] = kinds()
    assert login["kind"] == "iscsi.login"
    assert login["detail"]["initiator"] == initiator_name(PI_A)
    assert login["detail"]["target"] == target_iqn(PI_A)
    assert login["detail"]["address"] == pilab.lan.ip("client")
    session.wait(30)
    deadline = time.monotonic() + 20
    while len(kinds()) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [e["kind"] for e in kinds()] == ["iscsi.login", "iscsi.logout"]


def test_a_tgtd_that_dies_is_started_again_with_the_same_disks(pilab: PiLab) -> None:
    pilab.start()
    qemu_io(pilab.lan, "client", pilab.portal, target_iqn(PI_A), initiator_name(PI_A), "write -P 0xcd 0 1M")
    tgtd = socket_owner(pilab.control_socket)
    assert tgtd is not None
    mark = len(pilab.server.log())
    os.kill(tgtd, signal.SIGKILL)
    pilab.server.wait_log("tgtd exited", timeout=20, start=mark)
    pilab.server.wait_log(f"exporting {PI_B}", timeout=20, start=mark)
    assert socket_owner(pilab.control_socket) not in (None, tgtd)
    assert pilab.has(PI_A, 0xCD) and pilab.has(PI_B, 0x5A)
