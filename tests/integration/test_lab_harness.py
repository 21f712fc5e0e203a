"""Self test of the namespace test LAN used by the integration and end-to-end tests."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.lab.netns import list_namespaces

pytestmark = pytest.mark.netns


def test_hosts_reach_each_other_and_teardown_is_complete(test_lan):
    lan = test_lan(["server", "client", "router"])
    assert lan.ip("server") == f"{lan.prefix}.3"
    assert lan.ip("router") == f"{lan.prefix}.1"
    assert lan.ip("client") == f"{lan.prefix}.10"
    extra = lan.add_host("extra")
    assert extra == f"{lan.prefix}.11"

    assert lan.ping("client", lan.ip("server"))
    assert lan.ping("extra", lan.ip("router"))
    assert not lan.ping("client", f"{lan.prefix}.99", timeout=1)

    tap = lan.add_tap("vm")
    links = lan.run(lan.bridge_ns, ["ip", "-o", "link", "show", "master", "br0"]).stdout
    assert tap in links

    # a tracked listener is found by wait_port and killed at teardown
    server = lan.popen("server", [sys.executable, "-m", "http.server", "-b", lan.ip("server"), "18080"])
    lan.wait_port("server", "tcp", 18080)
    res = lan.run(
        "client",
        [
            sys.executable,
            "-c",
            f"import urllib.request;print(urllib.request.urlopen('http://{lan.ip('server')}:18080/').status)",
        ],
    )
    assert res.stdout.strip() == "200", res.stderr

    names = [lan.ns(h) for h in lan.hosts] + [lan.bridge_ns]
    assert set(names) <= set(list_namespaces())
    lan.close()
    assert server.poll() is not None
    assert not set(names) & set(list_namespaces())


def test_host_namespaces_are_isolated_from_the_machine(test_lan):
    lan = test_lan(["server"])
    links = lan.run("server", ["ip", "-o", "link"]).stdout
    names = sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines())
    assert names == ["eth0", "lo"]
    routes = lan.run("server", ["ip", "route"]).stdout
    assert "default" not in routes
    forward = lan.run("server", ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip()
    assert forward == "0"


def test_namespaces_left_by_a_crashed_run_are_removed(test_lan):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"pxh{dead.pid}x0dead-server"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        lan = test_lan(["server"])
        assert stale not in list_namespaces()
        assert lan.ping("server", lan.ip("server"))
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True, check=False)
