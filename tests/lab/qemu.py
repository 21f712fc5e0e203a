"""Boot QEMU virtual machines with real firmware on a TestLan tap.

``bios``: SeaBIOS + the e1000 NIC's iPXE option ROM (the PXE client is iPXE).
``uefi``: OVMF (q35, OVMF_CODE_4M.fd + a private copy of OVMF_VARS_4M.fd) with a
virtio-net NIC without option ROM, so EDK2's own network stack does the PXE boot.
``uefi-sb``: the same with Secure Boot enforced: OVMF_CODE_4M.ms.fd (SMM) + a private copy of
OVMF_VARS_4M.ms.fd (Microsoft keys enrolled), q35 with SMM on and the flash locked to SMM.

A :class:`VirtualMachine` is a disk-less machine with a fixed MAC, SMBIOS UUID,
tap and (UEFI) NVRAM file; calling :meth:`VirtualMachine.boot` again boots the
same machine again.  Every boot runs under TCG with ``-no-reboot`` and ends with
QEMU stopped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab.netns import TestLan, stop_process

QEMU = "qemu-system-x86_64"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
OVMF_CODE_SB = Path("/usr/share/OVMF/OVMF_CODE_4M.ms.fd")
OVMF_VARS_SB = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
IPXE_E1000_ROM = Path("/usr/lib/ipxe/qemu/efi-e1000.rom")
FIRMWARES = ("bios", "uefi", "uefi-sb", "arm64")
QEMU_ARM64 = "qemu-system-aarch64"
AAVMF_CODE = Path("/usr/share/AAVMF/AAVMF_CODE.fd")
AAVMF_VARS = Path("/usr/share/AAVMF/AAVMF_VARS.fd")
UEFI_FIRMWARES = ("uefi", "uefi-sb")
# firmware → (code, vars template)
OVMF_FILES = {
    "uefi": (OVMF_CODE, OVMF_VARS),
    "uefi-sb": (OVMF_CODE_SB, OVMF_VARS_SB),
    "arm64": (AAVMF_CODE, AAVMF_VARS),
}

DEFAULT_EXPECT = r"PXH-USERSPACE-OK"
DEFAULT_FAIL = (
    r"Kernel panic|No bootable device|Boot failed: not a bootable|UEFI Interactive Shell|Shell> "
    r"|No more network devices|BdsDxe: No bootable option|PXE-E\d\d"
)

# Boot stages, timed by their first appearance on the serial console.
STAGES: dict[str, list[tuple[str, str | None]]] = {
    "bios": [
        ("console", None),
        ("firmware", r"SeaBIOS \(version"),
        ("pxe_start", r"iPXE initialising|Configuring \(net0|Booting from ROM"),
        ("dhcp_done", r"net0: \d+\.\d+\.\d+\.\d+/|Next server:|Filename:"),
        ("nbp_running", r"PXELINUX \d|SYSLINUX \d|iPXE .*script"),
        ("linux_version", r"Linux version \d"),
        ("run_init", r"Run /init as init process"),
        ("userspace", DEFAULT_EXPECT),
    ],
    "uefi": [
        ("console", None),
        ("pxe_start", r"Start PXE over IPv4|iPXE initialising|Configuring \(net0"),
        ("dhcp_done", r"Station IP address is|net0: \d+\.\d+\.\d+\.\d+/"),
        ("nbp_download", r"Downloading NBP file|Filename:"),
        ("nbp_running", r"NBP file downloaded successfully|SYSLINUX \d|Welcome to GRUB"),
        ("linux_version", r"Linux version \d"),
        ("run_init", r"Run /init as init process"),
        ("userspace", DEFAULT_EXPECT),
    ],
}
STAGES["arm64"] = STAGES["uefi"]
STAGES["uefi-sb"] = [
    *STAGES["uefi"][:4],
    ("nbp_running", r"NBP file downloaded successfully"),
    ("grub", r"Welcome to GRUB|GNU GRUB|pypxe-homelab:"),
    *STAGES["uefi"][5:],
]

_ANSI = re.compile(r"\x1b(\[[0-9;?=]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>78cM])")


def clean_serial(raw: bytes) -> str:
    """Serial console bytes as text: ANSI escapes, NULs and carriage returns removed."""
    text = _ANSI.sub("", raw.decode("utf-8", "replace"))
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def uuid_of_mac(mac: str) -> str:
    """The fixed SMBIOS UUID of the lab machine with *mac* (stable across boots and runs)."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, "pypxe-homelab-test-vm:" + mac.lower()))


