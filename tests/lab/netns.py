"""An isolated test LAN built from network namespaces.

Topology of one :class:`TestLan` (every name carries a per-run token)::

    <token>lan  : bridge br0 (no IP, STP off, forward delay 0), the bridge side of
                  every veth, and tap devices for QEMU
    <token>HOST : one namespace per host, its veth peer is called eth0 and has
                  10.231.<k>.<n>/24

Nothing is attached to the host's own interfaces: each veth pair is created
inside the bridge namespace and its peer is moved straight into the host
namespace.  IPv6 is disabled and IPv4 forwarding is off everywhere.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from types import TracebackType

NS_PREFIX = "pxh"
IFACE = "eth0"
BRIDGE = "br0"
NETMASK = "255.255.255.0"
FIXED_HOST_OCTETS = {"router": 1, "server": 3}
FIRST_OTHER_OCTET = 10

_counter = itertools.count()


class LabError(RuntimeError):
    """A lab command failed (the message carries the command and its stderr)."""


def ip_netns_available() -> bool:
    """True when `ip netns` works here (iproute2 present)."""
    try:
        return subprocess.run(["ip", "netns", "list"], capture_output=True, check=False).returncode == 0
    except FileNotFoundError:
        return False


def _sh(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def _ip(ns: str, *args: str) -> None:
    _sh(["ip", "-n", ns, *args])


def _sysctl(ns: str, setting: str, *, check: bool = True) -> None:
    _sh(["ip", "netns", "exec", ns, "sysctl", "-qw", setting], check=check)


def list_namespaces() -> list[str]:
    """Names of all network namespaces (first column of `ip netns list`)."""
    out = _sh(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_pid(ns: str) -> int | None:
    """PID encoded in one of our namespace names ('pxh<pid>x...'), else None."""
    if not ns.startswith(NS_PREFIX):
        return None
    digits = ns[len(NS_PREFIX) :].split("x", 1)[0]
    return int(digits) if digits.isdigit() else None


def _kill_namespace(ns: str) -> None:
    """Kill (by PID) whatever still runs inside namespace *ns*, then delete it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _sh(["ip", "netns", "pids", ns], check=False).stdout.split()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), sig)
        time.sleep(0.3)
    _sh(["ip", "netns", "del", ns], check=False)


def remove_stale_namespaces() -> list[str]:
    """Delete lab namespaces left by earlier runs whose process is gone; returns their names."""
    removed = []
    for ns in list_namespaces():
        owner = _owner_pid(ns)
        if owner is not None and owner != os.getpid() and not _pid_alive(owner):
            _kill_namespace(ns)
            removed.append(ns)
    return removed


