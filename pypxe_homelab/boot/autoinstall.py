"""The NoCloud seed a node's Ubuntu installer fetches: user-data (Subiquity autoinstall), meta-data, and the
empty vendor-data / network-config.

``build_autoinstall`` makes the ``autoinstall:`` mapping (a plain dict); the templates in ``templates/`` turn it
into the served text. Only a SHA-512 crypt hash of the password is ever written.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from passlib.hash import sha512_crypt

from pypxe_homelab.assets.autoinstall_schema import validate_autoinstall
from pypxe_homelab.assets.bootloaders import is_ipxe_loader
from pypxe_homelab.assets.images import image_chain, image_paths, image_release, iso_file_name, load_catalogue
from pypxe_homelab.boot.kernel_cmdline import cmdline_problems, installer_tokens
from pypxe_homelab.boot.rendering import render_template
from pypxe_homelab.config import values as V
from pypxe_homelab.config.hostnet import default_gateway, upstream_dns
from pypxe_homelab.config.model import Inventory, Node
from pypxe_homelab.config.ssh_keys import default_authorized_keys, invoking_user_home, parse_public_key
from pypxe_homelab.errors import UserError

USERNAME = "ubuntu"
SUDOERS_FILE = "/target/etc/sudoers.d/90-ubuntu-nopasswd"
PI_INTERFACE = "eth0"  # a Pi's device id carries no MAC: match the on-board NIC by name
SEED_FILES = ("user-data", "meta-data", "vendor-data", "network-config")
TOKEN_PLACEHOLDER = "<install-token>"  # what `render` shows; the served user-data holds the real one

_CRYPT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class HostNetwork:
    """The server host's gateway and resolvers: what a node gets when config.yaml leaves them unset."""

    gateway: ipaddress.IPv4Address | None = None
    dns: tuple[ipaddress.IPv4Address, ...] = field(default_factory=tuple)


@lru_cache(maxsize=1)
def detect_host_network() -> HostNetwork:
    return HostNetwork(gateway=default_gateway(), dns=tuple(upstream_dns()))


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: mappings merge key by key, every other value (lists too) is replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _salt_for(device_id: str) -> str:
    digest = hashlib.sha256(b"pypxe-homelab password salt\0" + device_id.encode()).digest()
    return "".join(_CRYPT_ALPHABET[b % 64] for b in digest[:16])


@lru_cache(maxsize=256)
def password_hash(password: str, device_id: str) -> str:
    """A configured SHA-512 (``$6$``) or yescrypt (``$y$``) hash unchanged; a plaintext hashed with SHA-512
    crypt, salted from the device id (so every render of a node is the same text). Any other ``$id$`` value
    is refused (``values.password``)."""
    try:
        V.password(password)
    except V.Invalid as exc:
        raise UserError(f"node {device_id}: password: {exc}") from None
    if V.password_kind(password) != "plaintext":
        return password
    return sha512_crypt.using(salt=_salt_for(device_id), rounds=5000).hash(password)


def _raw(inventory: Inventory, node: Node) -> Node:
    """The node as written in config.yaml (callers may hold the already-effective one)."""
    return inventory.node(node.device_id) or node


def authorized_keys(inventory: Inventory, node: Node) -> list[str]:
    """Public keys for the node: its own, else the defaults', else ``ssh_authorized_keys_file``, else the first
    key of the invoking user's ~/.ssh/authorized_keys. UserError for a bad key or when none is found."""
    raw = _raw(inventory, node)
    where = f"node {raw.name} ({raw.device_id})"
    if raw.ssh_authorized_keys:
        lines, origin = list(raw.ssh_authorized_keys), f"nodes.{raw.device_id}.ssh_authorized_keys"
    elif inventory.defaults.ssh_authorized_keys:
        lines, origin = list(inventory.defaults.ssh_authorized_keys), "defaults.ssh_authorized_keys"
    elif inventory.defaults.ssh_authorized_keys_file is not None:
        path = _resolve(inventory, inventory.defaults.ssh_authorized_keys_file)
        try:
            text = path.read_text(errors="replace")
        except OSError as exc:
            raise UserError(f"{where}: cannot read ssh_authorized_keys_file {path}: {exc.strerror}") from None
        lines = [x for x in text.splitlines() if x.strip() and not x.lstrip().startswith("#")]
        origin = str(path)
    else:
        lines, origin = default_authorized_keys(), str(invoking_user_home() / ".ssh" / "authorized_keys")
    keys = []
    for number, line in enumerate(lines, 1):
        try:
            keys.append(parse_public_key(line))
        except ValueError as exc:
            raise UserError(f"{where}: SSH key {number} from {origin}: {exc}") from None
    if not keys:
        raise UserError(
            f"{where}: no SSH public key to install (looked in {origin}); "
            "set defaults.ssh_authorized_keys in config.yaml to a line of your ~/.ssh/id_ed25519.pub"
        )
    return keys


