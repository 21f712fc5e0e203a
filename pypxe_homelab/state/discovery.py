"""What the server learns about a machine from its requests: one DeviceRecord per device id.

Pure functions: an event and the previous record go in, the updated record comes out. The store decides which
device an event belongs to and persists the result.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from pypxe_homelab.events import DHCP_KINDS, TFTP_KINDS, Event, Kind
from pypxe_homelab.identity import config_name, device_hint, is_pi_mac, pi_model_of_uuid

# A new DHCP DISCOVER after this many seconds of silence starts a new boot of the same machine.
BOOT_GAP_SECONDS = 60.0

# How far a boot got, in order. A boot's stage only moves forward.
STAGES: tuple[str, ...] = ("dhcp", "loader", "config", "kernel", "initrd", "userspace")

MAX_CONFIG_NAMES = 16

_PI_CONFIG = ("config.txt", "cmdline.txt")
_KERNEL_NAME = re.compile(r"^(?:vmlinuz.*|linux|bzimage|kernel.*\.img|image|vmlinux.*)$", re.IGNORECASE)
_INITRD_NAME = re.compile(r"^(?:initrd.*|initramfs.*|.*\.cpio(?:\.gz)?)$", re.IGNORECASE)


@dataclass
class DeviceRecord:
    """Everything learned about one machine, and where each fact came from (``learned``: fact → source)."""

    device_id: str
    mac: str | None = None
    uuid: str | None = None
    serial: str | None = None
    arch: int | None = None
    firmware: str | None = None  # 'bios' | 'efi64' | 'efi32' | 'arm64'
    nic: str | None = None
    vendor_class: str | None = None
    ipxe: bool = False
    pi: bool = False
    pi_model: str | None = None
    ip: str | None = None
    boot_ip: str | None = None  # the address its firmware used in this boot (DHCP ciaddr, TFTP), never HTTP's
    config_names: list[str] = field(default_factory=list)
    first_seen: float = 0.0
    last_seen: float = 0.0
    boots: int = 0
    boot_started: float | None = None
    stage: str | None = None  # furthest stage of the current (or last) boot
    learned: dict[str, str] = field(default_factory=dict)
    diagnosis: dict[str, Any] | None = None  # why the current (or last) boot stopped, once the server said so

    def to_json(self) -> dict[str, Any]:
        """Every field, the list and dict copied (what ``asdict`` gives, without its deep copy of scalars)."""
        data = dict(vars(self))
        data["config_names"] = list(self.config_names)
        data["learned"] = dict(self.learned)
        if self.diagnosis is not None:
            data["diagnosis"] = dict(self.diagnosis)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeviceRecord:
        return cls(**{k: v for k, v in data.items() if k in _RECORD_FIELDS})


_RECORD_FIELDS = frozenset(f.name for f in fields(DeviceRecord))


def client_ip(client: str) -> str | None:
    """The IP part of an event's ``client`` (``10.0.0.5:68``, ``[fe80::1]:69`` or a bare address)."""
    text = client.strip()
    if not text:
        return None
    if text.startswith("["):
        return text[1 : text.index("]")] if "]" in text else None
    if text.count(":") == 1:
        return text.split(":", 1)[0]
    return text


def event_path(event: Event) -> str:
    return str(event.detail.get("path") or event.detail.get("file") or "")


