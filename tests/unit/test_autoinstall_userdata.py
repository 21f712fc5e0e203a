"""user-data / meta-data rendering: format, schema, password, network, late-commands, merge."""

from __future__ import annotations

import ipaddress
import os
import shlex
import subprocess

import pytest
import yaml
from passlib.hash import sha512_crypt

from pypxe_homelab.assets.autoinstall_schema import schema_file_for, validate_autoinstall
from pypxe_homelab.assets.images import load_catalogue
from pypxe_homelab.boot.autoinstall import (
    HostNetwork,
    build_autoinstall,
    check_node,
    deep_merge,
    render_meta_data,
    render_user_data,
    seed_file,
)
from tests.fixtures.autoinstall.inventories import BASE_URL, PC24_ID, PC_ID, PI_ID, inventory

HOST = HostNetwork(ipaddress.IPv4Address("192.168.1.254"), (ipaddress.IPv4Address("192.168.1.254"),))


def user_data(inv, device_id: str, generation: int = 1) -> tuple[str, dict]:
    text = render_user_data(inv, inv.nodes[device_id], BASE_URL, generation, host=HOST)
    return text, yaml.safe_load(text)["autoinstall"]


@pytest.mark.parametrize(("device_id", "schema"), [(PC_ID, "22.04.1"), (PC24_ID, "24.04")])
def test_user_data_is_cloud_config_and_passes_its_release_schema(tmp_path, device_id, schema):
    inv = inventory(tmp_path)
    text, doc = user_data(inv, device_id)
    assert text.splitlines()[0] == "#cloud-config"
    assert set(yaml.safe_load(text)) == {"autoinstall"}
    assert doc["version"] == 1
    release = load_catalogue()[inv.effective(inv.nodes[device_id]).os].release
    assert schema in schema_file_for(release)
    assert validate_autoinstall(doc, release) == []
    assert doc["identity"]["hostname"] == inv.nodes[device_id].name
    assert doc["identity"]["username"] == "ubuntu"
    assert doc["ssh"] == {
        "install-server": True,
        "allow-pw": False,
        "authorized-keys": list(inv.defaults.ssh_authorized_keys),
    }
    assert doc["reporting"]["pypxe"] == {
        "type": "webhook",
        "endpoint": f"{BASE_URL}/{device_id}/events?token=<install-token>",  # render shows the placeholder
        "level": "INFO",
    }
    assert doc["shutdown"] == "reboot"
    assert doc["storage"] == {"layout": {"name": "direct"}}


def test_rendering_is_stable(tmp_path):
    inv = inventory(tmp_path)
    assert user_data(inv, PC_ID)[0] == user_data(inv, PC_ID)[0]


def test_password_is_a_sha512_hash_of_the_configured_plaintext_and_never_served_plain(tmp_path):
    inv = inventory(tmp_path, password="correct horse battery")
    text, doc = user_data(inv, PC_ID)
    hashed = doc["identity"]["password"]
    assert hashed.startswith("$6$")
    assert sha512_crypt.verify("correct horse battery", hashed)
    served = (
        text
        + render_meta_data(inv.nodes[PC_ID], 1)
        + "".join(
            seed_file(inv, inv.nodes[PC_ID], name, BASE_URL, 1) or ""
            for name in ("vendor-data", "network-config")
        )
    )
    assert "correct horse battery" not in served
    # salt depends on the node: two nodes with the same password get different hashes
    assert user_data(inv, PC24_ID)[1]["identity"]["password"] != hashed


def test_configured_hash_is_passed_through(tmp_path):
    given = sha512_crypt.using(salt="abcdefgh", rounds=5000).hash("ubuntu")
    _, doc = user_data(inventory(tmp_path, password=given), PC_ID)
    assert doc["identity"]["password"] == given


def test_netplan_matches_the_mac_with_static_address_default_route_and_dns(tmp_path):
    text, doc = user_data(inventory(tmp_path), PC_ID)
    assert doc["network"] == {
        "version": 2,
        "ethernets": {
            "nic0": {
                "match": {"macaddress": "52:54:00:12:34:56"},
                "dhcp4": False,
                "addresses": ["192.168.1.51/24"],
                "routes": [{"to": "default", "via": "192.168.1.1"}],
                "nameservers": {"addresses": ["192.168.1.1", "9.9.9.9"]},
            }
        },
    }
    assert "gateway4" not in text


