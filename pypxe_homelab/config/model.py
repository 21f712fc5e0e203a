"""The inventory: one typed, validated model of config.yaml (server settings, defaults, nodes).

Nothing here reads files; ``config.loader`` builds these objects from YAML and reports errors with
file and line. Every other module takes an ``Inventory`` and never looks at YAML.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pypxe_homelab.identity import device_id_of_mac, is_pi_serial, mac_of_device_id

DEFAULT_ROOT = Path("/var/lib/pypxe-homelab")
DEFAULT_CONFIG_PATH = Path("/etc/pypxe-homelab/config.yaml")
DEFAULT_HTTP_PORT = 12345
DEFAULT_SERVICE_USER = "pypxe-homelab"

DEFAULT_LOADERS: dict[str, str] = {
    "bios": "lpxelinux.0",
    "efi64": "efi64/syslinux.efi",
    "efi32": "efi32/syslinux.efi",
    "arm64": "",
}

# Boot file per UEFI firmware class for machines whose firmware enforces Secure Boot: a signed shim that
# loads the signed GRUB next to it (grubx64.efi / grubaa64.efi), so nothing unsigned is ever offered.
DEFAULT_SECURE_BOOT_LOADERS: dict[str, str] = {
    "efi64": "shimx64.efi",
    "arm64": "shimaa64.efi",
}

# UEFI HTTP Boot: iPXE (SNP build) fetched over HTTP, which then asks for the machine's iPXE script.
DEFAULT_HTTP_BOOT_LOADERS: dict[str, str] = {"efi64": "snponly.efi", "efi32": "", "arm64": ""}

UnknownPolicy = Literal["menu", "ignore"]
UefiMode = Literal["binl", "direct", "http"]
InstallPolicy = Literal["once", "always", "never"]


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
    tftp_max_transfers: int = 256  # TFTP downloads running at once, in all ...
    tftp_max_per_client: int = 8  # ... and per client address; more get a TFTP error
    tftp_windowsize: int = 64  # largest RFC 7440 window granted to a client that asks; 1: lock-step only
    proxy_dhcp: bool = True
    unknown: UnknownPolicy = "menu"
    uefi_mode: UefiMode = "binl"
    pxe_vendor_classes: tuple[str, ...] = ("PXEClient", "HTTPClient")
    menu_timeout: int = 10  # seconds the unknown-machine screen shows before booting from disk
    # Boot file per firmware class, relative to tftproot; "" means that class is not served.
    loaders: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LOADERS))
    # The system user `serve` runs as once its ports are bound (when started as root).
    user: str = DEFAULT_SERVICE_USER
    # More addresses HTTP listens on besides the served interfaces and loopback (0.0.0.0: every address).
    http_listen: tuple[ipaddress.IPv4Address, ...] = ()
    # Signed boot file per UEFI class for Secure Boot machines; "" means such machines are not served.
    secure_boot_loaders: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SECURE_BOOT_LOADERS))
    # Boot file per UEFI class for UEFI HTTP Boot (vendor class HTTPClient), relative to tftproot and sent
    # as http://<server>:<http_port>/bootfiles/<path>; "" means HTTP Boot of that class is not answered.
    http_boot_loaders: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_HTTP_BOOT_LOADERS))
    diagnose_after: float = 30.0  # seconds a boot attempt must be quiet before the server says why it stopped


@dataclass(frozen=True)
class Paths:
    root: Path = DEFAULT_ROOT

    @functools.cached_property
    def tftproot(self) -> Path:  # cached: asked on every TFTP and HTTP request
        return self.root / "tftproot"

    @functools.cached_property
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
    pi_os: str | None = None  # the Pi image every Raspberry Pi node without its own os: gets
    install: InstallPolicy = "once"
    password: str = "ubuntu"  # plaintext or a $6$ crypt hash; only the hash is ever served
    ssh_authorized_keys: tuple[str, ...] = ()  # empty: first key of the invoking user's authorized_keys
    ssh_authorized_keys_file: Path | None = None
    storage: Mapping[str, Any] = field(default_factory=lambda: {"layout": {"name": "direct"}})
    autoinstall: Mapping[str, Any] = field(default_factory=dict)
    cmdline: str = ""  # extra kernel arguments for every node
    uefi_mode: UefiMode | None = None
    secure_boot: bool = False  # the machines' firmware enforces Secure Boot: serve only signed loaders
    dhcp_reply_delay: float = 0.0  # seconds to wait before answering a DISCOVER (firmware quirk)


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
    secure_boot: bool | None = None  # None: defaults.secure_boot
    dhcp_reply_delay: float | None = None  # None: defaults.dhcp_reply_delay
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
    nodes_declared_empty: bool = False  # the file says ``nodes: {}``: no nodes on purpose

    def node(self, device_id: str | None) -> Node | None:
        return self.nodes.get(device_id) if device_id else None

    def node_for_mac(self, mac: str | None) -> Node | None:
        return self.nodes.get(device_id_of_mac(mac)) if mac else None

    def secure_boot(self, node: Node | None) -> bool:
        """Whether the machine (None: an unknown one) gets the signed chain: its own setting, else defaults."""
        if node is not None and node.secure_boot is not None:
            return node.secure_boot
        return self.defaults.secure_boot

    def reply_delay(self, node: Node | None) -> float:
        """Seconds to hold back the answer to this machine's DISCOVER: its own setting, else defaults."""
        if node is not None and node.dhcp_reply_delay is not None:
            return node.dhcp_reply_delay
        return self.defaults.dhcp_reply_delay

    def loader(self, firmware: str, node: Node | None) -> str:
        """The boot file a firmware class gets ("" when not served); Secure Boot machines get the signed one.

        A Secure Boot machine is never offered an unsigned loader: a UEFI class without a signed loader is
        not served, and BIOS has no Secure Boot.
        """
        if firmware != "bios" and self.secure_boot(node):
            return self.server.secure_boot_loaders.get(firmware, "")
        return self.server.loaders.get(firmware, "")

    def effective(self, node: Node) -> Node:
        """The node with every unset field filled from ``defaults`` (what it really gets)."""
        d = self.defaults
        return replace(
            node,
            gateway=node.gateway or d.gateway,
            dns=node.dns or d.dns,
            os=node.os or (d.pi_os if node.is_pi else d.os),
            install=node.install or d.install,
            uefi_mode=node.uefi_mode or d.uefi_mode or self.server.uefi_mode,
            password=node.password if node.password is not None else d.password,
            ssh_authorized_keys=node.ssh_authorized_keys or d.ssh_authorized_keys,
            cmdline=" ".join(x for x in (d.cmdline, node.cmdline) if x),
            secure_boot=self.secure_boot(node),
            dhcp_reply_delay=self.reply_delay(node),
        )
