"""The TFTP service on port 69 in one namespace, the scripted client in another, over a 1500-MTU bridge."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lab.netns import TestLan

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
CLIENT = REPO / "tests" / "lab" / "tftpclient.py"
MAC_CONFIG = "pxelinux.cfg/01-52-54-00-a0-00-01"
GENERATED = "DEFAULT install\nLABEL install\n  KERNEL http://10.231.0.3:12345/node01/casper/vmlinuz\n"

# Runs inside the server namespace: the real service, a resolver over a root plus one generated file,
# every event appended to a JSON-lines file.
SERVER = """
import json, pathlib, signal, sys, threading
from pypxe_homelab.rootfiles import static_file
from pypxe_homelab.services.tftp import TftpFile, TftpService

root, events_path, generated = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
out = open(events_path, "a", buffering=1)

def resolve(path, client):
    if path.endswith("pxelinux.cfg/01-52-54-00-a0-00-01"):
        return TftpFile(data=generated)
    found = static_file(root, path)
    return TftpFile(path=found) if found else None

def emit(e):
    out.write(json.dumps({"kind": e.kind, "client": e.client, "device_id": e.device_id, "detail": e.detail}) + "\\n")

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
service = TftpService("0.0.0.0", 69, resolve, emit, mtu=1500)
service.start()
print("ready", flush=True)
stop.wait()
service.stop()
print("stopped", flush=True)
"""

BIND_69 = """
from pypxe_homelab.errors import UserError
from pypxe_homelab.services.tftp import TftpService
try:
    TftpService("0.0.0.0", 69, lambda path, client: None, lambda event: None).start()
except UserError as exc:
    print(exc)
