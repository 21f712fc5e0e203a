"""The inventory: one typed, validated model of config.yaml (server settings, defaults, nodes).

Nothing here reads files; ``config.loader`` builds these objects from YAML and reports errors with
file and line. Every other module takes an ``Inventory`` and never looks at YAML.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

DEFAULT_ROOT = Path("/var/lib/pypxe-homelab")
DEFAULT_CONFIG_PATH = Path("/etc/pypxe-homelab/config.yaml")
DEFAULT_HTTP_PORT = 12345

DEFAULT_LOADERS: dict[str, str] = {
    "bios": "lpxelinux.0",
    "efi64": "efi64/syslinux.efi",
    "efi32": "efi32/syslinux.efi",
    "arm64": "",
}

UnknownPolicy = Literal["menu", "ignore"]
UefiMode = Literal["binl", "direct"]
InstallPolicy = Literal["once", "always", "never"]

_MAC_ID = re.compile(r"^01-([0-9a-f]{2}(?:-[0-9a-f]{2}){5})$")
_PI_SERIAL = re.compile(r"^[0-9a-f]{8}$")
_BARE_MAC = re.compile(r"^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(?:\1[0-9a-fA-F]{2}){4}$")


def normalise_device_id(text: str) -> str:
    """Return the canonical device id for ``text`` or raise ValueError saying what is accepted.

    Accepted: ``01-aa-bb-cc-dd-ee-ff`` (a PC, any case), a bare MAC ``aa:bb:cc:dd:ee:ff`` or
    ``aa-bb-cc-dd-ee-ff`` (turned into ``01-…``), or 8 hex digits (a Raspberry Pi serial, lower-cased).
    """
    raw = text.strip()
    low = raw.lower()
    if _MAC_ID.match(low):
        return low
    if _BARE_MAC.match(raw):
        return "01-" + low.replace(":", "-")
    if _PI_SERIAL.match(low):
        return low
    raise ValueError(
        f"{text!r} is not a device id: use 01-<mac> with dashes (01-52-54-00-a0-00-01), "
        "a MAC (52:54:00:a0:00:01) or a Raspberry Pi serial of 8 hex digits (7092246e)"
    )


def mac_of_device_id(device_id: str) -> str | None:
    """``01-aa-bb-…`` → ``aa:bb:…``; None for a Pi serial."""
    m = _MAC_ID.match(device_id)
    return m.group(1).replace("-", ":") if m else None


def device_id_of_mac(mac: str) -> str:
    """``aa:bb:cc:dd:ee:ff`` (any case or separator) → ``01-aa-bb-cc-dd-ee-ff``."""
    return "01-" + mac.lower().replace(":", "-")


def add_command(device_id: str, ip: str | None = None) -> str:
    """The command that registers ``device_id``; the address suggested is the one it has now, if known."""
    address = f"{ip}/24" if ip else "<address>/<prefix>"
    return f"pypxe-homelab add {device_id} --node-address {address}"


def is_pi_serial(device_id: str) -> bool:
    return bool(_PI_SERIAL.match(device_id))


@dataclass(frozen=True)
class BootSpec:
    """Boot any kernel: paths relative to httproot, or absolute http(s) URLs."""

    kernel: str
    initrd: tuple[str, ...] = ()
    cmdline: str = ""


@dataclass(frozen=True)
class ServerSettings:
    interfaces: tuple[str, ...] = ()  # empty: the interface of the default route
    address: ipaddress.IPv4Address | None = None  # advertised address; default: the interface's own
    http_port: int = DEFAULT_HTTP_PORT
    tftp_port: int = 69
    proxy_dhcp: bool = True
    unknown: UnknownPolicy = "menu"
    uefi_mode: UefiMode = "binl"
    pxe_vendor_classes: tuple[str, ...] = ("PXEClient",)
    menu_timeout: int = 10  # seconds the unknown-machine screen shows before booting from disk
    # Boot file per firmware class, relative to tftproot; "" means that class is not served.
    loaders: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LOADERS))


@dataclass(frozen=True)
class Paths:
    root: Path = DEFAULT_ROOT

    @property
    def tftproot(self) -> Path:
        return self.root / "tftproot"

    @property
    def httproot(self) -> Path:
        return self.root / "httproot"

    @property
    def iscsiroot(self) -> Path:
        return self.root / "iscsiroot"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def state_db(self) -> Path:
        return self.root / "state.db"


@dataclass(frozen=True)
class Defaults:
    gateway: ipaddress.IPv4Address | None = None  # None: the host's default gateway
    dns: tuple[ipaddress.IPv4Address, ...] = ()  # empty: the host's upstream resolvers
    os: str | None = None
    install: InstallPolicy = "once"
    password: str = "ubuntu"  # plaintext or a $6$ crypt hash; only the hash is ever served
    ssh_authorized_keys: tuple[str, ...] = ()  # empty: first key of the invoking user's authorized_keys
    ssh_authorized_keys_file: Path | None = None
    storage: Mapping[str, Any] = field(default_factory=lambda: {"layout": {"name": "direct"}})
    autoinstall: Mapping[str, Any] = field(default_factory=dict)
    cmdline: str = ""  # extra kernel arguments for every node
    uefi_mode: UefiMode | None = None


@dataclass(frozen=True)
class Node:
    device_id: str
    address: ipaddress.IPv4Interface | None = None
    gateway: ipaddress.IPv4Address | None = None
    dns: tuple[ipaddress.IPv4Address, ...] = ()
    hostname: str | None = None
    os: str | None = None
    boot: BootSpec | None = None
    install: InstallPolicy | None = None
    uefi_mode: UefiMode | None = None
    password: str | None = None
    ssh_authorized_keys: tuple[str, ...] = ()
    autoinstall: Mapping[str, Any] = field(default_factory=dict)
    cmdline: str = ""
    line: int | None = None  # line of the node's key in config.yaml, for messages

    @property
    def mac(self) -> str | None:
        return mac_of_device_id(self.device_id)

    @property
    def is_pi(self) -> bool:
        return is_pi_serial(self.device_id)

    @property
    def name(self) -> str:
        """The hostname the machine gets: ``hostname`` if set, else the device id."""
        return self.hostname or self.device_id


@dataclass(frozen=True)
class Inventory:
    server: ServerSettings = field(default_factory=ServerSettings)
    paths: Paths = field(default_factory=Paths)
    defaults: Defaults = field(default_factory=Defaults)
    nodes: Mapping[str, Node] = field(default_factory=dict)
    source: Path | None = None  # None: the embedded default

    def node(self, device_id: str | None) -> Node | None:
        return self.nodes.get(device_id) if device_id else None

    def node_for_mac(self, mac: str | None) -> Node | None:
        return self.nodes.get(device_id_of_mac(mac)) if mac else None

    def effective(self, node: Node) -> Node:
        """The node with every unset field filled from ``defaults`` (what it really gets)."""
        d = self.defaults
        from dataclasses import replace

        return replace(
            node,
            gateway=node.gateway or d.gateway,
            dns=node.dns or d.dns,
            os=node.os or d.os,
            install=node.install or d.install,
            uefi_mode=node.uefi_mode or d.uefi_mode or self.server.uefi_mode,
            password=node.password if node.password is not None else d.password,
            ssh_authorized_keys=node.ssh_authorized_keys or d.ssh_authorized_keys,
            cmdline=" ".join(x for x in (d.cmdline, node.cmdline) if x),
        )
