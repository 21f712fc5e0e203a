"""config.loader: every value parsed into the model, every problem reported as file:line: key: what; fix."""

from __future__ import annotations

import ipaddress
import re
import textwrap
from pathlib import Path

import pytest

from pypxe_homelab.config import loader
from pypxe_homelab.config.loader import default_inventory, load_inventory, load_or_default, parse_inventory
from pypxe_homelab.config.model import DEFAULT_LOADERS, DEFAULT_ROOT, BootSpec
from pypxe_homelab.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "config"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJV6B/UuYsmsv144ilPovh0j0frYPP7euuj/OjAtXuFk me@laptop"
LINE = re.compile(r"^[^:]+:\d+(:\d+)?: .+; .+$")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_inventory(write(tmp_path, text), detect_host=False)
    for line in info.value.errors:
        assert LINE.match(line), line
        assert "\n" not in line
    return info.value.errors


def test_issue_example_loads_as_written() -> None:
    inv = load_inventory(FIXTURES / "issue_example.yaml")
    assert inv.server.interfaces == ("eth0",)
    assert inv.server.http_port == 12345
    assert inv.paths.root == Path("/var/homelab")
    assert inv.paths.tftproot == Path("/var/homelab/tftproot")
    assert inv.defaults.gateway == ipaddress.IPv4Address("192.168.1.1")
    assert inv.defaults.dns == (ipaddress.IPv4Address("192.168.1.1"),)
    node = inv.nodes["01-52-54-00-a0-00-01"]
    assert node.address == ipaddress.IPv4Interface("192.168.1.50/24")
    assert node.boot == BootSpec("boot/linux", ("boot/initrd.gz",), "console=ttyS0")
    assert node.line == 10
    assert inv.source == FIXTURES / "issue_example.yaml"


def test_every_field_is_read(tmp_path: Path) -> None:
    keyfile = tmp_path / "keys.pub"
    keyfile.write_text(f"# mine\n\n{KEY}\n")
    inv = load_inventory(
        write(
            tmp_path,
            f"""\
            server:
              interfaces: eth1
              address: 10.231.1.1
              http_port: 8080
              tftp_port: 6969
              proxy_dhcp: false
              unknown: ignore
              uefi_mode: direct
              pxe_vendor_classes: [PXEClient, HW-Client]
              menu_timeout: 0
              loaders: {{arm64: arm64/grubaa64.efi, bios: ""}}
            paths:
              root: data
            defaults:
              gateway: 10.231.1.254
              dns: 10.231.1.53, 9.9.9.9
              os: ubuntu-24.04
              install: always
              password: "$6$saltsalt$8RWsOfwR6M6PpnoeQiEiWzNTPo1f0HjVYjDnLZhGx16aBFRkeqiHAzfXP/LgrOWMBMXqiU2pLrXsSOHNUyUm91"
              ssh_authorized_keys: ["{KEY}"]
              ssh_authorized_keys_file: keys.pub
              storage: {{layout: {{name: lvm}}}}
              autoinstall: {{timezone: UTC, packages: [htop]}}
              cmdline: quiet
              uefi_mode: binl
            nodes:
              "7092246E":
                address: 10.231.1.20/24
                hostname: pi4
                gateway: 10.231.1.1
                dns: 10.231.1.53
                os: ubuntu-22.04
                install: never
                uefi_mode: direct
                password: secret
                ssh_authorized_keys: "{KEY}"
                autoinstall: {{locale: C}}
                cmdline: nomodeset
                boot:
                  kernel: https://example.org/vmlinuz
                  initrd: [a.img, b.img]
              aa-bb-cc-dd-ee-ff:
            """,
        ),
        detect_host=False,
    )
    s = inv.server
    assert s.interfaces == ("eth1",) and s.address == ipaddress.IPv4Address("10.231.1.1")
    assert (s.http_port, s.tftp_port, s.proxy_dhcp, s.unknown, s.uefi_mode) == (
        8080,
        6969,
        False,
        "ignore",
        "direct",
    )
    assert s.pxe_vendor_classes == ("PXEClient", "HW-Client") and s.menu_timeout == 0
    assert dict(s.loaders) == {**DEFAULT_LOADERS, "arm64": "arm64/grubaa64.efi", "bios": ""}
    assert inv.paths.root == tmp_path / "data"
    d = inv.defaults
    assert d.dns == (ipaddress.IPv4Address("10.231.1.53"), ipaddress.IPv4Address("9.9.9.9"))
    assert (d.os, d.install, d.password, d.cmdline, d.uefi_mode) == (
        "ubuntu-24.04",
        "always",
        "$6$saltsalt$8RWsOfwR6M6PpnoeQiEiWzNTPo1f0HjVYjDnLZhGx16aBFRkeqiHAzfXP/LgrOWMBMXqiU2pLrXsSOHNUyUm91",
        "quiet",
        "binl",
    )
    assert d.ssh_authorized_keys == (KEY,) and d.ssh_authorized_keys_file == keyfile
    assert d.storage == {"layout": {"name": "lvm"}}
    assert d.autoinstall == {"timezone": "UTC", "packages": ["htop"]} and type(d.autoinstall) is dict
    pi = inv.nodes["7092246e"]
    assert pi.is_pi and pi.hostname == "pi4" and pi.install == "never" and pi.password == "secret"
    assert (
        pi.ssh_authorized_keys == (KEY,) and pi.autoinstall == {"locale": "C"} and pi.cmdline == "nomodeset"
    )
    assert pi.boot == BootSpec("https://example.org/vmlinuz", ("a.img", "b.img"), "")
    assert inv.nodes["01-aa-bb-cc-dd-ee-ff"].address is None  # a bare MAC key, empty entry


