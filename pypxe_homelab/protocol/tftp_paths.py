"""TFTP file names: normalisation, refusal of unsafe names, and what a name tells about the machine asking.

Pure functions only: a requested name goes in, a clean relative path (or a refusal) and a device hint come out.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

MAX_NAME_LENGTH = 255

HintSource = Literal["pxelinux-mac", "pxelinux-uuid", "pxelinux-ip", "pi-serial", "pi-mac"]
LoaderTree = Literal["bios", "efi64", "efi32"]

_DRIVE_LETTER = re.compile(r"^[A-Za-z]:(?:/|$)")
_MAC = r"[0-9a-f]{2}(?:-[0-9a-f]{2}){5}"
_CFG_MAC = re.compile(rf"^(?:[^/]+/)*pxelinux\.cfg/01-({_MAC})$", re.IGNORECASE)
_CFG_UUID = re.compile(
    r"(?:^|/)pxelinux\.cfg/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$", re.IGNORECASE
)
_CFG_IP = re.compile(r"(?:^|/)pxelinux\.cfg/([0-9A-F]{8})$")  # PXELINUX writes the IP in upper case only
_PI_SERIAL = re.compile(r"^([0-9a-f]{8})/", re.IGNORECASE)
_PI_MAC = re.compile(rf"^({_MAC})/", re.IGNORECASE)
_LOADER_CONFIG = re.compile(r"^(?:(efi64|efi32)/)?pxelinux\.cfg/([^/]+)$", re.IGNORECASE)


class PathRefused(ValueError):
    """A requested name that must not be served; ``reason`` says why in a few words."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class DeviceHint:
    """What a TFTP path says about the machine that asked for it.

    ``device_id`` is the inventory id (``01-<mac>`` or a Pi serial) when the path names one directly;
    ``ipv4`` is set for PXELINUX's hex-IP config names (the caller maps it to a MAC); ``uuid`` for UUID names.
    """

    source: HintSource
    device_id: str | None = None
    mac: str | None = None
    uuid: str | None = None
    ipv4: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, without empty fields."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def normalise(raw: str) -> str:
    """Return ``raw`` as a clean path relative to the TFTP root, or raise PathRefused.

    Backslashes become ``/``, empty and ``.`` components are dropped (so ``//`` collapses and a leading ``/``
    goes), case is kept. Refused: NUL or other control characters, ``..`` components, drive letters
    (``C:\\``), names longer than MAX_NAME_LENGTH, and names that are empty once cleaned.
    """
    if "\x00" in raw:
        raise PathRefused("NUL byte in the file name")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
        raise PathRefused("control character in the file name")
    if len(raw) > MAX_NAME_LENGTH:
        raise PathRefused(f"file name longer than {MAX_NAME_LENGTH} characters")
    text = raw.replace("\\", "/")
    if _DRIVE_LETTER.match(text):
        raise PathRefused("absolute path with a drive letter")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise PathRefused("'..' in the file name")
    if not parts:
        raise PathRefused("empty file name")
    return "/".join(parts)


def device_hint(path: str) -> DeviceHint | None:
    """The device a normalised path identifies (see docs/how-it-boots.md, "Device ids"), or None.

    ``[prefix/]pxelinux.cfg/01-<mac>`` → MAC; ``pxelinux.cfg/<uuid>`` → UUID; ``pxelinux.cfg/C0A8010A`` (upper-case
    hex) → IPv4; ``<8 hex>/…`` → Raspberry Pi serial; ``aa-bb-cc-dd-ee-ff/…`` → Raspberry Pi MAC prefix.
    """
    if m := _CFG_MAC.match(path):
        dashed = m.group(1).lower()
        return DeviceHint("pxelinux-mac", device_id="01-" + dashed, mac=dashed.replace("-", ":"))
    if m := _CFG_UUID.search(path):
        return DeviceHint("pxelinux-uuid", uuid=m.group(1).lower())
    if m := _CFG_IP.search(path):
        return DeviceHint("pxelinux-ip", ipv4=str(ipaddress.IPv4Address(bytes.fromhex(m.group(1)))))
    if m := _PI_MAC.match(path):
        dashed = m.group(1).lower()
        return DeviceHint("pi-mac", device_id="01-" + dashed, mac=dashed.replace("-", ":"))
    if m := _PI_SERIAL.match(path):
        return DeviceHint("pi-serial", device_id=m.group(1).lower())
    return None


def loader_config_request(path: str) -> tuple[LoaderTree, str] | None:
    """``(tree, name)`` when a normalised path asks for a PXELINUX config, else None.

    ``pxelinux.cfg/<name>`` → ``('bios', name)``; ``efi64/pxelinux.cfg/<name>`` → ``('efi64', name)``;
    ``efi32/…`` → ``('efi32', name)``. ``name`` keeps its case (hex-IP names are upper-case).
    """
    m = _LOADER_CONFIG.match(path)
    if not m:
        return None
    tree: LoaderTree = m.group(1).lower() if m.group(1) else "bios"  # type: ignore[assignment]
    return tree, m.group(2)
