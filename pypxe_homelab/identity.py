"""Device identity: every rule that tells which machine a packet, a path or a typed id stands for.

The inventory knows a PC as ``01-<mac>`` (PXELINUX's own name form, dashes, lower case) and a Raspberry Pi by
its 8-hex-digit serial. Every other module asks here: no second copy of a pattern anywhere in the package.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import uuid as uuidlib
from dataclasses import asdict, dataclass
from typing import Any, Literal

# -- patterns -----------------------------------------------------------------------------------------

MAC_DASHED = r"[0-9a-f]{2}(?:-[0-9a-f]{2}){5}"
PI_SERIAL_PATTERN = r"[0-9a-f]{8}"
# A device id as it appears in URLs and TFTP paths (lower case): ``01-<mac>`` or a Pi serial.
DEVICE_ID_PATTERN = rf"01-{MAC_DASHED}|{PI_SERIAL_PATTERN}"

_MAC_ID = re.compile(rf"^01-({MAC_DASHED})$")
_PI_SERIAL = re.compile(rf"^{PI_SERIAL_PATTERN}$")
_BARE_MAC = re.compile(r"^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(?:\1[0-9a-fA-F]{2}){4}$")

# Raspberry Pi Ltd / Raspberry Pi Trading OUIs (Pi 5 boards use 2c:cf:67).
PI_OUIS: frozenset[str] = frozenset({"b8:27:eb", "dc:a6:32", "e4:5f:01", "28:cd:c1", "d8:3a:dd", "2c:cf:67"})
# The FourCC a Pi 4/5 EEPROM puts first in option 97 (in byte order), and the model name it stands for.
PI_GUID_MAGIC: dict[bytes, str] = {b"RPi4": "RPi4", b"RPi5": "RPi5"}
_PI_FOURCC_HEX = {magic.hex(): model for magic, model in PI_GUID_MAGIC.items()}

# PXELINUX config names: 01-<mac>, a UUID, the client IP as 8 upper-case hex digits, or 'default'.
_CFG_DIR = r"(?:^|/)pxelinux\.cfg/"
_CFG_MAC = re.compile(rf"{_CFG_DIR}01-({MAC_DASHED})$", re.IGNORECASE)
_CFG_UUID = re.compile(
    rf"{_CFG_DIR}([0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}})$", re.I
)
_CFG_IP = re.compile(rf"{_CFG_DIR}([0-9A-F]{{8}})$")  # PXELINUX writes the IP in upper case only
_CFG_NAME = re.compile(rf"{_CFG_DIR}([^/]+)$", re.IGNORECASE)
_LOADER_CONFIG = re.compile(r"^(?:(efi64|efi32)/)?pxelinux\.cfg/([^/]+)$", re.IGNORECASE)
_PI_SERIAL_DIR = re.compile(rf"^({PI_SERIAL_PATTERN})/", re.IGNORECASE)
_PI_MAC_DIR = re.compile(rf"^({MAC_DASHED})/", re.IGNORECASE)

HintSource = Literal["pxelinux-mac", "pxelinux-uuid", "pxelinux-ip", "pi-serial", "pi-mac"]
LoaderTree = Literal["bios", "efi64", "efi32"]


# -- device ids -------------------------------------------------------------------------------------------


def normalise_device_id(text: str) -> str:
    """Return the canonical device id for ``text`` or raise ValueError saying what is accepted.

    Accepted: ``01-aa-bb-cc-dd-ee-ff`` (a PC, any case), a bare MAC ``aa:bb:cc:dd:ee:ff`` or
    ``aa-bb-cc-dd-ee-ff`` (turned into ``01-…``), or 8 hex digits (a Raspberry Pi serial, lower-cased). A bare
    MAC with the group bit set (first byte odd) is refused: no network card has one, and ``01-52-54-00-12-34``
    is a device id that lost a byte, not a MAC.
    """
    raw = text.strip()
    low = raw.lower()
    if _MAC_ID.match(low):
        return low
    if _BARE_MAC.match(raw):
        if int(low[:2], 16) & 1:
            raise ValueError(
                f"{text!r} is not a network card's MAC (its first byte is a group address); "
                "if it is a device id, it is missing a byte: 01- followed by all six bytes, e.g. "
                "01-52-54-00-a0-00-01"
            )
        return "01-" + low.replace(":", "-")
    if _PI_SERIAL.match(low):
        return low
    raise ValueError(
        f"{text!r} is not a device id: use 01-<mac> with dashes (01-52-54-00-a0-00-01), "
        "a MAC (52:54:00:a0:00:01) or a Raspberry Pi serial of 8 hex digits (7092246e)"
    )


def is_device_id(text: str) -> bool:
    """Whether ``text`` already is a canonical device id (``01-<mac>`` or a Pi serial)."""
    return bool(_MAC_ID.match(text) or _PI_SERIAL.match(text))


def mac_of_device_id(device_id: str | None) -> str | None:
    """``01-aa-bb-…`` → ``aa:bb:…``; None for a Pi serial (or None)."""
    m = _MAC_ID.match(device_id or "")
    return m.group(1).replace("-", ":") if m else None


def device_id_of_mac(mac: str) -> str:
    """``aa:bb:cc:dd:ee:ff`` (any case or separator) → ``01-aa-bb-cc-dd-ee-ff``."""
    return "01-" + mac.lower().replace(":", "-")


def is_pi_serial(device_id: str | None) -> bool:
    return bool(_PI_SERIAL.match(device_id or ""))


def is_pi_mac(mac: str | None) -> bool:
    """True when the MAC's OUI belongs to Raspberry Pi."""
    return mac is not None and mac.lower()[:8] in PI_OUIS