def qemu_skip_reason(firmware: str = "bios") -> str | None:
    """Why a *firmware* VM cannot boot here (missing package), or None."""
    if not shutil.which(QEMU):
        return f"{QEMU} not found: install qemu-system-x86"
    if firmware == "bios" and not IPXE_E1000_ROM.exists():
        return f"{IPXE_E1000_ROM} not found: install ipxe-qemu"
    if firmware in OVMF_FILES and not all(p.exists() for p in OVMF_FILES[firmware]):
        return f"{OVMF_FILES[firmware][0]} not found: install ovmf"
    return None


@dataclass(frozen=True)
class DirectBoot:
    """Boot a kernel + initrd handed to QEMU directly instead of from the network."""

    kernel: Path
    initrd: Path
    append: str = "console=ttyS0,115200 panic=-1"


@dataclass
class BootResult:
    """How one boot ended: reason is 'expect', 'fail', 'exited' or 'timeout'."""

    firmware: str
    mac: str
    reason: str
    matched: str | None
    serial: str
    stages: dict[str, float]
    elapsed: float
    serial_path: Path
    returncode: int | None
    cmd: list[str] = field(repr=False)

    @property
    def ok(self) -> bool:
        """True when the expect regex matched."""
        return self.reason == "expect"

    def tail(self, lines: int = 40) -> str:
        """The last non-empty serial lines (for assertion messages)."""
        kept = [line for line in self.serial.splitlines() if line.strip()]
        return "\n".join(line[:200] for line in kept[-lines:])

    def summary(self) -> str:
        """One line: outcome, time and stage timings."""
        stages = " ".join(f"{k}={v:.1f}" for k, v in self.stages.items())
        return f"{self.firmware} {self.mac}: {self.reason} ({self.matched!r}) after {self.elapsed:.1f}s [{stages}]"

    def describe(self) -> str:
        """Summary plus serial tail (for assertion messages)."""
        return f"{self.summary()}\n---- serial tail ({self.serial_path}) ----\n{self.tail()}"


