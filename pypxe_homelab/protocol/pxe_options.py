"""PXE sub-options carried inside DHCP option 43 (PXE 2.1 §2.2): encode and decode.

A sub-option list is a sequence of ``(code, value)`` pairs encoded as TLVs and closed by 0xFF.
Order is kept as given, so a caller controls the exact bytes on the wire.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DISCOVERY_CONTROL = 6
BOOT_SERVERS = 8
BOOT_MENU = 9
MENU_PROMPT = 10
BOOT_ITEM = 71
END = 255
PAD = 0

# Discovery control bits (sub-option 6).
NO_BROADCAST = 0x01
NO_MULTICAST = 0x02
ONLY_LISTED_SERVERS = 0x04
USE_BOOT_FILE = 0x08

BIS_LAYER_BIT = 0x8000
LOCAL_BOOT = 0x0000

SubOption = tuple[int, bytes]


@dataclass(frozen=True)
class MenuItem:
    """One entry of the boot menu: a boot server type and its text (type 0 means local boot)."""

    type: int
    description: str


@dataclass(frozen=True)
class BootServer:
    """A boot server type and the addresses that serve it."""

    type: int
    addresses: tuple[str, ...]


def discovery_control(bits: int) -> SubOption:
    return (DISCOVERY_CONTROL, bytes([bits & 0xFF]))


def boot_servers(servers: Sequence[BootServer]) -> SubOption:
    out = b""
    for server in servers:
        out += struct.pack("!HB", server.type, len(server.addresses))
        out += b"".join(ipaddress.IPv4Address(a).packed for a in server.addresses)
    return (BOOT_SERVERS, out)


def boot_menu(items: Sequence[MenuItem]) -> SubOption:
    out = b""
    for item in items:
        text = item.description.encode("ascii")
        if len(text) > 255:
            raise ValueError(f"boot menu text too long: {item.description!r}")
        out += struct.pack("!HB", item.type, len(text)) + text
    return (BOOT_MENU, out)


def menu_prompt(timeout: int, text: str) -> SubOption:
    """Prompt: timeout 0 boots the first menu item at once, 255 waits forever."""
    return (MENU_PROMPT, bytes([timeout & 0xFF]) + text.encode("ascii"))


def boot_item(item_type: int, layer: int) -> SubOption:
    return (BOOT_ITEM, struct.pack("!HH", item_type, layer))


def encode(suboptions: Iterable[SubOption]) -> bytes:
    """TLV-encode the sub-options in the given order and append the 0xFF end marker.

    Raises ValueError when a value or the whole list does not fit one DHCP option (255 bytes).
    """
    out = b""
    for code, value in suboptions:
        if len(value) > 255:
            raise ValueError(f"PXE sub-option {code} is {len(value)} bytes (at most 255)")
        out += bytes([code, len(value)]) + value
    out += bytes([END])
    if len(out) > 255:
        raise ValueError(f"PXE options are {len(out)} bytes, more than one DHCP option holds (255)")
    return out


def decode(data: bytes) -> dict[int, bytes]:
    """Sub-options of an option-43 value as ``{code: value}``; stops at 0xFF or at a truncated entry."""
    found: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == END:
            break
        if code == PAD:
            i += 1
            continue
        if i + 1 >= len(data) or i + 2 + data[i + 1] > len(data):
            break
        length = data[i + 1]
        found[code] = bytes(data[i + 2 : i + 2 + length])
        i += 2 + length
    return found


def parse_boot_item(value: bytes | None) -> tuple[int, int] | None:
    """Sub-option 71 as ``(type, layer)``; None unless exactly 4 bytes."""
    if value is None or len(value) != 4:
        return None
    item_type, layer = struct.unpack("!HH", value)
    return item_type, layer


def parse_menu(value: bytes) -> list[MenuItem]:
    """Sub-option 9 as menu items (a truncated tail is dropped)."""
    items = []
    i = 0
    while i + 3 <= len(value):
        item_type, length = struct.unpack("!HB", value[i : i + 3])
        text = value[i + 3 : i + 3 + length]
        if len(text) < length:
            break
        items.append(MenuItem(item_type, text.decode("ascii", "replace")))
        i += 3 + length
    return items