def test_host_gateway_and_dns_fill_in_when_config_leaves_them_unset(tmp_path):
    from dataclasses import replace

    inv = inventory(tmp_path)
    inv = replace(inv, defaults=replace(inv.defaults, gateway=None, dns=()))
    nic = user_data(inv, PC_ID)[1]["network"]["ethernets"]["nic0"]
    assert nic["routes"] == [{"to": "default", "via": "192.168.1.254"}]
    assert nic["nameservers"] == {"addresses": ["192.168.1.254"]}


def test_pi_without_mac_matches_eth0_by_name(tmp_path):
    _, doc = user_data(inventory(tmp_path), PI_ID)
    assert list(doc["network"]["ethernets"]) == ["eth0"]
    assert "match" not in doc["network"]["ethernets"]["eth0"]


def test_late_commands_sudoers_iptables_legacy_and_callback(tmp_path):
    _, doc = user_data(inventory(tmp_path), PC_ID)
    late = doc["late-commands"]
    assert "echo 'ubuntu ALL=(ALL) NOPASSWD:ALL' > /target/etc/sudoers.d/90-ubuntu-nopasswd" in late
    assert "chmod 0440 /target/etc/sudoers.d/90-ubuntu-nopasswd" in late
    legacy = [c for c in late if "legacy" in c]
    assert len(legacy) == 2 and all(c.startswith("curtin in-target -- sh -c ") for c in legacy)
    # a POST carrying the install token (a GET changes nothing)
    assert (
        late[-1]
        == f"wget -q -O /dev/null --post-data=token=<install-token> {BASE_URL}/{PC_ID}/installed || true"
    )


def test_meta_data_instance_id_changes_per_generation(tmp_path):
    inv = inventory(tmp_path)
    assert yaml.safe_load(render_meta_data(inv.nodes[PC_ID], 4)) == {
        "instance-id": f"{PC_ID}-4",
        "local-hostname": "node01",
    }
    assert seed_file(inv, inv.nodes[PC_ID], "vendor-data", BASE_URL, 1) == ""
    assert seed_file(inv, inv.nodes[PC_ID], "network-config", BASE_URL, 1) == ""
    assert seed_file(inv, inv.nodes[PC_ID], "passwd", BASE_URL, 1) is None


def test_effective_node_gives_the_same_user_data_as_the_raw_node(tmp_path):
    inv = inventory(tmp_path)
    eff = inv.effective(inv.nodes[PC_ID])
    assert render_user_data(inv, eff, BASE_URL, 1, host=HOST) == user_data(inv, PC_ID)[0]


def test_deep_merge_replaces_scalars_and_lists_and_merges_mappings():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert deep_merge(base, {"a": {"c": [3], "e": 2}, "f": 3}) == {
        "a": {"b": 1, "c": [3], "e": 2},
        "d": 1,
        "f": 3,
    }
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}


def test_defaults_then_node_autoinstall_are_merged_over_the_generated_document(tmp_path):
    inv = inventory(
        tmp_path,
        defaults_autoinstall={
            "storage": {"layout": {"name": "lvm"}},
            "locale": "en_GB.UTF-8",
            "late-commands": ["echo d"],
        },
        node_autoinstall={
            "identity": {"realname": "Node One"},
            "locale": "de_DE.UTF-8",
            "late-commands": ["echo n"],
        },
    )
    _, doc = user_data(inv, PC_ID)
    assert doc["storage"] == {"layout": {"name": "lvm"}}
    assert doc["locale"] == "de_DE.UTF-8"
    assert doc["identity"]["realname"] == "Node One"
    assert doc["identity"]["hostname"] == "node01"  # untouched keys survive
    assert doc["late-commands"][-2:] == ["echo d", "echo n"]
    assert any("installed || true" in c for c in doc["late-commands"])
    assert validate_autoinstall(doc, "22.04.1") == []
    # other nodes only get the defaults
    assert user_data(inv, PC24_ID)[1]["locale"] == "en_GB.UTF-8"