def mac_text(raw: bytes) -> str:
    """Hardware address bytes as ``aa:bb:cc:dd:ee:ff``."""
    return ":".join(f"{b:02x}" for b in raw)


# -- option 97 (client machine identifier) ---------------------------------------------------------------


def pi_guid(machine_id: bytes | None) -> tuple[str, str] | None:
    """``(model, serial)`` from the Pi 4/5 EEPROM form of option 97, else None.

    Layout after the type byte, each field a little-endian 32-bit word: FourCC ('RPi4'/'RPi5' in byte
    order), board revision, low MAC bytes, serial.
    """
    if machine_id is None or len(machine_id) != 17 or machine_id[0] != 0:
        return None
    model = PI_GUID_MAGIC.get(machine_id[1:5])
    if model is None:
        return None
    serial = int.from_bytes(machine_id[13:17], "little")
    return model, f"{serial:08x}"


def pi_machine_id(serial: str, model: str = "RPi4") -> bytes:
    """Option 97 as a Pi 4/5 EEPROM sends it for ``serial`` (the inverse of ``pi_guid``; revision and MAC left 0)."""
    magic = next(m for m, name in PI_GUID_MAGIC.items() if name == model)
    return b"\0" + magic + bytes(8) + int(serial, 16).to_bytes(4, "little")


def machine_uuid(machine_id: bytes | None) -> str | None:
    """Option 97 as a UUID string (type 0, 16 bytes; first three fields little-endian as PXE sends them)."""
    if machine_id is None or len(machine_id) != 17 or machine_id[0] != 0:
        return None
    return str(uuidlib.UUID(bytes_le=machine_id[1:]))


@functools.lru_cache(maxsize=4096)  # asked once per recorded DHCP event
def pi_model_of_uuid(text: str | None) -> str | None:
    """'pi4' / 'pi5' when a UUID (in any of the forms of ``uuid_forms``) carries the Pi 4/5 EEPROM's FourCC."""
    for digits in uuid_forms(text):
        model = _PI_FOURCC_HEX.get(digits[:8])
        if model is not None:
            return model.lower().replace("rpi", "pi")
    return None


