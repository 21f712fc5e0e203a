"""Who is asking, read from the packet alone: firmware class, iPXE, UEFI HTTP Boot, Raspberry Pi, device ids."""

from __future__ import annotations

from dataclasses import dataclass

from pypxe_homelab.identity import device_id_of_mac, pi_guid
from pypxe_homelab.identity import is_pi_mac as _is_pi_mac
from pypxe_homelab.protocol.dhcp_codec import DhcpRequest

# Option 93 value → firmware class (RFC 4578 / IANA processor architecture types).
ARCH_FIRMWARE: dict[int, str] = {
    0: "bios",
    6: "efi32",
    7: "efi64",
    9: "efi64",
    11: "arm64",
}
# The HTTP Boot architectures, mapped only for vendor class HTTPClient (a PXEClient claiming one is not served).
HTTP_ARCH_FIRMWARE: dict[int, str] = {15: "efi32", 16: "efi64", 19: "arm64"}
UEFI_FIRMWARE = frozenset({"efi32", "efi64", "arm64"})

PXE_VENDOR_CLASS = "PXEClient"
HTTP_VENDOR_CLASS = "HTTPClient"


@dataclass(frozen=True)
class ClientClass:
    """The classification of one request (from its bytes only)."""

    arch: int | None
    firmware: str | None  # bios / efi32 / efi64 / arm64, None when the arch has no mapping
    ipxe: bool = False
    pi: bool = False
    pi_model: str | None = None  # 'RPi4' / 'RPi5' when option 97 says so
    pi_serial: str | None = None  # 8 lower-case hex digits, from the RPi4/RPi5 form of option 97
    http: bool = False  # UEFI HTTP Boot: vendor class HTTPClient

    @property
    def name(self) -> str:
        """'pi' for a Raspberry Pi, else the firmware class (``-http`` for HTTP Boot), else 'arch<N>'."""
        if self.pi:
            return "pi"
        if self.firmware is None:
            return f"arch{self.arch}"
        return f"{self.firmware}-http" if self.http else self.firmware

    @property
    def uefi(self) -> bool:
        return self.firmware in UEFI_FIRMWARE


def is_ipxe(request: DhcpRequest) -> bool:
    """iPXE sends user class 'iPXE' (raw or RFC 3004 length-prefixed) or its option 175."""
    return request.has_ipxe_opts or request.user_class in (b"iPXE", b"\x04iPXE")


def classify(request: DhcpRequest) -> ClientClass:
    arch = request.arch
    guid = pi_guid(request.machine_id)
    pi = arch == 0 and (_is_pi_mac(request.chaddr) or guid is not None)
    http = (request.vendor_class or "").startswith(HTTP_VENDOR_CLASS)
    return ClientClass(
        arch=arch,
        firmware=None if arch is None else (HTTP_ARCH_FIRMWARE if http else ARCH_FIRMWARE).get(arch),
        ipxe=is_ipxe(request),
        pi=pi,
        pi_model=guid[0] if pi and guid else None,
        pi_serial=guid[1] if pi and guid else None,
        http=http,
    )


def device_ids(request: DhcpRequest, client: ClientClass) -> tuple[str, ...]:
    """Inventory ids this client may be listed under, preferred first (Pi serial, then MAC)."""
    mac_id = device_id_of_mac(request.chaddr)
    return (client.pi_serial, mac_id) if client.pi_serial else (mac_id,)
