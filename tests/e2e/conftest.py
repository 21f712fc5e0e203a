"""The end-to-end netboot lab: a LAN with a home router, the real server, and QEMU machines.

``netboot_lab`` (module scope) builds, once per test module::

    router (.1)   dnsmasq: plain DHCP, pool .100-.199, options 3/6, nothing PXE
    server (.3)   python -m pypxe_homelab --config <work>/config.yaml serve
    VMs           QEMU on taps of the LAN bridge (BIOS: SeaBIOS+iPXE, UEFI: OVMF)

The server's root holds tftproot/ (boot loaders from ``bootfiles install``) and
httproot/boot/{linux,initrd.gz} (Debian's kernel and a busybox initrd that prints
PXH-USERSPACE-OK and its /proc/cmdline).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pypxe_homelab.config.model import Paths
from tests.conftest import lab_skip_reason
from tests.lab.kernel import Kernel, find_kernel, kernel_skip_reason
from tests.lab.mkinitrd import build_initrd, build_net_initrd
from tests.lab.netns import TestLan, stop_process
from tests.lab.qemu import DEFAULT_EXPECT, DEFAULT_FAIL, BootResult, VirtualMachine, qemu_skip_reason
from tests.lab.router import Router, dnsmasq_skip_reason, start_router

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HTTP_PORT = 12345
BOOT_TIMEOUT = 180.0
SERVER_START_TIMEOUT = 30.0
BIOS_MAC = "52:54:00:a0:00:01"
UEFI_MAC = "52:54:00:a0:00:02"
NODE_CMDLINE = "console=ttyS0,115200 panic=-1"


def e2e_skip_reason() -> str | None:
    """Why QEMU netboot tests cannot run here, or None."""
    return (
        lab_skip_reason()
        or kernel_skip_reason()
        or dnsmasq_skip_reason()
        or qemu_skip_reason("bios")
        or qemu_skip_reason("uefi")
    )


def config_head(lab: NetbootLab) -> str:
    """The server, paths and defaults sections of the lab's config.yaml, up to ``nodes:``."""
    return f"""\
server:
  interfaces: [eth0]
  http_port: {lab.http_port}
  user: root  # the lab's data root lies in pytest's private (0700) temporary folder
paths:
  root: {lab.root}
defaults:
  gateway: {lab.router.ip}
  dns: [{lab.router.ip}]
nodes:
"""


def default_config(lab: NetbootLab) -> str:
    """config.yaml with the two standard nodes (BIOS .50, UEFI .51) booting boot/linux + boot/initrd.gz."""
    p = lab.lan.prefix
    return (
        config_head(lab)
        + f"""\
  01-52-54-00-a0-00-01:
    address: {p}.50/24
    boot:
      kernel: boot/linux
      initrd: boot/initrd.gz
      cmdline: {NODE_CMDLINE}
  01-52-54-00-a0-00-02:
    address: {p}.51/24
    boot: {{kernel: boot/linux, initrd: boot/initrd.gz, cmdline: "{NODE_CMDLINE}"}}
"""
    )