def test_embedded_default() -> None:
    inv = default_inventory(detect_host=False)
    assert inv.nodes == {} and inv.source is None
    assert inv.server.interfaces == ()
    assert inv.paths.root == DEFAULT_ROOT == Path("/var/lib/pypxe-homelab")


def test_load_or_default_missing_file_uses_default(tmp_path: Path) -> None:
    inv, embedded = load_or_default(tmp_path / "nope.yaml", detect_host=False)
    assert embedded and inv.nodes == {} and inv.source is None


def test_load_or_default_broken_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_or_default(write(tmp_path, "server: [\n"))


def test_empty_file_is_valid(tmp_path: Path) -> None:
    inv, embedded = load_or_default(write(tmp_path, "# nothing yet\n"), detect_host=False)
    assert not embedded and inv.nodes == {}


def test_host_facts_fill_unset_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader.hostnet, "default_gateway", lambda: ipaddress.IPv4Address("10.231.9.1"))
    monkeypatch.setattr(loader.hostnet, "upstream_dns", lambda: [ipaddress.IPv4Address("10.231.9.53")])
    inv = load_inventory(write(tmp_path, "defaults:\n  install: once\n"))
    assert inv.defaults.gateway == ipaddress.IPv4Address("10.231.9.1")
    assert inv.defaults.dns == (ipaddress.IPv4Address("10.231.9.53"),)
    given = load_inventory(FIXTURES / "issue_example.yaml")
    assert given.defaults.gateway == ipaddress.IPv4Address("192.168.1.1")


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    (line,) = errors_of(tmp_path, "server:\n  http_port: 1\n   tftp_port: 2\n")
    assert line.startswith(f"{tmp_path / 'config.yaml'}:3:")
    assert "fix the YAML syntax" in line


def test_unclosed_quote_and_tab_and_duplicate_key(tmp_path: Path) -> None:
    (line,) = errors_of(tmp_path, 'defaults:\n  password: "abc\n')
    assert ":2:13: a quoted scalar is never closed" in line
    (line,) = errors_of(tmp_path, "server:\n\thttp_port: 1\n")
    assert ":2:1: a tab character; indent with spaces" in line
    (line,) = errors_of(tmp_path, "server:\n  http_port: 1\n  http_port: 2\n")
    assert ":3:" in line and "duplicate key" in line and "keep only one" in line


