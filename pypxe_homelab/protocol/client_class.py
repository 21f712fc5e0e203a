"""Who is asking: firmware class, iPXE, Raspberry Pi, and the device id the inventory knows it by."""

from __future__ import annotations

from dataclasses import dataclass

from pypxe_homelab.config.model import device_id_of_mac
from pypxe_homelab.protocol.dhcp_codec import DhcpRequest

# Option 93 value → firmware class (the key into ``ServerSettings.loaders``).
ARCH_FIRMWARE: dict[int, str] = {0: "bios", 6: "efi32", 7: "efi64", 9: "efi64", 11: "arm64"}
UEFI_FIRMWARE = frozenset({"efi32", "efi64", "arm64"})

PI_OUIS = frozenset({"b8:27:eb", "dc:a6:32", "e4:5f:01", "28:cd:c1", "d8:3a:dd", "2c:cf:67"})
PI_GUID_MAGIC = (b"RPi4", b"RPi5")


@dataclass(frozen=True)
class ClientClass:
    """The classification of one request (it only affects identity and logs, not the reply bytes)."""

    arch: int | None
    firmware: str | None  # bios / efi32 / efi64 / arm64, None when the arch has no mapping
    ipxe: bool = False
    pi: bool = False
    pi_model: str | None = None  # 'RPi4' / 'RPi5' when option 97 says so
    pi_serial: str | None = None  # 8 lower-case hex digits, from the RPi4/RPi5 form of option 97

    @property
    def name(self) -> str:
        """'pi' for a Raspberry Pi, else the firmware class, else 'arch<N>'."""
        if self.pi:
            return "pi"
        return self.firmware or f"arch{self.arch}"

    @property
    def uefi(self) -> bool:
        return self.firmware in UEFI_FIRMWARE


def is_ipxe(request: DhcpRequest) -> bool:
    """iPXE sends user class 'iPXE' (raw or RFC 3004 length-prefixed) or its option 175."""
    return request.has_ipxe_opts or request.user_class in (b"iPXE", b"\x04iPXE")


def pi_guid(machine_id: bytes | None) -> tuple[str, str] | None:
    """``(model, serial)`` from the Pi 4/5 EEPROM form of option 97, else None.

    Layout after the type byte, each field a little-endian 32-bit word: FourCC ('RPi4'/'RPi5' in
    byte order), board revision, low MAC bytes, serial.
    """
    if machine_id is None or len(machine_id) != 17 or machine_id[0] != 0:
        return None
    magic = machine_id[1:5]
    if magic not in PI_GUID_MAGIC:
        return None
    serial = int.from_bytes(machine_id[13:17], "little")
    return magic.decode("ascii"), f"{serial:08x}"


def classify(request: DhcpRequest) -> ClientClass:
    arch = request.arch
    guid = pi_guid(request.machine_id)
    pi = arch == 0 and (request.chaddr[:8] in PI_OUIS or guid is not None)
    return ClientClass(
        arch=arch,
        firmware=ARCH_FIRMWARE.get(arch) if arch is not None else None,
        ipxe=is_ipxe(request),
        pi=pi,
        pi_model=guid[0] if pi and guid else None,
        pi_serial=guid[1] if pi and guid else None,
    )


def device_ids(request: DhcpRequest, client: ClientClass) -> tuple[str, ...]:
    """Inventory ids this client may be listed under, preferred first (Pi serial, then MAC)."""
    mac_id = device_id_of_mac(request.chaddr)
    return (client.pi_serial, mac_id) if client.pi_serial else (mac_id,)
