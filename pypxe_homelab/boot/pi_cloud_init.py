"""The NoCloud seed a Raspberry Pi's preinstalled Ubuntu reads on first boot (``/<serial>/cloud-init/``).

Not an installer: the image's own cloud-init applies a ``#cloud-config`` user-data (hostname, user ``ubuntu``
with the hashed password and NOPASSWD sudo, SSH keys only, iptables-legacy, the first-boot callback) and a
network-config v2 that keeps the address the initramfs gave the link the root disk is reached over. The node
settings and checks are the ones a PC gets (``boot.autoinstall``).
"""

from __future__ import annotations

from typing import Any

import yaml

from pypxe_homelab.assets.autoinstall_schema import validate_user_data
from pypxe_homelab.boot.autoinstall import (
    PI_INTERFACE,
    TOKEN_PLACEHOLDER,
    USERNAME,
    HostNetwork,
    authorized_keys,
    detect_host_network,
    netplan_addressing,
    password_hash,
    render_meta_data,
)
from pypxe_homelab.boot.rendering import render_template
from pypxe_homelab.config.model import Inventory, Node
from pypxe_homelab.errors import UserError

SUDO_RULE = "ALL=(ALL) NOPASSWD:ALL"
# Top-level keys of the user-data, each checked against its expected type by ``check_user_data``.
_EXPECTED: dict[str, type] = {
    "hostname": str,
    "fqdn": str,
    "preserve_hostname": bool,
    "users": list,
    "ssh_pwauth": bool,
    "disable_root": bool,
    "chpasswd": dict,
    "runcmd": list,
    "phone_home": dict,
}


def _dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=4096)


def build_user_data(
    inventory: Inventory, node: Node, base_url: str, token: str = TOKEN_PLACEHOLDER
) -> dict[str, Any]:
    """The cloud-config mapping for Pi ``node`` (UserError for a bad or missing SSH key, empty password).

    ``token`` is the node's per-install token: its first-boot callback carries it, as an installer's does."""
    raw = inventory.node(node.device_id) or node
    eff = inventory.effective(raw)
    node_url = f"{base_url.rstrip('/')}/{raw.device_id}"
    return {
        "hostname": eff.name,
        "preserve_hostname": False,
        "users": [
            {
                "name": USERNAME,
                "gecos": "Ubuntu",
                "groups": ["adm", "sudo"],
                "shell": "/bin/bash",
                "lock_passwd": False,
                "hashed_passwd": password_hash(eff.password or "", raw.device_id),
                "sudo": SUDO_RULE,
                "ssh_authorized_keys": authorized_keys(inventory, raw),
            }
        ],
        "chpasswd": {"expire": False},
        "ssh_pwauth": False,
        "disable_root": True,
        "runcmd": [
            ["update-alternatives", "--set", "iptables", "/usr/sbin/iptables-legacy"],
            ["update-alternatives", "--set", "ip6tables", "/usr/sbin/ip6tables-legacy"],
        ],
        "phone_home": {
            "url": f"{node_url}/installed?token={token}",
            "post": ["hostname", "instance_id"],
            "tries": 10,
        },
    }


def build_network_config(inventory: Inventory, node: Node, host: HostNetwork) -> dict[str, Any]:
    """Netplan v2 for ``eth0``: the node's static address (or DHCP), marked ``critical`` so networkd never
    takes the address away from under the iSCSI root."""
    eff = inventory.effective(inventory.node(node.device_id) or node)
    nic: dict[str, Any] = {"critical": True, **netplan_addressing(eff, host)}
    return {"version": 2, "ethernets": {PI_INTERFACE: nic}}


def check_user_data(doc: dict[str, Any]) -> list[str]:
    """Structural check of the generated cloud-config (key types, the one user's fields)."""
    problems = [
        f"user-data key {key!r} should be a {kind.__name__}"
        for key, kind in _EXPECTED.items()
        if key in doc and not isinstance(doc[key], kind)
    ]
    users = doc.get("users") or []
    if not users or not isinstance(users[0], dict) or not users[0].get("ssh_authorized_keys"):
        problems.append("user-data has no user with SSH keys")
    return problems


def render_pi_user_data(
    inventory: Inventory,
    node: Node,
    base_url: str,
    generation: int,
    token: str = TOKEN_PLACEHOLDER,
    *,
    host: HostNetwork | None = None,
) -> str:
    doc = build_user_data(inventory, node, base_url, token)
    return render_template(
        "pi-user-data.j2",
        device_id=node.device_id,
        hostname=node.name,
        generation=generation,
        body=_dump(doc),
    )


def render_pi_network_config(inventory: Inventory, node: Node, *, host: HostNetwork | None = None) -> str:
    doc = build_network_config(inventory, node, host or detect_host_network())
    return render_template("pi-network-config.j2", device_id=node.device_id, body=_dump(doc))


def pi_seed_file(
    inventory: Inventory,
    node: Node,
    name: str,
    base_url: str,
    generation: int,
    token: str = TOKEN_PLACEHOLDER,
) -> str | None:
    """The body of ``/<serial>/cloud-init/<name>`` for a Pi node, or None for a name that is not a seed file."""
    if name == "user-data":
        return render_pi_user_data(inventory, node, base_url, generation, token)
    if name == "meta-data":
        return render_meta_data(inventory.node(node.device_id) or node, generation)
    if name == "vendor-data":
        return ""
    if name == "network-config":
        return render_pi_network_config(inventory, node)
    return None


def check_pi_seed(inventory: Inventory, node: Node) -> list[str]:
    """Problems of the Pi's seed, one line each naming the node."""
    where = f"node {node.name} ({node.device_id})"
    try:
        doc = build_user_data(inventory, node, "http://0.0.0.0")
    except UserError as exc:
        return [str(exc)]
    return [f"{where}: {p}" for p in (*check_user_data(doc), *validate_user_data(doc))]