def uuid_forms(text: str | None) -> set[str]:
    """Hex forms one UUID may be written in: as given, and with its first three fields byte-swapped
    (firmware and PXELINUX disagree on the byte order)."""
    if not text:
        return set()
    digits = re.sub(r"[^0-9a-f]", "", text.lower())
    if len(digits) == 34 and digits.startswith("00"):
        digits = digits[2:]
    if len(digits) != 32:
        return {digits}

    def swap(s: str) -> str:
        return "".join(reversed([s[i : i + 2] for i in range(0, len(s), 2)]))

    return {digits, swap(digits[0:8]) + swap(digits[8:12]) + swap(digits[12:16]) + digits[16:]}


# -- what a TFTP path says about the machine -------------------------------------------------------------


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


def device_hint(path: str) -> DeviceHint | None:
    """The device a normalised path identifies (see docs/how-it-boots.md, "Device ids"), or None.

    ``[prefix/]pxelinux.cfg/01-<mac>`` → MAC; ``pxelinux.cfg/<uuid>`` → UUID; ``pxelinux.cfg/C0A8010A`` (upper-case
    hex) → IPv4; ``<8 hex>/…`` → Raspberry Pi serial; ``aa-bb-cc-dd-ee-ff/…`` → Raspberry Pi MAC prefix.
    """
    if m := _CFG_MAC.search(path):
        dashed = m.group(1).lower()
        return DeviceHint("pxelinux-mac", device_id="01-" + dashed, mac=dashed.replace("-", ":"))
    if m := _CFG_UUID.search(path):
        return DeviceHint("pxelinux-uuid", uuid=m.group(1).lower())
    if m := _CFG_IP.search(path):
        return DeviceHint("pxelinux-ip", ipv4=str(ipaddress.IPv4Address(bytes.fromhex(m.group(1)))))
    if m := _PI_MAC_DIR.match(path):
        dashed = m.group(1).lower()
        return DeviceHint("pi-mac", device_id="01-" + dashed, mac=dashed.replace("-", ":"))
    if m := _PI_SERIAL_DIR.match(path):
        return DeviceHint("pi-serial", device_id=m.group(1).lower())
    return None


def config_name(path: str) -> str | None:
    """The PXELINUX config name a TFTP path asks for (``01-…``, a UUID, ``C0A8010A``, ``default``), or None."""
    m = _CFG_NAME.search(path)
    return m.group(1) if m else None


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


def config_name_device_id(name: str) -> str | None:
    """The device id a PXELINUX config name states itself (``01-<mac>``), else None (UUID, hex IP, default)."""
    lowered = name.lower()
    return lowered if _MAC_ID.match(lowered) else None


def split_node_path(path: str) -> tuple[str, str] | None:
    """``<device id>/<rest>`` → ``(device id, rest)`` for a node-scoped URL path, else None."""
    head, sep, rest = path.lstrip("/").partition("/")
    if not sep or not rest or not is_device_id(head):
        return None
    return head, rest


def add_command(device_id: str, network: ipaddress.IPv4Network | None = None) -> str:
    """The command that registers ``device_id``, with the prefix length of ``network`` (the served LAN the
    machine is on) when known. The address is left for the user: the one the machine has now is a lease from
    the router's pool, which the router may hand to another machine (``address_note`` says so)."""
    prefix = str(network.prefixlen) if network else "<prefix>"
    return f"pypxe-homelab add {device_id} --node-address <address>/{prefix}"


def address_note(network: ipaddress.IPv4Network | None = None, ip: str | None = None) -> str:
    """What ``<address>`` of ``add_command`` must be."""
    where = f"a free address of {network}" if network else "a free address of your LAN"
    now = f" ({ip}, which it has now, comes from that pool)" if ip else ""
    return (
        f"<address>: {where} outside your router's DHCP pool{now}, or an address reserved for this machine "
        "on the router"
    )