class TestLan:
    """An isolated L2 segment: a bridge in its own namespace, and hosts (each a namespace with eth0 on the bridge).

    All names carry a per-run token ('pxh<pid>x<n><rand>-'), addresses are 10.231.<k>.0/24 chosen per
    instance.  Context manager; teardown kills every process started through it and deletes the
    namespaces, even on failure.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, hosts: Sequence[str] = ("server", "client"), *, mtu: int = 1500) -> None:
        n = next(_counter)
        self.token = f"{NS_PREFIX}{os.getpid()}x{n}{secrets.token_hex(2)}-"
        self.prefix = f"10.231.{10 + (os.getpid() * 7 + n) % 240}"
        self.netmask = NETMASK
        self.mtu = mtu
        self.bridge_ns = self.token + "lan"
        self._initial_hosts = list(hosts)
        self._hosts: dict[str, str] = {}
        self._veth_index = itertools.count()
        self._tap_index = itertools.count()
        self._next_octet = FIRST_OTHER_OCTET
        self._procs: list[subprocess.Popen] = []
        self._namespaces: list[str] = []

    # ---- lifecycle -------------------------------------------------------
    def __enter__(self) -> TestLan:
        remove_stale_namespaces()
        try:
            lan = self.bridge_ns
            self._add_namespace(lan)
            _ip(lan, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0")
            _ip(lan, "link", "set", BRIDGE, "mtu", str(self.mtu))
            for table in ("arptables", "iptables", "ip6tables"):
                _sysctl(lan, f"net.bridge.bridge-nf-call-{table}=0", check=False)
            _ip(lan, "link", "set", BRIDGE, "up")
            for host in self._initial_hosts:
                self.add_host(host)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop every tracked process (TERM, then KILL) and delete all namespaces of this LAN."""
        for proc in self._procs:
            stop_process(proc)
        self._procs.clear()
        for ns in reversed(self._namespaces):
            _kill_namespace(ns)
        self._namespaces.clear()
        self._hosts.clear()

    # ---- topology --------------------------------------------------------
    def _add_namespace(self, ns: str) -> None:
        if ns in list_namespaces():
            _kill_namespace(ns)
        _sh(["ip", "netns", "add", ns])
        self._namespaces.append(ns)
        _ip(ns, "link", "set", "lo", "up")
        _sysctl(ns, "net.ipv6.conf.all.disable_ipv6=1", check=False)
        _sysctl(ns, "net.ipv6.conf.default.disable_ipv6=1", check=False)
        _sysctl(ns, "net.ipv4.ip_forward=0")

    @property
    def hosts(self) -> list[str]:
        """Names of the hosts on this LAN."""
        return list(self._hosts)

    def ns(self, host: str) -> str:
        """Namespace name of *host*."""
        if host not in self._hosts:
            raise KeyError(f"no host {host!r} on this LAN (hosts: {', '.join(self._hosts)})")
        return self.token + host

    def ip(self, host: str) -> str:
        """IPv4 address of *host* on its eth0."""
        self.ns(host)
        return self._hosts[host]

    def _default_ip(self, host: str) -> str:
        if host in FIXED_HOST_OCTETS:
            return f"{self.prefix}.{FIXED_HOST_OCTETS[host]}"
        used = set(self._hosts.values())
        while f"{self.prefix}.{self._next_octet}" in used:
            self._next_octet += 1
        octet = self._next_octet
        self._next_octet += 1
        return f"{self.prefix}.{octet}"

    def add_host(self, host: str, ip: str | None = None) -> str:
        """Add a host namespace with eth0 on the bridge; returns its IPv4 address."""
        if host in self._hosts:
            raise ValueError(f"host {host!r} already exists")
        ip = ip or self._default_ip(host)
        ns = self.token + host
        self._add_namespace(ns)
        veth = f"v{next(self._veth_index)}"
        lan = self.bridge_ns
        # created inside the bridge namespace, the peer goes straight into the host's namespace
        _ip(
            lan, "link", "add", veth, "mtu", str(self.mtu), "type", "veth", "peer", "name", IFACE, "netns", ns
        )
        _ip(lan, "link", "set", veth, "master", BRIDGE, "up")
        _ip(ns, "link", "set", IFACE, "mtu", str(self.mtu))
        _ip(ns, "addr", "add", f"{ip}/24", "dev", IFACE)
        _ip(ns, "link", "set", IFACE, "up")
        self._hosts[host] = ip
        return ip

    def add_tap(self, name_hint: str = "vm") -> str:
        """Create a tap device on the bridge (in the bridge namespace) and return its name."""
        hint = "".join(c for c in name_hint if c.isalnum())[:8] or "vm"
        name = f"t{next(self._tap_index)}{hint}"[:15]
        _ip(self.bridge_ns, "tuntap", "add", "dev", name, "mode", "tap")
        _ip(self.bridge_ns, "link", "set", name, "mtu", str(self.mtu))
        _ip(self.bridge_ns, "link", "set", name, "master", BRIDGE, "up")
        return name

    # ---- processes -------------------------------------------------------
    def _ns_of(self, host: str) -> str:
        return self.bridge_ns if host == self.bridge_ns else self.ns(host)

    def run(self, host: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
        """Run *argv* inside *host* (or `bridge_ns`) and wait; check=False, text, captured output by default."""
        kw.setdefault("check", False)
        kw.setdefault("text", True)
        if "stdout" not in kw and "stderr" not in kw:
            kw.setdefault("capture_output", True)
        return subprocess.run(["ip", "netns", "exec", self._ns_of(host), *argv], **kw)

    def popen(self, host: str, argv: list[str], **kw) -> subprocess.Popen:
        """Start *argv* inside *host* (or `bridge_ns`) in its own session; stopped at teardown."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)
        proc = subprocess.Popen(["ip", "netns", "exec", self._ns_of(host), *argv], **kw)
        self._procs.append(proc)
        return proc

    def track(self, proc: subprocess.Popen) -> subprocess.Popen:
        """Have teardown stop a process that was started some other way."""
        self._procs.append(proc)
        return proc

    def ping(self, host: str, target: str, timeout: float = 2.0) -> bool:
        """One ICMP echo from *host* to *target* (iputils ping, else busybox); True on a reply."""
        argv = ["ping"] if shutil.which("ping") else ["busybox", "ping"]
        res = self.run(host, [*argv, "-c", "1", "-W", str(int(max(timeout, 1))), target])
        return res.returncode == 0

    def wait_port(self, host: str, proto: str, port: int, timeout: float = 15.0) -> None:
        """Wait until something listens on *proto* ('tcp'/'udp') *port* inside *host*; raises TimeoutError."""
        flag = {"tcp": "-Htln", "udp": "-Huln"}[proto]
        deadline = time.monotonic() + timeout
        while True:
            out = self.run(host, ["ss", flag]).stdout
            for line in out.splitlines():
                fields = line.split()
                if len(fields) >= 4 and fields[3].rsplit(":", 1)[-1] == str(port):
                    return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"nothing listens on {proto}/{port} in {host} after {timeout:.0f}s")
            time.sleep(0.1)


def stop_process(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """TERM *proc* (its whole process group when it leads one), KILL after *grace* seconds."""
    if proc.poll() is not None:
        return
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    own_group = pgid == proc.pid

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if own_group:
                os.killpg(pgid, sig)
            else:
                proc.send_signal(sig)

    send(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait()
