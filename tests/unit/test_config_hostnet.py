"""config.hostnet on fixture files (and the loopback interface, which every Linux host has)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from pypxe_homelab.config import hostnet

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "config"
A = ipaddress.IPv4Address


def test_default_route_picks_lowest_metric() -> None:
    assert hostnet.default_route_interface(FIXTURES / "proc_net_route") == "eth0"
    assert hostnet.default_gateway(FIXTURES / "proc_net_route") == A("192.168.1.1")


def test_no_default_route() -> None:
    assert hostnet.default_route_interface(FIXTURES / "proc_net_route_no_default") is None
    assert hostnet.default_gateway(FIXTURES / "proc_net_route_no_default") is None
    assert hostnet.default_gateway(FIXTURES / "does-not-exist") is None


def test_stub_resolver_is_replaced_by_systemd_upstreams() -> None:
    servers = hostnet.upstream_dns(FIXTURES / "resolv_stub.conf", FIXTURES / "resolved.conf")
    assert servers == [A("192.168.1.1"), A("1.1.1.1")]


def test_plain_resolv_conf_drops_loopback() -> None:
    servers = hostnet.upstream_dns(FIXTURES / "resolv_plain.conf", FIXTURES / "resolved.conf")
    assert servers == [A("10.0.0.53"), A("9.9.9.9")]


def test_only_stub_and_no_systemd_file_gives_nothing() -> None:
    assert hostnet.upstream_dns(FIXTURES / "resolv_stub.conf", FIXTURES / "missing.conf") == []


def test_interface_ipv4_from_ip_json() -> None:
    text = (FIXTURES / "ip_addr.json").read_text()
    assert hostnet.interface_ipv4("eth0", ip_json=text) == ipaddress.IPv4Interface("192.168.1.2/24")
    assert hostnet.interface_ipv4("wlan9", ip_json=text) is None


def test_loopback_from_the_kernel() -> None:
    assert hostnet.interface_ipv4("lo") == ipaddress.IPv4Interface("127.0.0.1/8")
    assert hostnet.interface_exists("lo")
    assert hostnet.interface_mtu("lo") > 0
    assert hostnet.interface_ipv4("nosuchif0") is None


def test_mtu_and_existence_from_sysfs_fixture() -> None:
    assert hostnet.interface_mtu("eth0", FIXTURES / "sys_class_net") == 9000
    assert hostnet.interface_exists("eth0", FIXTURES / "sys_class_net")
    assert not hostnet.interface_exists("eth1", FIXTURES / "sys_class_net")
    assert not hostnet.interface_exists("../eth0", FIXTURES / "sys_class_net")
    assert hostnet.interface_mtu("nosuchif0", FIXTURES / "sys_class_net") == hostnet.DEFAULT_MTU


def test_port_owner_names_the_program_holding_a_port() -> None:
    import socket

    from pypxe_homelab.config.hostnet import port_owner

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind(("127.0.0.1", 0))
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        me = f"(pid {os.getpid()})"
        port = udp.getsockname()[1]
        assert (port_owner("udp", udp.getsockname()[1]) or "").endswith(me)
        assert (port_owner("tcp", tcp.getsockname()[1]) or "").endswith(me)
    assert port_owner("udp", port) is None  # closed: nobody
