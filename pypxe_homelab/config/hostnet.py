"""Facts about this host's network (Linux, stdlib only): default route, interface addresses, resolvers.

Every function reads only local kernel state or files; the paths are parameters so tests can feed fixtures.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import socket
import struct
import subprocess
import time
from pathlib import Path

PROC_ROUTE = Path("/proc/net/route")
SYS_CLASS_NET = Path("/sys/class/net")
RESOLV_CONF = Path("/etc/resolv.conf")
RESOLVED_CONF = Path("/run/systemd/resolve/resolv.conf")

_RTF_UP = 0x1
_RTF_GATEWAY = 0x2
_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B
_SIOCGIFMTU = 0x8921
DEFAULT_MTU = 1500


def _routes(route_file: Path) -> list[tuple[ipaddress.IPv4Network, int, str, ipaddress.IPv4Address]]:
    """(destination, metric, interface, gateway) of every usable IPv4 route in the kernel's table."""
    try:
        lines = route_file.read_text().splitlines()
    except OSError:
        return []
    routes = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        iface, dest, gateway, flags, metric, mask = (
            fields[0],
            fields[1],
            fields[2],
            fields[3],
            fields[6],
            fields[7],
        )
        try:
            if not int(flags, 16) & _RTF_UP:
                continue
            network = ipaddress.IPv4Network(
                (ipaddress.IPv4Address(struct.pack("<I", int(dest, 16))), bin(int(mask, 16)).count("1"))
            )
            gw = ipaddress.IPv4Address(struct.pack("<I", int(gateway, 16)))
            routes.append((network, int(metric), iface, gw))
        except ValueError:
            continue
    return routes


def _default_routes(route_file: Path) -> list[tuple[int, str, ipaddress.IPv4Address]]:
    """(metric, interface, gateway) of every usable IPv4 default route, best first."""
    found = [(metric, iface, gw) for net, metric, iface, gw in _routes(route_file) if net.prefixlen == 0]
    return sorted(found, key=lambda r: r[0])


def route_interface(address: ipaddress.IPv4Address, route_file: Path = PROC_ROUTE) -> str | None:
    """The interface the kernel sends to ``address`` through (longest prefix, then lowest metric), or None."""
    best: tuple[int, int, str] | None = None
    for net, metric, iface, _gw in _routes(route_file):
        if address in net and (best is None or (-net.prefixlen, metric) < (best[0], best[1])):
            best = (-net.prefixlen, metric, iface)
    return best[2] if best else None


def default_route_interface(route_file: Path = PROC_ROUTE) -> str | None:
    """The interface of the IPv4 default route with the lowest metric, or None."""
    routes = _default_routes(route_file)
    return routes[0][1] if routes else None


def default_gateway(route_file: Path = PROC_ROUTE) -> ipaddress.IPv4Address | None:
    """The gateway of the IPv4 default route with the lowest metric, or None."""
    for _metric, _iface, gw in _default_routes(route_file):
        if int(gw):
            return gw
    return None


def _ifreq_ipv4(sock: socket.socket, request: int, name: str) -> ipaddress.IPv4Address:
    ifreq = struct.pack("256s", name.encode()[:15])
    reply = fcntl.ioctl(sock.fileno(), request, ifreq)
    return ipaddress.IPv4Address(reply[20:24])


def interface_ipv4(name: str, ip_json: str | None = None) -> ipaddress.IPv4Interface | None:
    """The first IPv4 address (with prefix) of interface ``name``, or None when it has none or does not exist.

    ``ip_json`` is the output of ``ip -j addr show``; when given it is parsed instead of asking the kernel.
    """
    if ip_json is not None:
        return _ipv4_from_ip_json(name, ip_json)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            address = _ifreq_ipv4(sock, _SIOCGIFADDR, name)
            netmask = _ifreq_ipv4(sock, _SIOCGIFNETMASK, name)
        except OSError:
            return _ipv4_from_ip_command(name)
    return ipaddress.IPv4Interface(f"{address}/{netmask}")


