"""A plain "home router" DHCP server (dnsmasq) on a TestLan host.

It hands out addresses from a pool with router (3) and DNS (6) options, is
authoritative, and offers nothing PXE-related: no boot file, no next-server,
no TFTP, no DNS service (``port=0``) -- like a consumer Wi-Fi router.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.lab.netns import IFACE, TestLan, stop_process


def dnsmasq_skip_reason() -> str | None:
    """Why the router cannot run here (install dnsmasq-base), or None."""
    return None if shutil.which("dnsmasq") else "dnsmasq not found: install dnsmasq-base"


@dataclass
class Router:
    """A running router DHCP server; :meth:`stop` ends it (teardown of the TestLan does too)."""

    host: str
    ip: str
    pool: tuple[str, str]
    proc: subprocess.Popen
    conf_path: Path
    log_path: Path
    lease_path: Path

    def stop(self) -> None:
        """Stop dnsmasq (TERM, then KILL)."""
        stop_process(self.proc)

    def log(self) -> str:
        """dnsmasq's DHCP log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def leases(self) -> dict[str, str]:
        """Current leases: MAC -> IPv4 address."""
        result = {}
        if self.lease_path.exists():
            for line in self.lease_path.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 3:
                    result[fields[1].lower()] = fields[2]
        return result


def next_server_lines(mac: str, server_ip: str, tag: str = "namesus") -> list[str]:
    """Router settings that name *server_ip* as next-server (siaddr) for the machine *mac* only.

    This is the one setting most home routers offer ("next-server" / "boot server"); no file name is sent.
    """
    return [f"dhcp-host={mac.lower()},set:{tag}", f"dhcp-boot=tag:{tag},,,{server_ip}"]


def router_config(
    lan: TestLan,
    host: str,
    pool: tuple[int, int],
    lease_path: Path,
    log_path: Path,
    extra: Sequence[str] = (),
) -> str:
    """The dnsmasq configuration of the home router (*extra*: more dnsmasq lines)."""
    ip = lan.ip(host)
    return "\n".join(
        [
            f"interface={IFACE}",
            "bind-interfaces",
            f"listen-address={ip}",
            "port=0",
            "no-resolv",
            "no-hosts",
            f"dhcp-range={lan.prefix}.{pool[0]},{lan.prefix}.{pool[1]},{lan.netmask},1h",
            f"dhcp-option=option:router,{ip}",
            f"dhcp-option=option:dns-server,{ip}",
            "dhcp-authoritative",
            f"dhcp-leasefile={lease_path}",
            "log-dhcp",
            f"log-facility={log_path}",
            "user=root",
            "group=root",
            *extra,
            "",
        ]
    )


def start_router(
    lan: TestLan,
    workdir: Path,
    host: str = "router",
    *,
    pool: tuple[int, int] = (100, 199),
    extra: Sequence[str] = (),
) -> Router:
    """Start the router's DHCP server in *host* (added to the LAN if missing); files go to *workdir*.

    *extra* lines are appended to its dnsmasq configuration (e.g. :func:`next_server_lines`).
    """
    if host not in lan.hosts:
        lan.add_host(host)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "router-dnsmasq.conf"
    log = workdir / "router-dnsmasq.log"
    leases = workdir / "router.leases"
    leases.write_text("")
    conf.write_text(router_config(lan, host, pool, leases, log, extra))
    stderr = (workdir / "router-dnsmasq.stderr").open("wb")
    proc = lan.popen(
        host,
        ["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}"],
        stdout=stderr,
        stderr=subprocess.STDOUT,
    )
    stderr.close()
    try:
        lan.wait_port(host, "udp", 67, timeout=10)
    except TimeoutError:
        proc.kill()
        raise RuntimeError(
            f"router dnsmasq did not start, see {workdir}/router-dnsmasq.stderr and {log}"
        ) from None
    return Router(
        host, lan.ip(host), (f"{lan.prefix}.{pool[0]}", f"{lan.prefix}.{pool[1]}"), proc, conf, log, leases
    )
