"""Why did it not boot? The probable cause and the fix, from what the server saw of one boot attempt.

Pure: the timeline entries of one attempt (oldest first) and a few facts about the machine in, at most one
``Diagnosis`` out. The server runs it once an attempt has gone quiet and records the answer as a
``boot.diagnosis`` event, so each attempt is diagnosed once (see docs/troubleshooting.md).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pypxe_homelab.events import Kind
from pypxe_homelab.identity import loader_config_request
from pypxe_homelab.state.discovery import event_path, file_stage
from pypxe_homelab.state.timeline import TimelineEntry

DIAGNOSIS_KIND = Kind.BOOT_DIAGNOSIS
RIVAL_KIND = Kind.DHCP_RIVAL

# Files loaders probe for and do without: a "not found" for them is normal.
_OPTIONAL = re.compile(
    r"(^|/)(revocations_[a-z]+\.efi|shim_certificate_\d+\.efi|[a-z0-9_]+\.lst|grub\.cfg|autoexec\.ipxe"
    r"|ldlinux\.[a-z0-9]+|[a-z0-9_]+\.c32)$",
    re.IGNORECASE,
)
# Silence on purpose, not a dead end: the firmware goes on to UEFI HTTP Boot.
DELIBERATE = ("uefi_mode http",)
_SHIM = re.compile(r"(^|/)shim[a-z0-9]*\.efi$|-shim\.efi$", re.IGNORECASE)
_SIGNED_GRUB = re.compile(r"(^|/)grub[a-z0-9]*\.efi$", re.IGNORECASE)


@dataclass(frozen=True)
class Diagnosis:
    """``cause`` is a stable code; ``reason`` the probable cause in words; ``fix`` what to change."""

    cause: str
    reason: str
    fix: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Machine:
    """What the server knows about the machine besides its events."""

    device_id: str
    registered: bool = False
    secure_boot: bool = False
    server: str = ""  # this server's address, for the router advice


def _count(entries: Sequence[TimelineEntry], kind: str, **match: Any) -> int:
    total = 0
    for entry in entries:
        if entry.event.kind == kind and all(entry.event.detail.get(k) == v for k, v in match.items()):
            total += entry.repeat
    return total


def _paths(entries: Sequence[TimelineEntry], kind: str) -> list[str]:
    return [event_path(e.event) for e in entries if e.event.kind == kind]


def _offered_files(entries: Sequence[TimelineEntry]) -> set[str]:
    return {
        str(e.event.detail["file"]).lstrip("/")
        for e in entries
        if e.event.kind in ("dhcp.offer", "dhcp.ack") and e.event.detail.get("file")
    }


def _rivals(entries: Sequence[TimelineEntry]) -> list[str]:
    return sorted({str(e.event.detail.get("server")) for e in entries if e.event.kind == RIVAL_KIND})


def _reached_kernel(entries: Sequence[TimelineEntry]) -> bool:
    for entry in entries:
        e = entry.event
        if e.kind in ("tftp.done", "http.done") and file_stage(event_path(e)) in ("kernel", "initrd"):
            return True
        if e.kind in ("http.done", "http.get") and e.detail.get("what") in ("kernel", "initrd", "iso"):
            return True
        if e.kind in ("cloudinit.fetch", "install.event", "install.callback"):
            return True
    return False


def _installer_without_seed(entries: Sequence[TimelineEntry]) -> Diagnosis | None:
    kernel = any(
        e.event.kind in ("http.done", "tftp.done") and event_path(e.event).endswith("casper/vmlinuz")
        for e in entries
    )
    seed = any(
        e.event.kind in ("cloudinit.fetch", "install.event", "install.callback")
        or "/cloud-init/" in event_path(e.event)
        for e in entries
    )
    if not kernel or seed:
        return None
    iso = any(e.event.kind == "http.done" and e.event.detail.get("what") == "iso" for e in entries)
    where = "and the ISO but" if iso else "but neither the ISO nor"
    return Diagnosis(
        "installer-no-seed",
        f"the machine fetched the installer's kernel {where} its cloud-init seed",
        "check the url= and ds= words of the node's cmdline (`pypxe-homelab inspect <id>` shows them) and "
        "that the machine has RAM for the ISO in memory (at least 4 GiB for Ubuntu 24.04)",
    )


def _failing_transfer(entries: Sequence[TimelineEntry]) -> Diagnosis | None:
    offered = _offered_files(entries)
    done = set(_paths(entries, "tftp.done"))
    failures: dict[str, list[str]] = {}
    for entry in entries:
        e = entry.event
        if e.kind not in ("tftp.error", "tftp.abort") or e.detail.get("probe"):
            continue
        path = event_path(e)
        optional = _OPTIONAL.search(path) or loader_config_request(path) is not None  # PXELINUX config names
        if path in done or (optional and path not in offered):
            continue
        failures.setdefault(path, []).extend([str(e.detail.get("reason") or "failed")] * entry.repeat)
    for path, reasons in failures.items():
        if len(reasons) < 2:
            continue
        reason = reasons[-1]
        failed = [
            e.event
            for e in entries
            if e.event.kind in ("tftp.error", "tftp.abort") and event_path(e.event) == path
        ]
        block = failed[-1].detail.get("block")
        at = f" at block {block}" if block else ""
        if "not found" in reason.lower():
            fix = (
                f"put {path} into the TFTP root (`pypxe-homelab bootfiles install`, `bootfiles status`) "
                "or fix the loader name in server.loaders"
            )
        else:
            fix = (
                "the path between machine and server drops large packets: check the MTU of the server's "
                "interface and of switches in between (the server offers blocks that fit its interface MTU)"
            )
        return Diagnosis("tftp-fails", f"TFTP of {path} fails the same way on every try{at} ({reason})", fix)
    return None


def _offers_ignored(entries: Sequence[TimelineEntry], machine: Machine) -> Diagnosis | None:
    if _count(entries, "tftp.rrq") or _count(entries, "tftp.done") or _count(entries, "dhcp.ack"):
        return None
    rivals = _rivals(entries)
    if rivals:
        names = ", ".join(rivals)
        return Diagnosis(
            "rival-server",
            f"another PXE server answered this machine too ({names}) and it did not boot from this server",
            f"switch off the PXE/ProxyDHCP part of the server at {names} (or its boot file/next-server "
            "options for this machine): one PXE server per LAN",
        )
    offers = _count(entries, "dhcp.offer", port=67)
    if offers >= 2:
        return Diagnosis(
            "offer-ignored",
            f"the firmware sent {offers} DISCOVERs and ignored every offer (no request on 4011, no TFTP)",
            "check for another PXE server on the LAN (the server names rivals it hears); set "
            f"nodes.{machine.device_id}.uefi_mode: direct for firmware that never asks port 4011, or "
            f"nodes.{machine.device_id}.dhcp_reply_delay: 2 for firmware that only takes offers arriving "
            "after the router's",
        )
    ignored = [
        e.event
        for e in entries
        if e.event.kind == "dhcp.ignored" and not str(e.event.detail.get("reason", "")).startswith(DELIBERATE)
    ]
    if sum(e.repeat for e in entries if e.event in ignored) >= 2:
        why = str(ignored[-1].detail.get("reason") or "not served")
        return Diagnosis(
            "not-answered",
            f"the server did not answer this machine's DISCOVERs: {why}",
            "register the machine (`pypxe-homelab add`) or configure a loader for its firmware class "
            "(server.loaders / server.secure_boot_loaders)",
        )
    return None


def _stopped_after_loader(entries: Sequence[TimelineEntry], machine: Machine) -> Diagnosis | None:
    done = _paths(entries, "tftp.done")
    if not done:
        return None
    last = entries[-1].event
    offered = _offered_files(entries)
    shim = [p for p in done if _SHIM.search(p)]
    grub = [p for p in done if _SIGNED_GRUB.search(p)]
    asked_config = any(p.startswith("grub/") for p in _paths(entries, "tftp.rrq"))
    if shim and grub and not asked_config:
        server = machine.server or "this server"
        return Diagnosis(
            "secure-boot-router",
            f"Secure Boot chain stopped after {grub[-1]}: signed GRUB asks the router's DHCP next-server "
            "for its config, and the router does not name this server",
            f"set the router's next-server / boot server to {server} (docs/how-it-boots.md, Secure Boot), "
            "or use iPXE's signed chain, which needs no router setting: "
            "server.secure_boot_loaders.efi64: ipxe-sb/x64/snponly-shim.efi, then "
            "`pypxe-homelab bootfiles install --ipxe-secure-boot`",
        )
    loader = next((p for p in reversed(done) if p in offered), None)
    if loader is None or event_path(last) != loader or last.kind != "tftp.done":
        return None
    name = posixpath.basename(loader)
    if not machine.secure_boot and not _SHIM.search(loader):
        return Diagnosis(
            "loader-rejected",
            f"the firmware fetched {name} and then nothing: Secure Boot refused the unsigned loader, "
            "or the loader is not for this machine's architecture",
            f"if the machine has Secure Boot on, set nodes.{machine.device_id}.secure_boot: true (or "
            "defaults.secure_boot) so it gets the signed chain, or switch Secure Boot off in its firmware; "
            "otherwise check server.loaders for its firmware class",
        )
    return Diagnosis(
        "loader-stopped",
        f"the firmware fetched {name} and then nothing reached the server",
        "watch the machine's screen for the loader's error; check that the loader matches its architecture",
    )


def diagnose(entries: Sequence[TimelineEntry], machine: Machine) -> Diagnosis | None:
    """The probable dead end of one boot attempt (its timeline entries, oldest first), or None if it booted
    or the server saw too little to tell."""
    entries = [e for e in entries if e.event.kind != DIAGNOSIS_KIND]
    if not entries:
        return None
    installer = _installer_without_seed(entries)
    if installer is not None:
        return installer
    if _reached_kernel(entries):
        return None
    return (
        _failing_transfer(entries)
        or _stopped_after_loader(entries, machine)
        or _offers_ignored(entries, machine)
    )
