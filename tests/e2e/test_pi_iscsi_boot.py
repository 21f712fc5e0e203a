"""End to end: a Raspberry Pi node's diskless boot on an arm64 QEMU ``virt`` machine.

A scripted Pi 4 fetches its files over TFTP from the real ``serve`` (config.txt, cmdline.txt, then the kernel
and initramfs config.txt names); QEMU boots exactly those bytes with that command line (no QEMU model boots
from the network like a Pi's EEPROM). The image's initramfs-tools runs the appended open-iscsi script, the
image's ``iscsistart`` logs into the node's disk, which serve exports with its own tgtd, the root partition is mounted by UUID, the root's
init writes a file and powers off; the second boot finds the file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pypxe_homelab.assets.pi_images import parse_config_txt
from pypxe_homelab.iscsi.naming import target_iqn
from tests.conftest import lab_skip_reason
from tests.lab.netns import TestLan, stop_process
from tests.lab.pi_image import ROOT_UUID, build_pi_image
from tests.lab.qemu import clean_serial
from tests.lab.serverproc import REPO, ServerProcess, base_config

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(lab_skip_reason() is not None, reason=lab_skip_reason() or ""),
    pytest.mark.skipif(shutil.which("tgtd") is None, reason="needs Debian's tgt (tgtd)"),
    pytest.mark.skipif(shutil.which("qemu-system-aarch64") is None, reason="needs qemu-system-arm"),
    pytest.mark.skipif(not Path("/usr/lib/PXELINUX/lpxelinux.0").exists(), reason="needs Debian's pxelinux"),
]

SERIAL = "1e2d3c4b"  # the scripted Pi 4's option 97 serial
PI_MAC = "dc:a6:32:01:36:c2"
BOOT_TIMEOUT = 420.0
VM_CONSOLE = "console=ttyAMA0 panic=-1"  # the virt machine's UART; a Pi's is serial0


def fetch_boot_files(lan: TestLan, server_ip: str, dest: Path) -> dict[str, Path]:
    """The scripted Pi's TFTP part: config.txt and cmdline.txt, then the kernel and initramfs config.txt names."""
    code = f"""
        import json, sys
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from pypxe_homelab.assets.pi_images import parse_config_txt
        from tests.lab.tftpclient import TftpTestClient
        dest = Path({str(dest)!r})
        got = {{}}
        with TftpTestClient({server_ip!r}) as c:
            def get(name):
                r = c.get({SERIAL!r} + "/" + name, blksize=1024, tsize=True)
                assert r.ok, (name, r.as_json())
                (dest / name).write_bytes(r.data)
                got[name] = str(dest / name)
                return r.data
            for name in ("start4.elf", "fixup4.dat", "config.txt"):
                get(name)
            kernel, initramfs = parse_config_txt((dest / "config.txt").read_text())
            for name in ("cmdline.txt", kernel, initramfs):
                get(name)
        print(json.dumps(got))
    """
    result = lan.run("client", [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return {name: Path(p) for name, p in json.loads(result.stdout).items()}


def boot_vm(lan: TestLan, tap: str, files: dict[str, Path], work: Path, n: int) -> str:
    kernel, initramfs = parse_config_txt(files["config.txt"].read_text())
    append = files["cmdline.txt"].read_text().strip() + " " + VM_CONSOLE
    serial = work / f"pi-boot{n}.serial.log"
    serial.write_bytes(b"")
    cmd = [
        "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a57", "-accel", "tcg", "-m", "1024", "-smp", "1",
        "-nographic", "-monitor", "none", "-serial", f"file:{serial}", "-no-reboot",
        "-netdev", f"tap,id=lan0,ifname={tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=lan0,mac={PI_MAC},romfile=",
        "-kernel", str(files[kernel]), "-initrd", str(files[initramfs]), "-append", append,
    ]  # fmt: skip
    with (work / f"pi-boot{n}.qemu.log").open("wb") as log:
        proc = lan.popen(lan.bridge_ns, cmd, stdout=log, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < BOOT_TIMEOUT and proc.poll() is None:
            text = clean_serial(serial.read_bytes())
            if "Kernel panic" in text or "Dropping to a shell" in text:
                break
            time.sleep(1)
    finally:
        stop_process(proc, grace=10)
    return clean_serial(serial.read_bytes())


def test_pi_boots_diskless_from_its_iscsi_disk_and_keeps_its_data(tmp_path: Path) -> None:
    image = build_pi_image()
    root = tmp_path / "root"
    with TestLan(["server", "client"]) as lan:
        nodes = f'"{SERIAL}":\n  address: {lan.prefix}.60/24\n  hostname: pi01\n  os: pi-test\n'
        config = tmp_path / "config.yaml"
        config.write_text(base_config(lan, root, nodes=nodes))
        server = ServerProcess(lan, config)
        server.cli("bootfiles", "install")
        server.cli("images", "add", str(image.path), "--name", "pi-test")
        with server.running():  # serve exports the node's disk (iscsiroot/<serial>.img) with its own tgtd
            server.wait_log(f"exporting {SERIAL}", timeout=60)
            fetched = tmp_path / "fetched"
            fetched.mkdir()
            os.chmod(fetched, 0o777)
            files = fetch_boot_files(lan, lan.ip("server"), fetched)
            words = files["cmdline.txt"].read_text().split()
            assert f"root=UUID={ROOT_UUID}" in words and f"ISCSI_TARGET_NAME={target_iqn(SERIAL)}" in words
            tap = lan.add_tap("pi")
            first = boot_vm(lan, tap, files, tmp_path, 1)
            assert "iscsistart: Logging into " + target_iqn(SERIAL) in first, first[-3000:]
            assert re.search(r"PI-ROOT: root is /dev/sd[a-z]2 / ext4 rw", first), first[-3000:]
            assert "PI-ROOT: no mark yet" in first, first[-3000:]
            second = boot_vm(lan, tap, files, tmp_path, 2)
            assert "PI-ROOT: mark found: written on boot" in second, second[-3000:]