def file_stage(path: str) -> str:
    """The boot stage a requested file stands for: config, kernel, initrd or loader."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if config_name(path) is not None or name.lower() in _PI_CONFIG:
        return "config"
    if _KERNEL_NAME.match(name):
        return "kernel"
    if _INITRD_NAME.match(name):
        return "initrd"
    return "loader"


def stage_of(event: Event) -> str | None:
    """How far a boot must have got for this event to happen, or None when it says nothing about that."""
    kind = event.kind
    if kind in DHCP_KINDS:
        return "dhcp"
    if kind in TFTP_KINDS:
        return file_stage(event_path(event))
    if kind in (Kind.HTTP_GET, Kind.HTTP_DONE):
        what = event.detail.get("what")
        if what in ("config", "kernel", "initrd"):  # config: an iPXE script
            return str(what)
        if what == "iso":
            return "userspace"
        return file_stage(event_path(event))
    if kind in (Kind.CLOUDINIT_FETCH, Kind.INSTALL_EVENT, Kind.INSTALL_CALLBACK, Kind.ISCSI_LOGIN):
        return "userspace"
    return None


def stage_rank(stage: str | None) -> int:
    return STAGES.index(stage) if stage in STAGES else -1


def starts_boot(record: DeviceRecord | None, event: Event, gap: float = BOOT_GAP_SECONDS) -> bool:
    """Whether ``event`` begins a new boot of the machine.

    A boot begins with a DHCP DISCOVER (a proxy offer or an ignored DISCOVER on port 67) when the machine was
    silent for more than ``gap`` seconds, or when its current boot already reached the kernel (firmware only
    sends PXE DISCOVERs again after a reset). The first event ever seen from a machine also starts a boot.
    Retries and 4011 requests within one boot never count twice.
    """
    if record is None or record.boots == 0:
        return True
    if event.kind not in (Kind.DHCP_OFFER, Kind.DHCP_IGNORED) or event.detail.get("port", 67) != 67:
        return False
    return event.time - record.last_seen > gap or stage_rank(record.stage) >= stage_rank("kernel")


def _learn(rec: DeviceRecord, fact: str, value: Any, source: str) -> None:
    if value is None or value == "" or getattr(rec, fact) == value:
        return
    setattr(rec, fact, value)
    rec.learned[fact] = source


def _pi_evidence(rec: DeviceRecord, detail: Mapping[str, Any], model: str | None) -> str | None:
    """Why this machine is a Raspberry Pi, or None when nothing says so."""
    if model:
        return "dhcp option 97 (RPi4/RPi5)"
    if detail.get("pi"):
        return "dhcp"
    if is_pi_mac(rec.mac):
        return "mac oui"
    if rec.serial:
        return "tftp serial path"
    return None


def observe(record: DeviceRecord | None, device_id: str, event: Event, ip: str | None = None) -> DeviceRecord:
    """The record of ``device_id`` after ``event`` (``ip``: the client's address, when known)."""
    rec = (
        replace(record, config_names=list(record.config_names), learned=dict(record.learned))
        if record
        else DeviceRecord(device_id=device_id, first_seen=event.time)
    )
    new_boot = starts_boot(record, event)
    d = event.detail
    kind = event.kind
    if new_boot:
        rec.boot_ip = None
    ciaddr = d.get("ciaddr") if kind in DHCP_KINDS else None
    if ciaddr == "0.0.0.0":  # a DISCOVER's: the machine has no address yet
        ciaddr = None
    if ciaddr:
        rec.boot_ip = str(ciaddr)
    elif kind in TFTP_KINDS and ip:
        rec.boot_ip = ip
    if event.mac:
        _learn(rec, "mac", event.mac.lower(), f"{kind.value} chaddr" if kind in DHCP_KINDS else kind.value)
    if kind in DHCP_KINDS:
        arch = d.get("arch")
        _learn(rec, "arch", arch if isinstance(arch, int) else None, "dhcp option 93")
        _learn(rec, "firmware", d.get("class"), "dhcp option 93")
        _learn(rec, "nic", d.get("nic"), "dhcp option 94")
        _learn(rec, "vendor_class", d.get("vendor_class"), "dhcp option 60")
        _learn(rec, "uuid", d.get("uuid"), "dhcp option 97")
        if d.get("ipxe"):
            _learn(rec, "ipxe", True, "dhcp option 77/175")
        _learn(rec, "ip", ciaddr, "dhcp ciaddr (4011)")
        if d.get("serial"):
            _learn(rec, "serial", str(d["serial"]).lower(), "dhcp option 97")
    elif ip:
        _learn(rec, "ip", ip, f"{kind} client address")
    path = event_path(event)
    if kind in TFTP_KINDS and path:
        name = config_name(path)
        if name and name not in rec.config_names and len(rec.config_names) < MAX_CONFIG_NAMES:
            rec.config_names.append(name)
        hint = device_hint(path)
        if hint is not None and hint.source == "pi-serial":
            _learn(rec, "serial", hint.device_id, f"tftp path {path}")
    model = pi_model_of_uuid(rec.uuid)
    evidence = _pi_evidence(rec, d, model)
    if evidence and not rec.pi:
        _learn(rec, "pi", True, evidence)
    _learn(rec, "pi_model", model, "dhcp option 97")
    if new_boot:
        rec.boots += 1
        rec.boot_started = event.time
        rec.stage = None
        rec.diagnosis = None
    if kind is Kind.BOOT_DIAGNOSIS:
        rec.diagnosis = dict(d)
    stage = stage_of(event)
    if stage_rank(stage) > stage_rank(rec.stage):
        rec.stage = stage
    rec.first_seen = min(rec.first_seen or event.time, event.time)
    rec.last_seen = max(rec.last_seen, event.time)
    return rec


def merge(into: DeviceRecord, other: DeviceRecord) -> DeviceRecord:
    """``into`` completed with the facts of ``other`` (the same machine seen under another id, e.g. a Pi's MAC)."""
    rec = replace(into, config_names=list(into.config_names), learned=dict(into.learned))
    for f in ("mac", "uuid", "serial", "arch", "firmware", "nic", "vendor_class", "pi_model", "ip"):
        if getattr(rec, f) is None and getattr(other, f) is not None:
            setattr(rec, f, getattr(other, f))
            if f in other.learned:
                rec.learned[f] = other.learned[f]
    rec.ipxe = rec.ipxe or other.ipxe
    rec.pi = rec.pi or other.pi
    for name in other.config_names:
        if name not in rec.config_names and len(rec.config_names) < MAX_CONFIG_NAMES:
            rec.config_names.append(name)
    rec.first_seen = (
        min(x for x in (rec.first_seen, other.first_seen) if x) if other.first_seen else rec.first_seen
    )
    rec.last_seen = max(rec.last_seen, other.last_seen)
    rec.boots = max(rec.boots, other.boots)
    return rec