def test_issue_error_example(tmp_path: Path) -> None:
    text = "\n" * 12 + "nodes:\n  01-52-54-00-a0-00-01:\n    address: 192.168.1.300/24\n"
    (line,) = errors_of(tmp_path, text)
    assert line == (
        f"{tmp_path / 'config.yaml'}:15: nodes.01-52-54-00-a0-00-01.address: '192.168.1.300/24' is not an "
        "IPv4 address with prefix; write it like 192.168.1.50/24"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server:\n  htp_port: 80\n", ":2: server.htp_port: unknown key; did you mean 'http_port'?"),
        ("nodez: {}\n", ":1: nodez: unknown key; did you mean 'nodes'?"),
        (
            "nodes:\n  01-52-54-00-a0-00-01:\n    adress: 10.0.0.1/24\n",
            ":3: nodes.01-52-54-00-a0-00-01.adress: unknown key; did you mean 'address'?",
        ),
        (
            "server:\n  loaders:\n    efi65: x.efi\n",
            ":3: server.loaders.efi65: unknown key; did you mean 'efi64'?",
        ),
        ("server:\n  xyzzy: 1\n", ":2: server.xyzzy: unknown key; valid keys: interfaces,"),
        (
            "server:\n  http_port: 70000\n",
            ":2: server.http_port: 70000 is not a port number; use a whole number from 1 to 65535",
        ),
        ("server:\n  tftp_port: 0\n", ":2: server.tftp_port: 0 is not a port number"),
        ("server:\n  http_port: '80'\n", ":2: server.http_port: '80' is not a port number"),
        (
            "server:\n  unknown: menus\n",
            ":2: server.unknown: 'menus' is not one of menu, ignore (did you mean 'menu'?); write menu or ignore",
        ),
        ("server:\n  uefi_mode: bnl\n", ":2: server.uefi_mode: 'bnl' is not one of binl, direct"),
        ("defaults:\n  install: onse\n", ":2: defaults.install: 'onse' is not one of once, always, never"),
        (
            "server:\n  proxy_dhcp: yes\n",
            ":2: server.proxy_dhcp: 'yes' is not true or false; write true or false",
        ),
        ("server:\n  menu_timeout: -1\n", ":2: server.menu_timeout: -1 is not a number of seconds"),
        (
            "server:\n  interfaces: [eth0, 'a b']\n",
            ":2: server.interfaces[1]: 'a b' is not a network interface name",
        ),
        (
            "server:\n  address: 10.0.0\n",
            ":2: server.address: '10.0.0' is not an IPv4 address; write it like 192.168.1.2",
        ),
        ("server: [a]\n", ":1: server: a list is not a mapping"),
        (
            "defaults:\n  dns:\n    - 1.1.1.1\n    - 1.2.3\n",
            ":4: defaults.dns[1]: '1.2.3' is not an IPv4 address",
        ),
        (
            "defaults:\n  password: 1234\n",
            ":2: defaults.password: 1234 is a number, not text; put it in quotes: '1234'",
        ),
        ("defaults:\n  autoinstall: [x]\n", ":2: defaults.autoinstall: a list is not a mapping"),
        (
            "defaults:\n  ssh_authorized_keys_file: /nonexistent/keys.pub\n",
            ":2: defaults.ssh_authorized_keys_file: cannot read /nonexistent/keys.pub",
        ),
        ("nodes:\n  zz:\n    address: 10.0.0.5/24\n", ":2: nodes.zz: 'zz' is not a device id; use 01-<mac>"),
        (
            "nodes:\n  12345678: {}\n",
            ":2: nodes.12345678: a device id written only with digits is read as a number; put it in quotes",
        ),
        (
            "nodes:\n  01-52-54-00-a0-00-01:\n    address: 10.0.0.5\n",
            ":3: nodes.01-52-54-00-a0-00-01.address: '10.0.0.5' has no prefix length; write it like 10.0.0.5/24",
        ),
        (
            "nodes:\n  01-52-54-00-a0-00-01:\n    address: 10.0.0.0/24\n",
            "'10.0.0.0/24' is the network address of 10.0.0.0/24; use a host address between 10.0.0.1 and 10.0.0.254",
        ),
        (
            "nodes:\n  01-52-54-00-a0-00-01:\n    address: 10.0.0.255/24\n",
            "is the broadcast address of 10.0.0.0/24",
        ),
        ("nodes:\n  01-52-54-00-a0-00-01:\n    address: 127.0.0.5/8\n", "cannot be a machine's address"),
        (
            "nodes:\n  01-52-54-00-a0-00-01:\n    hostname: -nas\n",
            ":3: nodes.01-52-54-00-a0-00-01.hostname: '-nas' is not a valid host name",
        ),
        ("nodes:\n  01-52-54-00-a0-00-01:\n    hostname: nas.lan\n", "'nas.lan' is not a valid host name"),
        (
            "nodes:\n  01-52-54-00-a0-00-01:\n    boot:\n      kernel: ../vmlinuz\n",
            ":4: nodes.01-52-54-00-a0-00-01.boot.kernel: '../vmlinuz' leaves the served directory",
        ),
        (
            "nodes:\n  01-52-54-00-a0-00-01:\n    boot:\n      kernel: /boot/vmlinuz\n",
            "'/boot/vmlinuz' leaves the served directory",
        ),
        (
            "nodes:\n  01-52-54-00-a0-00-01:\n    boot:\n      kernel: ftp://h/k\n",
            "'ftp://h/k' is not an http(s) URL",
        ),
        (
            "nodes:\n  01-52-54-00-a0-00-01:\n    boot:\n      kernel: k\n      initrd: [a, x/../../b]\n",
            ":5: nodes.01-52-54-00-a0-00-01.boot.initrd[1]: 'x/../../b' leaves",
        ),
        (
            "nodes:\n  01-52-54-00-a0-00-01:\n    boot:\n      initrd: a\n",
            ":3: nodes.01-52-54-00-a0-00-01.boot: has no kernel; add kernel:",
        ),
        (
            "nodes:\n  01-52-54-00-a0-00-01:\n    install: sometimes\n",
            "nodes.01-52-54-00-a0-00-01.install: 'sometimes' is not one of once, always, never",
        ),
        ("nodes: [a]\n", ":1: nodes: a list is not a mapping"),
        ("- a\n", ":1: (top level): the file is not a mapping"),
    ],
)
def test_error_messages(tmp_path: Path, text: str, expected: str) -> None:
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1, errors
    assert expected in errors[0]
    assert errors[0].startswith(str(tmp_path / "config.yaml") + ":")