"""


@dataclass
class NetLab:
    lan: TestLan
    root: Path
    events_path: Path
    files: dict[str, bytes]
    server: subprocess.Popen

    def fetch(self, *args: str) -> list[dict]:
        """Run the scripted client in the client namespace; returns its JSON results."""
        res = self.lan.run("client", [sys.executable, str(CLIENT), self.lan.ip("server"), *args], timeout=60)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    def events(self) -> list[dict]:
        text = self.events_path.read_text() if self.events_path.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def wait_events(self, predicate: Callable[[list[dict]], bool], timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()
            if predicate(events):
                return events
            if time.monotonic() > deadline:
                raise AssertionError(f"events never matched: {events}")
            time.sleep(0.05)

    def frag_creates(self) -> int:
        """IPv4 fragments the server namespace has created (must stay 0 with the MTU clamp)."""
        lines = self.lan.run("server", ["cat", "/proc/net/snmp"]).stdout.splitlines()
        ip_lines = [line.split() for line in lines if line.startswith("Ip:")]
        return int(dict(zip(ip_lines[0], ip_lines[1], strict=True))["FragCreates"])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def net(test_lan, tmp_path: Path) -> NetLab:
    lan = test_lan(["server", "client"], mtu=1500)
    root = tmp_path / "tftproot"
    (root / "efi64").mkdir(parents=True)
    files = {
        "lpxelinux.0": os.urandom(43_210),
        "ldlinux.c32": os.urandom(122_880),
        "efi64/syslinux.efi": os.urandom(1_000_001),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    (tmp_path / "secret.txt").write_text("outside the root\n")
    (root / "escape").symlink_to(tmp_path / "secret.txt")
    events_path = tmp_path / "events.jsonl"
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = lan.popen(
            "server",
            [sys.executable, "-c", SERVER, str(root), str(events_path), GENERATED],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", log_path.read_text()
    lan.wait_port("server", "udp", 69)
    return NetLab(lan, root, events_path, files, proc)


@pytest.mark.parametrize("blksize", [1468, 1408, 1024])
def test_fetch_over_the_lan(net: NetLab, blksize: int) -> None:
    frags = net.frag_creates()
    (r,) = net.fetch("--blksize", str(blksize), "--tsize", "efi64/syslinux.efi")
    data = net.files["efi64/syslinux.efi"]
    assert r["ok"] and r["sha256"] == sha(data)
    assert r["oack"] == {"tsize": str(len(data)), "blksize": str(blksize)}
    assert r["max_block"] == blksize
    assert net.frag_creates() == frags
    events = net.wait_events(lambda ev: any(e["kind"] == "tftp.done" for e in ev))
    assert events[0]["client"] == f"{net.lan.ip('client')}:{r['local_port']}"


def test_jumbo_blksize_is_clamped_and_not_fragmented(net: NetLab) -> None:
    frags = net.frag_creates()
    (r,) = net.fetch("--blksize", "9000", "--tsize", "efi64/syslinux.efi")
    assert r["ok"] and r["oack"]["blksize"] == "1468" and r["max_block"] == 1468
    assert r["sha256"] == sha(net.files["efi64/syslinux.efi"])
    assert net.frag_creates() == frags


def test_wrq_refused(net: NetLab) -> None:
    (r,) = net.fetch("--put", "upload.bin")
    assert r["error_code"] == 2
    assert not (net.root / "upload.bin").exists()


@pytest.mark.parametrize("name", ["../etc/passwd", "escape"])
def test_escapes_refused(net: NetLab, name: str) -> None:
    (r,) = net.fetch("--tsize", name)
    assert r["error_code"] == 2 and r["bytes"] == 0


def test_generated_file_with_device_id(net: NetLab) -> None:
    (r,) = net.fetch("--blksize", "1408", "--tsize", "efi64/" + MAC_CONFIG)
    assert r["ok"] and r["sha256"] == sha(GENERATED.encode())
    events = net.wait_events(lambda ev: any(e["kind"] == "tftp.done" for e in ev))
    assert {e["device_id"] for e in events} == {"01-52-54-00-a0-00-01"}


def test_edk2_probe_abort_then_full_fetch(net: NetLab) -> None:
    name = "efi64/syslinux.efi"
    (probe,) = net.fetch("--tsize", "--blksize", "1468", "--windowsize", "4", "--abort-after-oack", name)
    (full,) = net.fetch("--blksize", "1468", "--windowsize", "4", name)
    assert probe["aborted"]
    assert probe["oack"] == {"tsize": str(len(net.files[name])), "blksize": "1468", "windowsize": "4"}
    assert full["ok"] and full["oack"] == {"blksize": "1468", "windowsize": "4"}
    assert full["sha256"] == sha(net.files[name])
    events = net.wait_events(lambda ev: any(e["kind"] == "tftp.done" for e in ev))
    kinds = [e["kind"] for e in events]
    assert kinds == ["tftp.rrq", "tftp.abort", "tftp.rrq", "tftp.done"]
    assert events[1]["detail"]["probe"] is True and events[1]["detail"]["code"] == 8


def test_lpxelinux_style_consecutive_requests_and_config_search(net: NetLab) -> None:
    client_hex = ipaddress.IPv4Address(net.lan.ip("client")).packed.hex().upper()
    names = [
        "lpxelinux.0",
        "ldlinux.c32",
        "pxelinux.cfg/2e1b5c8a-0000-0040-8000-525400a00001",
        f"pxelinux.cfg/{client_hex}",
        f"pxelinux.cfg/{client_hex[:-1]}",
        MAC_CONFIG,
    ]
    results = net.fetch("--blksize", "1408", "--tsize", *names)
    assert len({r["local_port"] for r in results}) == 1
    assert [r["ok"] for r in results] == [True, True, False, False, False, True]
    assert [r["error_code"] for r in results[2:5]] == [1, 1, 1]
    assert results[1]["sha256"] == sha(net.files["ldlinux.c32"])
    events = net.wait_events(lambda ev: sum(e["kind"] == "tftp.done" for e in ev) == 3)
    hints = [e["detail"]["hint"] for e in events if e["kind"] == "tftp.rrq"]
    assert hints[3] == {"source": "pxelinux-ip", "ipv4": net.lan.ip("client")}
    assert hints[2]["uuid"] == "2e1b5c8a-0000-0040-8000-525400a00001"


def test_missing_file_is_answered_fast(net: NetLab) -> None:
    (r,) = net.fetch("--timeout", "5", "no/such/file")
    assert r["error_code"] == 1
    assert r["duration"] < 1.0


def test_garbage_then_a_normal_fetch(net: NetLab) -> None:
    (r,) = net.fetch("--garbage", "0001ff00", "--blksize", "1468", "lpxelinux.0")
    assert r["ok"] and r["sha256"] == sha(net.files["lpxelinux.0"])
    (r2,) = net.fetch("--garbage", "ffffffffffff", "ldlinux.c32")
    assert r2["ok"] and r2["sha256"] == sha(net.files["ldlinux.c32"])


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def test_port_in_use_and_sigterm_shutdown(net: NetLab) -> None:
    second = net.lan.run(
        "server",
        [sys.executable, "-c", BIND_69],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    # the program holding the port is named: the running service's interpreter
    assert second.stdout.strip() == (
        f"TFTP: UDP 0.0.0.0:69 is already in use by {_comm(net.server.pid)} (pid {net.server.pid}); "
        "stop that program (firmware only asks port 69)"
    )
    net.server.terminate()
    out, _ = net.server.communicate(timeout=10)
    log = (net.events_path.parent / "server.log").read_text()
    assert net.server.returncode == 0, log
    assert out.strip() == "stopped"
    assert "Traceback" not in log


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux) to drop a capability")
def test_privileged_port_without_capability_says_so(test_lan) -> None:
    lan = test_lan(["server"])
    res = lan.run(
        "server",
        [
            "setpriv",
            "--bounding-set=-net_bind_service",
            "--inh-caps=-net_bind_service",
            sys.executable,
            "-c",
            BIND_69,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert res.stdout.strip() == (
        "TFTP: binding UDP 0.0.0.0:69 needs root (or CAP_NET_BIND_SERVICE); run as root or use a port above 1023"
    ), res.stderr


@pytest.mark.parametrize(("window", "drop"), [(4, ["3", "9"]), (16, ["16", "17", "200"])])
def test_windowed_fetch_with_lost_blocks_over_the_lan(net: NetLab, window: int, drop: list[str]) -> None:
    name = "efi64/syslinux.efi"
    drops = [arg for block in drop for arg in ("--drop", block)]
    (r,) = net.fetch("--blksize", "1468", "--windowsize", str(window), *drops, name)
    assert r["ok"] and r["windowsize"] == window and sorted(r["dropped"]) == sorted(int(b) for b in drop)
    assert r["sha256"] == sha(net.files[name])
    events = net.wait_events(lambda ev: any(e["kind"] == "tftp.done" for e in ev))
    assert [e["kind"] for e in events] == ["tftp.rrq", "tftp.done"]