def test_schema_errors_name_the_node_and_the_path(tmp_path):
    inv = inventory(tmp_path, node_autoinstall={"identity": {"groups": ["docker"]}, "shutdown": "halt"})
    problems = check_node(inv, inv.nodes[PC_ID], host=HOST)
    assert any(p.startswith("node node01 (01-52-54-00-12-34-56): autoinstall.identity:") for p in problems)
    assert any("autoinstall.shutdown:" in p for p in problems)


def test_24_04_schema_rejects_identity_groups_that_main_accepts():
    doc = {
        "version": 1,
        "identity": {"hostname": "h", "username": "u", "password": "$6$x$y", "groups": ["a"]},
    }
    assert validate_autoinstall(doc, "24.04.4")
    assert validate_autoinstall(doc, "26.04") == []


def test_check_node_reports_unknown_image_and_unfetched_image(tmp_path):
    from dataclasses import replace

    inv = inventory(tmp_path)
    problems = check_node(inv, inv.nodes[PC_ID], host=HOST)
    assert problems == [
        "node node01 (01-52-54-00-12-34-56): image 'ubuntu-22.04.1' is not fetched yet; "
        "run `pypxe-homelab images fetch ubuntu-22.04.1` "
        "(without internet: `pypxe-homelab images add PATH.iso --name ubuntu-22.04.1`)"
    ]
    odd = replace(inv.nodes[PC_ID], os="windows-11")
    inv = replace(inv, nodes={**inv.nodes, PC_ID: odd})
    problems = check_node(inv, odd, host=HOST)
    assert len(problems) == 1 and "os 'windows-11' is not in the catalogue" in problems[0]


def test_build_is_a_plain_dict(tmp_path):
    inv = inventory(tmp_path)
    doc = build_autoinstall(inv, inv.nodes[PC_ID], BASE_URL, host=HOST)
    assert yaml.safe_load(yaml.safe_dump(doc)) == doc


@pytest.mark.parametrize("release", ["22.04.1", "24.04.4", "26.04"])
def test_user_data_overrides_are_checked_against_cloud_inits_schema(tmp_path, release):
    bad = {"user-data": {"packages": "curl", "no_such_module": True, "timezone": "Europe/Berlin"}}
    doc = {"version": 1, "identity": {"hostname": "h", "username": "u", "password": "x"}, **bad}
    assert validate_autoinstall(doc, release) == [
        "autoinstall.user-data: Additional properties are not allowed ('no_such_module' was unexpected)",
        "autoinstall.user-data.packages: 'curl' is not of type 'array'",
    ]
    good = {**doc, "user-data": {"packages": ["curl"], "runcmd": [["touch", "/x"]], "timezone": "UTC"}}
    assert validate_autoinstall(good, release) == []


def test_check_node_reports_user_data_schema_errors(tmp_path):
    inv = inventory(tmp_path, node_autoinstall={"user-data": {"packages": "curl"}})
    problems = check_node(inv, inv.nodes[PC_ID], host=HOST)
    assert any(
        p.startswith(
            "node node01 (01-52-54-00-12-34-56): autoinstall.user-data.packages: 'curl' is not of type"
        )
        for p in problems
    ), problems


@pytest.mark.parametrize(
    ("listed", "expected_calls"),
    [
        (
            "/usr/sbin/iptables-legacy\n/usr/sbin/iptables-nft\n",
            ["--list iptables", "--set iptables /usr/sbin/iptables-legacy"],
        ),
        ("/usr/sbin/iptables-nft\n", ["--list iptables"]),  # no legacy variant on the target
        (None, ["--list iptables"]),  # no iptables alternative at all
    ],
    ids=["legacy-offered", "nft-only", "no-alternative"],
)
def test_iptables_legacy_is_chosen_only_where_it_exists(tmp_path, listed, expected_calls):
    """The late-command's script, run by a real sh against a recording update-alternatives: it never fails."""
    _, doc = user_data(inventory(tmp_path), PC_ID)
    command = next(c for c in doc["late-commands"] if "iptables-legacy" in c and "ip6" not in c)
    argv = shlex.split(command)
    assert argv[:5] == ["curtin", "in-target", "--", "sh", "-c"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "update-alternatives"
    output = f"printf '{listed}'" if listed is not None else "echo 'no alternatives' >&2; exit 2"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\ncase "$1" in --list) {output} ;; esac\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(["sh", "-c", argv[5]], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == expected_calls