def test_gateway_outside_subnet(tmp_path: Path) -> None:
    (line,) = errors_of(
        tmp_path, "nodes:\n  01-52-54-00-a0-00-01:\n    address: 10.0.0.5/24\n    gateway: 10.0.1.1\n"
    )
    assert ":4: nodes.01-52-54-00-a0-00-01.gateway: gateway 10.0.1.1 is outside 10.0.0.0/24" in line
    (line,) = errors_of(
        tmp_path,
        "defaults:\n  gateway: 10.0.1.1\nnodes:\n  01-52-54-00-a0-00-01:\n    address: 10.0.0.5/24\n",
    )
    assert (
        ":5: nodes.01-52-54-00-a0-00-01.address: the default gateway 10.0.1.1 (line 2) is outside 10.0.0.0/24"
        in line
    )


def test_duplicate_address_and_hostname(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """\
        nodes:
          01-52-54-00-a0-00-01:
            address: 10.0.0.5/24
            hostname: web
          01-52-54-00-a0-00-02:
            address: 10.0.0.5/25
            hostname: WEB
        """,
    )
    assert len(errors) == 2
    assert (
        ":6: nodes.01-52-54-00-a0-00-02.address: 10.0.0.5 is already the address of 01-52-54-00-a0-00-01 (line 2)"
        in errors[0]
    )
    assert ":7: nodes.01-52-54-00-a0-00-02.hostname: 'WEB' is already the host name" in errors[1]


def test_node_address_equal_to_server_address(tmp_path: Path) -> None:
    (line,) = errors_of(
        tmp_path, "server:\n  address: 10.0.0.5\nnodes:\n  '7092246e':\n    address: 10.0.0.5/24\n"
    )
    assert "is the server's own address" in line


def test_duplicate_normalised_id(tmp_path: Path) -> None:
    (line,) = errors_of(
        tmp_path,
        "nodes:\n  01-52-54-00-A0-00-01:\n    address: 10.0.0.5/24\n  52:54:00:a0:00:01:\n    address: 10.0.0.6/24\n",
    )
    assert (
        ":4: nodes.52:54:00:a0:00:01: is the same device as '01-52-54-00-A0-00-01' (line 2); keep only one"
        in line
    )


def test_bad_ssh_keys_each_reported_with_index(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        f"""\
        defaults:
          ssh_authorized_keys:
            - {KEY}
            - "-----BEGIN OPENSSH PRIVATE KEY-----"
            - hello world
        """,
    )
    assert len(errors) == 2
    assert ":4: defaults.ssh_authorized_keys[1]: this is a PRIVATE key; use the .pub file" in errors[0]
    assert ":5: defaults.ssh_authorized_keys[2]: not an OpenSSH public key line; paste one line" in errors[1]


def test_bad_key_in_keys_file(tmp_path: Path) -> None:
    (tmp_path / "k").write_text(f"{KEY}\nssh-rsa AAAA\n")
    (line,) = errors_of(tmp_path, "defaults:\n  ssh_authorized_keys_file: k\n")
    assert ":2: defaults.ssh_authorized_keys_file: line 2 of" in line


def test_every_problem_reported_at_once_sorted_by_line(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """\
        nodes:
          01-52-54-00-a0-00-01:
            address: bad
        server:
          http_port: 0
          unknown: x
        """,
    )
    assert [int(e.split(":")[1]) for e in errors] == [3, 5, 6]


def test_missing_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_inventory(tmp_path / "missing.yaml")
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="is not UTF-8"):
        load_inventory(path)


def test_parse_inventory_uses_given_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_inventory(
            "server:\n  http_port: 0\n", tmp_path / "c.yaml", name="shown.yaml", detect_host=False
        )
    assert info.value.errors[0].startswith("shown.yaml:2: ")
