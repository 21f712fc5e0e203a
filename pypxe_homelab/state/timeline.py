"""Timeline entries: one stored event of a node, and a one-line human summary of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pypxe_homelab.events import DHCP_KINDS, Event, Kind

DEDUPE_WINDOW_SECONDS = 30.0


@dataclass(frozen=True)
class TimelineEntry:
    """A stored event; ``repeat`` counts identical requests folded into it (retries within 30 s)."""

    id: int
    event: Event
    generation: int
    repeat: int = 1
    last_time: float | None = None

    def to_json(self) -> dict[str, Any]:
        e = self.event
        return {
            "id": self.id,
            "time": e.time,
            "kind": e.kind.value,
            "client": e.client,
            "device_id": e.device_id,
            "mac": e.mac,
            "detail": e.detail,
            "generation": self.generation,
            "repeat": self.repeat,
            "last_time": self.last_time,
            "summary": describe(e),
        }


def dedupe_key(event: Event) -> str | None:
    """Events with the same key within DEDUPE_WINDOW_SECONDS are one timeline entry (retries, probes)."""
    d = event.detail
    if event.kind in DHCP_KINDS:
        return f"{event.kind.value}|{d.get('xid')}|{d.get('port')}"
    if event.kind in (Kind.TFTP_RRQ, Kind.TFTP_ERROR, Kind.TFTP_ABORT, Kind.HTTP_ERROR):
        return f"{event.kind.value}|{d.get('path')}"
    return None


def human_bytes(n: Any) -> str:
    """1536 → '1.5 KiB'."""
    try:
        size = float(n)
    except (TypeError, ValueError):
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _transfer(d: Mapping[str, Any]) -> str:
    text = f"{d.get('path', '?')} {human_bytes(d.get('bytes'))}"
    duration = d.get("duration")
    if isinstance(duration, (int, float)) and duration > 0:
        text += f" in {duration:.1f} s"
        if isinstance(d.get("bytes"), (int, float)):
            text += f" ({human_bytes(d['bytes'] / duration)}/s)"
    return text


def describe(event: Event) -> str:
    """One line saying what happened, e.g. ``TFTP sent efi64/syslinux.efi 160.3 KiB in 0.4 s (400.1 KiB/s)``."""
    d = event.detail
    k = event.kind
    if k is Kind.DHCP_OFFER:
        return f"proxy offer ({d.get('class') or 'arch ' + str(d.get('arch'))}) → {d.get('file') or 'no boot file'}"
    if k is Kind.DHCP_ACK:
        return f"boot server ack (4011) → {d.get('file') or 'no boot file'}"
    if k is Kind.DHCP_IGNORED:
        return f"DHCP ignored: {d.get('reason') or d.get('class') or 'not served'}"
    if k is Kind.TFTP_RRQ:
        return f"TFTP request {d.get('path', '?')}"
    if k is Kind.TFTP_DONE:
        return f"TFTP sent {_transfer(d)}"
    if k is Kind.TFTP_ERROR:
        return f"TFTP error {d.get('path') or d.get('raw', '?')}: {d.get('reason') or 'failed'}"
    if k is Kind.TFTP_ABORT:
        why = "size probe" if d.get("probe") else d.get("reason") or "stopped"
        return f"TFTP aborted by client {d.get('path', '?')} ({why})"
    if k is Kind.HTTP_GET:
        return f"HTTP {d.get('what', 'file')} {d.get('path', '?')}"
    if k is Kind.HTTP_DONE:
        return f"HTTP sent {d.get('what', 'file')} {_transfer(d)}"
    if k in (Kind.HTTP_ERROR, Kind.HTTP_ABORT):
        return (
            f"HTTP {k.split('.')[1]} {d.get('path', '?')} {d.get('status') or d.get('reason') or ''}".rstrip()
        )
    if k is Kind.CLOUDINIT_FETCH:
        return f"cloud-init fetched {d.get('file', '?')}"
    if k is Kind.INSTALL_EVENT:
        text = f"installer {d.get('event_type', '?')} {d.get('name', '?')}"
        if d.get("result"):
            text += f" {d['result']}"
        if d.get("description"):
            text += f": {d['description']}"
        if d.get("progress") is not None:
            text += f" ({d['progress']:.0f}%)"
        return text
    if k is Kind.INSTALL_CALLBACK:
        return "install finished (callback)"
    if k is Kind.ISCSI_LOGIN:
        return f"iSCSI login to {d.get('target', '?')} as {d.get('initiator', '?')}"
    if k is Kind.ISCSI_LOGOUT:
        return f"iSCSI logout from {d.get('target', '?')}"
    if k is Kind.BOOT_DIAGNOSIS:
        return f"why it stopped: {d.get('reason', '?')}; fix: {d.get('fix', '?')}"
    if k is Kind.DHCP_RIVAL:
        return f"another PXE server answered: {d.get('server', '?')} ({d.get('kind', '?')}, file {d.get('file') or '-'})"
    if k is Kind.NODE_REINSTALL:
        return f"re-armed for install, generation {d.get('generation')}"
    return k.value