@dataclass
class NetbootLab:
    """Handle on the running lab; see the module docstring."""

    lan: TestLan
    router: Router
    kernel: Kernel
    workdir: Path
    http_port: int = HTTP_PORT
    server_proc: subprocess.Popen | None = None
    results: list[BootResult] = field(default_factory=list)
    _machines: dict[tuple[str, str], VirtualMachine] = field(default_factory=dict)
    _server_runs: int = 0

    # ---- layout ------------------------------------------------------------
    @property
    def server_ip(self) -> str:
        return self.lan.ip("server")

    @property
    def root(self) -> Path:
        return self.workdir / "root"

    @property
    def tftproot(self) -> Path:
        return Paths(self.root).tftproot

    @property
    def httproot(self) -> Path:
        return Paths(self.root).httproot

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.yaml"

    @property
    def server_log_path(self) -> Path:
        return self.workdir / f"server-{self._server_runs}.log"

    def http_url(self, rel: str) -> str:
        """URL of *rel* (relative to httproot) on the server."""
        return f"http://{self.server_ip}:{self.http_port}/{rel.lstrip('/')}"

    def put_http(self, rel: str, data: bytes) -> Path:
        """Write a file below httproot."""
        path = self.httproot / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def put_net_initrd(self, rel: str, script: str) -> Path:
        """Write a networked initrd (drivers, DHCP on eth0, then *script*) below httproot."""
        return self.put_http(rel, build_net_initrd(script, self.kernel))

    # ---- the server --------------------------------------------------------
    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Run ``python -m pypxe_homelab --config <config> ARGS`` inside the server host."""
        argv = [sys.executable, "-m", "pypxe_homelab", "--config", str(self.config_path), *args]
        return self.lan.run("server", argv, cwd=PROJECT_ROOT, timeout=timeout)

    def write_config(self, text: str) -> Path:
        """Replace config.yaml (takes effect at the next :meth:`restart_server`)."""
        self.config_path.write_text(text)
        return self.config_path

    def install_bootfiles(self) -> None:
        """``bootfiles install`` into the lab's tftproot."""
        res = self.cli("bootfiles", "install")
        if res.returncode != 0:
            raise AssertionError(f"bootfiles install failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")

    def start_server(self) -> None:
        """Start ``serve`` in the server host and wait until DHCP, TFTP and HTTP ports are bound."""
        self._server_runs += 1
        log = self.server_log_path.open("wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        argv = [sys.executable, "-m", "pypxe_homelab", "--config", str(self.config_path), "serve"]
        self.server_proc = self.lan.popen(
            "server", argv, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        for proto, port in (("udp", 67), ("udp", 69), ("tcp", self.http_port)):
            while True:
                if self.server_proc.poll() is not None:
                    raise AssertionError(
                        f"serve exited with {self.server_proc.returncode} before listening on {proto}/{port}:\n"
                        + self.server_log()
                    )
                try:
                    self.lan.wait_port("server", proto, port, timeout=1.0)
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"serve did not listen on {proto}/{port} within {SERVER_START_TIMEOUT:.0f}s:\n"
                            + self.server_log()
                        ) from None

    def stop_server(self) -> None:
        """Stop ``serve`` (TERM, then KILL)."""
        proc, self.server_proc = self.server_proc, None
        if proc is not None:
            stop_process(proc, grace=10)

    def restart_server(self) -> None:
        """Stop and start ``serve`` (e.g. after :meth:`write_config`)."""
        self.stop_server()
        self.start_server()

    def server_log(self) -> str:
        """Output of the current (or last) ``serve`` run."""
        path = self.server_log_path
        return path.read_text(errors="replace") if path.exists() else ""

    # ---- machines ----------------------------------------------------------
    def machine(
        self, firmware: str, mac: str, *, fresh: bool = False, disk: Path | None = None
    ) -> VirtualMachine:
        """The lab machine (firmware, mac); ``fresh`` gives a new one (new UEFI NVRAM) on the same tap."""
        key = (firmware, mac.lower())
        old = self._machines.get(key)
        if old is None or fresh:
            tap = old.tap if old else None
            self._machines[key] = VirtualMachine(
                self.lan, firmware, mac, self.workdir / "vms", tap=tap, disk=disk
            )
        return self._machines[key]

    def boot(
        self,
        firmware: str,
        mac: str,
        *,
        expect: str = DEFAULT_EXPECT,
        fail: str | None = DEFAULT_FAIL,
        timeout: float = BOOT_TIMEOUT,
        same_machine: bool = False,
        disk: Path | None = None,
    ) -> BootResult:
        """Boot a machine and return the result.

        By default the machine is fresh (new UEFI NVRAM); ``same_machine=True`` boots the machine of an
        earlier boot with this firmware and MAC again (same UUID, same NVRAM), as a real reboot would.
        """
        vm = self.machine(firmware, mac, fresh=not same_machine, disk=disk)
        result = vm.boot(expect=expect, fail=fail, timeout=timeout)
        self.results.append(result)
        print(result.summary())
        return result


@pytest.fixture(scope="module")
def netboot_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetbootLab]:
    """LAN + home router + the real server (default config, boot loaders installed) for one test module."""
    reason = e2e_skip_reason()
    if reason:
        pytest.skip(reason)
    kernel = find_kernel()
    assert kernel is not None
    workdir = tmp_path_factory.mktemp("netboot")
    with TestLan(["router", "server"]) as lan:
        router = start_router(lan, workdir / "router")
        lab = NetbootLab(lan=lan, router=router, kernel=kernel, workdir=workdir)
        lab.put_http("boot/linux", kernel.vmlinuz.read_bytes())
        lab.put_http("boot/initrd.gz", build_initrd())
        lab.write_config(default_config(lab))
        lab.install_bootfiles()
        lab.start_server()
        try:
            yield lab
        finally:
            lab.stop_server()