def _ipv4_from_ip_command(name: str) -> ipaddress.IPv4Interface | None:
    try:
        out = subprocess.run(
            ["ip", "-j", "addr", "show", "dev", name], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return _ipv4_from_ip_json(name, out)


def _ipv4_from_ip_json(name: str, text: str) -> ipaddress.IPv4Interface | None:
    try:
        links = json.loads(text or "[]")
    except ValueError:
        return None
    for link in links:
        if link.get("ifname") != name:
            continue
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                return ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}")
    return None


def interface_mtu(name: str, sys_class_net: Path = SYS_CLASS_NET) -> int:
    """The MTU of interface ``name``; 1500 when it cannot be read."""
    try:
        return int((sys_class_net / name / "mtu").read_text().strip())
    except (OSError, ValueError):
        pass
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            reply = fcntl.ioctl(sock.fileno(), _SIOCGIFMTU, struct.pack("16sI", name.encode()[:15], 0))
        return struct.unpack("16sI", reply[:20])[1]
    except OSError:
        return DEFAULT_MTU


def interface_exists(name: str, sys_class_net: Path = SYS_CLASS_NET) -> bool:
    """Whether a network interface called ``name`` exists."""
    if not name or "/" in name:
        return False
    return (sys_class_net / name).exists()


def _nameservers(path: Path) -> list[ipaddress.IPv4Address]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                found.append(ipaddress.IPv4Address(fields[1]))
            except ValueError:
                continue  # IPv6 or garbage
    return found


def upstream_dns(
    resolv_conf: Path = RESOLV_CONF, resolved_conf: Path = RESOLVED_CONF
) -> list[ipaddress.IPv4Address]:
    """The host's real upstream IPv4 resolvers, in order, never a 127.x address.

    When resolv.conf names only loopback resolvers (the systemd-resolved stub 127.0.0.53), the list
    systemd-resolved itself uses is read instead.
    """
    servers = _nameservers(resolv_conf)
    if not [s for s in servers if not s.is_loopback]:
        servers = _nameservers(resolved_conf)
    result: list[ipaddress.IPv4Address] = []
    for server in servers:
        if not server.is_loopback and not server.is_unspecified and server not in result:
            result.append(server)
    return result


def _link(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except OSError:  # closed meanwhile, or not ours to read
        return None


def port_owner(proto: str, port: int, proc: Path = Path("/proc")) -> str | None:
    """Which program holds local ``proto`` (``udp``/``tcp``) ``port``, as ``name (pid N)``; None if unknown.

    Reads the socket tables under /proc/net and the open files of each process (all of them only as root).
    """
    inodes: set[str] = set()
    for table in (f"{proto}", f"{proto}6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] != "0":
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        if any(_link(fd) in inodes for fd in fds):
            try:
                name = (entry / "comm").read_text().strip()
            except OSError:
                name = "?"
            return f"{name} (pid {entry.name})"
    return None


_NETWORKS_TTL = 30.0
_networks: tuple[float, tuple[ipaddress.IPv4Network, ...]] = (-_NETWORKS_TTL, ())


def local_networks() -> tuple[ipaddress.IPv4Network, ...]:
    """The IPv4 networks of this host's interfaces (first address of each, loopback left out); looked up at
    most every 30 seconds."""
    global _networks
    stamp, found = _networks
    if time.monotonic() - stamp < _NETWORKS_TTL:
        return found
    networks = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in socket.if_nameindex():
            try:
                address = _ifreq_ipv4(sock, _SIOCGIFADDR, name)
                netmask = _ifreq_ipv4(sock, _SIOCGIFNETMASK, name)
            except OSError:
                continue
            if not address.is_loopback:
                networks.append(ipaddress.IPv4Interface(f"{address}/{netmask}").network)
    _networks = (time.monotonic(), tuple(networks))
    return _networks[1]


def network_of(ip: str | None) -> ipaddress.IPv4Network | None:
    """The network of this host that ``ip`` is on, or None."""
    try:
        address = ipaddress.IPv4Address(ip) if ip else None
    except ValueError:
        return None
    return next((net for net in local_networks() if address in net), None) if address else None