class VirtualMachine:
    """A lab machine (fixed MAC, UUID, tap, UEFI NVRAM; disk-less unless given ``disk``) that can be booted
    repeatedly."""

    def __init__(
        self,
        lan: TestLan,
        firmware: str,
        mac: str,
        workdir: Path,
        *,
        mem_mb: int = 1024,
        tap: str | None = None,
        disk: Path | None = None,
    ) -> None:
        if firmware not in FIRMWARES:
            raise ValueError(f"firmware must be one of {FIRMWARES}, not {firmware!r}")
        self.lan = lan
        self.firmware = firmware
        self.mac = mac.lower()
        self.uuid = uuid_of_mac(self.mac)
        self.mem_mb = mem_mb
        self.disk = disk  # a raw disk image, second in the boot order after the NIC (an installed machine)
        self.tap = tap or lan.add_tap(firmware)
        self.name = f"{firmware}-{self.mac.replace(':', '')}"
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.vars_path = self.workdir / f"{self.name}-OVMF_VARS.fd"
        if firmware in OVMF_FILES:
            shutil.copyfile(OVMF_FILES[firmware][1], self.vars_path)
        self.boots = 0

    def command(self, serial_path: Path, direct: DirectBoot | None = None) -> list[str]:
        """The QEMU command line for one boot (network boot unless *direct* is given)."""
        nic = "e1000" if self.firmware == "bios" else "virtio-net-pci,romfile="
        cmd = [QEMU_ARM64 if self.firmware == "arm64" else QEMU, "-name", f"pxh-{self.name}"]
        if self.firmware == "arm64":
            cmd += ["-machine", "virt", "-cpu", "max"]
        if self.firmware == "uefi":
            cmd += ["-machine", "q35"]
        if self.firmware == "uefi-sb":
            cmd += [
                "-machine", "q35,smm=on",
                "-global", "driver=cfi.pflash01,property=secure,value=on",
                "-global", "ICH9-LPC.disable_s3=1",
            ]  # fmt: skip
        cmd += [
            "-accel", "tcg",
            "-m", str(self.mem_mb), "-smp", "1",
            "-uuid", self.uuid,
            "-nographic", "-monitor", "none",
            "-serial", f"file:{serial_path}",
            "-no-reboot",
            "-netdev", f"tap,id=lan0,ifname={self.tap},script=no,downscript=no",
            "-device", f"{nic},netdev=lan0,mac={self.mac},bootindex=1",
            "-boot", "order=n",
        ]  # fmt: skip
        if self.firmware in OVMF_FILES:
            code = OVMF_FILES[self.firmware][0]
            cmd += [
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                "-drive", f"if=pflash,format=raw,unit=1,file={self.vars_path}",
            ]  # fmt: skip
        if self.disk is not None:
            cmd += [
                "-drive",
                f"if=none,id=disk0,format=raw,file={self.disk}",
                "-device",
                "virtio-blk-pci,drive=disk0,bootindex=2",
            ]
        if direct is not None:
            cmd += ["-kernel", str(direct.kernel), "-initrd", str(direct.initrd), "-append", direct.append]
        return cmd

    def boot(
        self,
        *,
        expect: str = DEFAULT_EXPECT,
        fail: str | None = DEFAULT_FAIL,
        timeout: float = 180.0,
        poll: float = 0.25,
        direct: DirectBoot | None = None,
    ) -> BootResult:
        """Power the machine on; return when *expect*/*fail* matches the serial log, QEMU exits or *timeout*.

        QEMU is always stopped before this returns.
        """
        self.boots += 1
        serial_path = self.workdir / f"{self.name}-boot{self.boots}.serial.log"
        serial_path.write_bytes(b"")
        cmd = self.command(serial_path, direct)
        qemu_log = (self.workdir / f"{self.name}-boot{self.boots}.qemu.log").open("wb")
        t0 = time.monotonic()
        proc = self.lan.popen(self.lan.bridge_ns, cmd, stdout=qemu_log, stderr=subprocess.STDOUT)
        qemu_log.close()
        expect_rx = re.compile(expect)
        fail_rx = re.compile(fail) if fail else None
        stages = [(name, re.compile(rx) if rx else None) for name, rx in STAGES[self.firmware]]
        seen: dict[str, float] = {}
        reason, matched, text = "timeout", None, ""
        try:
            while True:
                raw = serial_path.read_bytes()
                text = clean_serial(raw)
                elapsed = round(time.monotonic() - t0, 1)
                for name, rx in stages:
                    if name not in seen and (rx.search(text) if rx else raw):
                        seen[name] = elapsed
                m = expect_rx.search(text)
                if m:
                    reason, matched = "expect", m.group(0)
                    break
                m = fail_rx.search(text) if fail_rx else None
                if m:
                    reason, matched = "fail", m.group(0)
                    break
                if proc.poll() is not None:
                    reason = "exited"
                    break
                if elapsed >= timeout:
                    break
                time.sleep(poll)
        finally:
            stop_process(proc, grace=10)
        elapsed = round(time.monotonic() - t0, 1)
        text = clean_serial(serial_path.read_bytes())
        return BootResult(
            self.firmware, self.mac, reason, matched, text, seen, elapsed, serial_path, proc.returncode, cmd
        )


def boot_vm(
    lan: TestLan,
    firmware: str,
    mac: str,
    workdir: Path,
    *,
    expect: str = DEFAULT_EXPECT,
    fail: str | None = DEFAULT_FAIL,
    timeout: float = 180.0,
) -> BootResult:
    """Boot a fresh machine once (new tap, fresh UEFI NVRAM) and return the result."""
    vm = VirtualMachine(lan, firmware, mac, workdir)
    return vm.boot(expect=expect, fail=fail, timeout=timeout)
