"""SSH keys for the installed system: sources in order, and refusal of anything that is not a public key."""

from __future__ import annotations

import ipaddress
import re

import pytest

from pypxe_homelab.boot.autoinstall import HostNetwork, authorized_keys, check_node, render_user_data
from pypxe_homelab.errors import UserError
from tests.fixtures.autoinstall.inventories import BASE_URL, PC_ID, inventory, public_key

HOST = HostNetwork(ipaddress.IPv4Address("192.168.1.1"))

PRIVATE = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ==\n-----END OPENSSH PRIVATE KEY-----"


def test_private_key_is_refused(tmp_path):
    inv = inventory(tmp_path, keys=(PRIVATE,))
    with pytest.raises(UserError, match="node01.*PRIVATE"):
        render_user_data(inv, inv.nodes[PC_ID], BASE_URL, 1, host=HOST)


def test_garbage_key_is_refused(tmp_path):
    inv = inventory(tmp_path, keys=("ssh-ed25519 not-base64!! me@x",))
    with pytest.raises(UserError, match="node01.*SSH key 1"):
        authorized_keys(inv, inv.nodes[PC_ID])
    assert any("SSH key 1" in p for p in check_node(inv, inv.nodes[PC_ID], host=HOST))


def test_empty_key_set_is_refused(tmp_path):
    empty = tmp_path / "authorized_keys"
    empty.write_text("# nothing here\n\n")
    inv = inventory(tmp_path, keys=(), keys_file=empty)
    with pytest.raises(UserError, match="no SSH public key"):
        authorized_keys(inv, inv.nodes[PC_ID])


def test_keys_file_is_used_when_no_keys_are_listed(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"# team\n{public_key('a@x', 2)}\n{public_key('b@x', 3)}\n")
    inv = inventory(tmp_path, keys=(), keys_file=path)
    assert authorized_keys(inv, inv.nodes[PC_ID]) == [public_key("a@x", 2), public_key("b@x", 3)]


def test_node_keys_win_over_defaults(tmp_path):
    from dataclasses import replace

    inv = inventory(tmp_path)
    node = replace(inv.nodes[PC_ID], ssh_authorized_keys=(public_key("node@x", 7),))
    inv = replace(inv, nodes={**inv.nodes, PC_ID: node})
    assert authorized_keys(inv, node) == [public_key("node@x", 7)]


@pytest.mark.parametrize(
    ("override", "name"),
    [
        ({"ssh": {"authorized-keys": ["garbage line"]}}, "autoinstall.ssh.authorized-keys[0]"),
        ({"ssh": {"authorized-keys": [PRIVATE]}}, "autoinstall.ssh.authorized-keys[0]"),
        ({"ssh": {"authorized-keys": "ssh-ed25519 AAAA"}}, "autoinstall.ssh.authorized-keys"),
        ({"user-data": {"ssh_authorized_keys": ["x"]}}, "autoinstall.user-data.ssh_authorized_keys[0]"),
        (
            {"user-data": {"users": [{"name": "a", "ssh_authorized_keys": ["ssh-rsa AAAA"]}]}},
            "autoinstall.user-data.users[0].ssh_authorized_keys[0]",
        ),
    ],
)
def test_keys_in_autoinstall_overrides_pass_the_same_check(tmp_path, override, name):
    inv = inventory(tmp_path, node_autoinstall=override)
    with pytest.raises(UserError, match=f"node01 .*: {re.escape(name)}: "):
        render_user_data(inv, inv.nodes[PC_ID], BASE_URL, 1, host=HOST)
    problems = check_node(inv, inv.nodes[PC_ID], host=HOST)
    assert any(name in p for p in problems) and all("\n" not in p for p in problems)


def test_good_override_keys_are_served(tmp_path):
    key = public_key("extra@x", 5)
    inv = inventory(tmp_path, node_autoinstall={"ssh": {"authorized-keys": [key]}})
    assert key in render_user_data(inv, inv.nodes[PC_ID], BASE_URL, 1, host=HOST)