def _resolve(inventory: Inventory, path: Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_absolute() and inventory.source is not None:
        return inventory.source.parent / path
    return path


def netplan_addressing(eff: Node, host: HostNetwork) -> dict[str, Any]:
    """A netplan NIC's addressing for ``eff``: DHCP, or its static address with the default route and DNS
    (the host's gateway and resolvers where the node names none)."""
    if eff.address is None:
        return {"dhcp4": True}
    nic: dict[str, Any] = {"dhcp4": False, "addresses": [str(eff.address)]}
    gateway = eff.gateway or host.gateway
    if gateway is not None:
        nic["routes"] = [{"to": "default", "via": str(gateway)}]
    dns = eff.dns or host.dns or ((gateway,) if gateway else ())
    if dns:
        nic["nameservers"] = {"addresses": [str(d) for d in dns]}
    return nic


def _network(eff: Node, host: HostNetwork) -> dict[str, Any]:
    nic: dict[str, Any] = {"match": {"macaddress": eff.mac}} if eff.mac else {}
    nic.update(netplan_addressing(eff, host))
    return {"version": 2, "ethernets": {"nic0" if eff.mac else PI_INTERFACE: nic}}


def _use_legacy(name: str) -> str:
    """Switch ``name`` to its ``-legacy`` variant (k3s) only when the target offers that alternative: a
    failing late-command aborts the whole install."""
    legacy = f"/usr/sbin/{name}-legacy"
    return (
        f"curtin in-target -- sh -c 'if update-alternatives --list {name} 2>/dev/null | grep -qx {legacy}; "
        f"then update-alternatives --set {name} {legacy}; fi'"
    )


def _late_commands(username: str, node_url: str, token: str) -> list[str]:
    return [
        f"echo '{username} ALL=(ALL) NOPASSWD:ALL' > {SUDOERS_FILE}",
        f"chmod 0440 {SUDOERS_FILE}",
        *(_use_legacy(name) for name in ("iptables", "ip6tables")),
        f"wget -q -O /dev/null --post-data=token={token} {node_url}/installed || true",
    ]


def _key_lists(doc: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Every place of the autoinstall mapping whose keys end up on the machine, with its dotted name."""
    found: list[tuple[str, Any]] = []
    ssh = doc.get("ssh")
    if isinstance(ssh, Mapping) and "authorized-keys" in ssh:
        found.append(("autoinstall.ssh.authorized-keys", ssh["authorized-keys"]))
    user_data = doc.get("user-data")
    if isinstance(user_data, Mapping):
        for key in ("ssh_authorized_keys", "ssh-authorized-keys"):
            if key in user_data:
                found.append((f"autoinstall.user-data.{key}", user_data[key]))
        users = user_data.get("users")
        for index, user in enumerate(users if isinstance(users, list) else []):
            for key in ("ssh_authorized_keys", "ssh-authorized-keys"):
                if isinstance(user, Mapping) and key in user:
                    found.append((f"autoinstall.user-data.users[{index}].{key}", user[key]))
    return found


def _check_override_keys(doc: Mapping[str, Any], where: str) -> None:
    """The same public-key check for keys given through ``autoinstall`` overrides as for ssh_authorized_keys."""
    for name, keys in _key_lists(doc):
        if not isinstance(keys, list):
            raise UserError(f"{where}: {name}: is not a list; write a list of public key lines")
        for index, line in enumerate(keys):
            try:
                if not isinstance(line, str):
                    raise ValueError(f"{line!r} is not a public key line")
                parse_public_key(line)
            except ValueError as exc:
                raise UserError(
                    f"{where}: {name}[{index}]: {exc}; paste one line of a .pub file, like ssh-ed25519 AAAA… you@host"
                ) from None


def build_autoinstall(
    inventory: Inventory,
    node: Node,
    base_url: str,
    *,
    host: HostNetwork | None = None,
    token: str = TOKEN_PLACEHOLDER,
) -> dict[str, Any]:
    """The value of the ``autoinstall:`` key for ``node`` (Subiquity autoinstall reference).

    ``defaults.autoinstall`` then ``nodes.<id>.autoinstall`` are deep-merged over the generated mapping; their
    ``late-commands`` are appended to the generated ones (which hold the sudoers file and the install callback).
    ``token`` is the node's per-install token: only its webhook and callback carrying it change its state.
    """
    raw = _raw(inventory, node)
    eff = inventory.effective(raw)
    node_url = f"{base_url.rstrip('/')}/{raw.device_id}"
    doc: dict[str, Any] = {
        "version": 1,
        "identity": {
            "hostname": eff.name,
            "username": USERNAME,
            "password": password_hash(eff.password or "", raw.device_id),
        },
        "ssh": {
            "install-server": True,
            "allow-pw": False,
            "authorized-keys": authorized_keys(inventory, raw),
        },
        "network": _network(eff, host or detect_host_network()),
        "storage": copy.deepcopy(dict(inventory.defaults.storage)),
        "reporting": {
            "pypxe": {"type": "webhook", "endpoint": f"{node_url}/events?token={token}", "level": "INFO"}
        },
        "shutdown": "reboot",
    }
    extra_late: list[Any] = []
    for override in (inventory.defaults.autoinstall, raw.autoinstall):
        override = dict(override)
        extra_late += list(override.pop("late-commands", None) or [])
        doc = deep_merge(doc, override)
    _check_override_keys(doc, f"node {raw.name} ({raw.device_id})")
    username = str(doc.get("identity", {}).get("username", USERNAME))
    doc["late-commands"] = _late_commands(username, node_url, token) + extra_late
    return doc


def render_user_data(
    inventory: Inventory,
    node: Node,
    base_url: str,
    generation: int,
    *,
    host: HostNetwork | None = None,
    token: str = TOKEN_PLACEHOLDER,
) -> str:
    """``user-data``: ``#cloud-config`` on the first line, then the ``autoinstall:`` mapping."""
    raw = _raw(inventory, node)
    doc = build_autoinstall(inventory, raw, base_url, host=host, token=token)
    body = yaml.safe_dump({"autoinstall": doc}, sort_keys=False, default_flow_style=False, width=4096)
    return render_template(
        "user-data.j2", device_id=raw.device_id, hostname=raw.name, generation=generation, body=body
    )


def render_meta_data(node: Node, generation: int) -> str:
    """``meta-data``: a new ``instance-id`` per install generation makes cloud-init run again."""
    return render_template("meta-data.j2", instance_id=f"{node.device_id}-{generation}", hostname=node.name)


def render_vendor_data() -> str:
    """``vendor-data``: served as an empty 200 (a 404 costs cloud-init ten retries)."""
    return ""


def render_network_config() -> str:
    """``network-config``: empty (the installer's network comes from the ``ip=dhcp`` boot)."""
    return ""


def seed_file(
    inventory: Inventory,
    node: Node,
    name: str,
    base_url: str,
    generation: int,
    token: str = TOKEN_PLACEHOLDER,
) -> str | None:
    """The body of ``/<id>/cloud-init/<name>``, or None for a name that is not a seed file (→ 404)."""
    if name == "user-data":
        return render_user_data(inventory, node, base_url, generation, token=token)
    if name == "meta-data":
        return render_meta_data(_raw(inventory, node), generation)
    if name == "vendor-data":
        return render_vendor_data()
    if name == "network-config":
        return render_network_config()
    return None


def secure_boot_chain_missing(inventory: Inventory, node: Node, image: str) -> bool:
    """Whether a Secure Boot node installing ``image`` would be sent a signed chain that cannot start the
    image's kernel: no Ubuntu chain in the image, and not iPXE's signed chain (whose ``shim`` can)."""
    if not inventory.secure_boot(node) or node.is_pi:
        return False
    if is_ipxe_loader(inventory.server.secure_boot_loaders.get("efi64", "")):
        return False
    return image_chain(inventory.paths.httproot, image) is None


def check_node(inventory: Inventory, node: Node, *, host: HostNetwork | None = None) -> list[str]:
    """Every problem that would stop ``node`` from installing, one line each naming the node; [] when fine."""
    raw = _raw(inventory, node)
    eff = inventory.effective(raw)
    where = f"node {raw.name} ({raw.device_id})"
    if not eff.os:
        return []
    host = host or detect_host_network()
    root = inventory.paths.httproot
    problems: list[str] = []
    iso_file = iso_file_name(root, eff.os)
    if iso_file is None:
        known = ", ".join(sorted(load_catalogue()))
        problems.append(
            f"{where}: os {eff.os!r} is not in the catalogue ({known}) nor an added image; "
            f"run `pypxe-homelab images add PATH.iso --name {eff.os}` or pick a catalogue name"
        )
    else:
        if image_paths(root, eff.os) is None:
            problems.append(
                f"{where}: image {eff.os!r} is not fetched yet; run `pypxe-homelab images fetch {eff.os}` "
                f"(without internet: `pypxe-homelab images add PATH.iso --name {eff.os}`)"
            )
        elif secure_boot_chain_missing(inventory, raw, eff.os):
            problems.append(
                f"{where}: secure_boot is on but image {eff.os!r} carries no Ubuntu Secure Boot chain (shim and "
                "signed network GRUB from its ISO), and Debian's chain refuses Ubuntu's kernel: run "
                f"`pypxe-homelab images fetch {eff.os}` (or `images add` again) to read the chain from the ISO, "
                "or switch Secure Boot off in the machine's firmware for the install"
            )
        tokens = installer_tokens("http://255.255.255.255:65535", raw.device_id, iso_file, eff.cmdline)
        problems += [f"{where}: {p}" for p in cmdline_problems(tokens)]
    try:
        doc = build_autoinstall(inventory, raw, "http://0.0.0.0", host=host)
    except UserError as exc:
        return problems + [str(exc)]
    problems += [f"{where}: {msg}" for msg in validate_autoinstall(doc, image_release(root, eff.os))]
    network_text = yaml.safe_dump(doc.get("network", {}))
    if "gateway4" in network_text or "gateway6" in network_text:
        problems.append(
            f"{where}: autoinstall.network uses gateway4/gateway6; use routes: [{{to: default, via: …}}]"
        )
    if eff.address is not None and eff.gateway is None and host.gateway is None:
        problems.append(f"{where}: static address {eff.address} but no gateway known; set defaults.gateway")
    return problems
