"""The real `pypxe-homelab serve` in a host of a TestLan, plus small clients that run in another host."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

from tests.lab.netns import TestLan

REPO = Path(__file__).resolve().parents[2]


# a well-formed public key that no one holds the private half of
TEST_PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFwL7jG3o8b1x7gOa+Nj0y8oQ1J8U4I3yXxJgkOQeH1a admin@test"
)


def base_config(
    lan: TestLan, root: Path, *, nodes: str = "", extra_server: str = "", user: str | None = "root"
) -> str:
    """A config.yaml for a server on ``lan``'s host "server" with its data under ``root``.

    ``extra_server`` holds more ``server:`` keys, one per line, unindented; ``nodes`` the node entries.
    ``user`` is server.user: root by default, as pytest's temporary folders are private to root (the
    least-privilege tests use folders the service user can reach); None leaves the default user.
    """
    server = textwrap.indent(textwrap.dedent(extra_server).strip(), "  ")
    return (
        "# test server\n"
        "server:\n"
        "  interfaces: [eth0]   # the namespace's only link\n"
        "  http_port: 12345\n"
        + (f"  user: {user}\n" if user else "")
        + (server + "\n" if server else "")
        + f"paths:\n  root: {root}\n"
        + f"defaults:\n  gateway: {lan.prefix}.1\n  dns: [{lan.prefix}.1]\n"
        + f'  ssh_authorized_keys: ["{TEST_PUBLIC_KEY}"]\n'
        + "nodes:\n"
        + textwrap.indent(textwrap.dedent(nodes), "  ")
    )


class ServerProcess:
    """`python -m pypxe_homelab --config <file> serve` inside ``host``; its log is kept in a file."""

    def __init__(self, lan: TestLan, config: Path, host: str = "server", log_format: str = "text") -> None:
        self.lan = lan
        self.config = config
        self.host = host
        self.log_path = config.with_suffix(".log")
        self.log_format = log_format
        self.proc: subprocess.Popen | None = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run another pypxe-homelab command against the same config (in the server's namespace)."""
        result = self.lan.run(
            self.host, [sys.executable, "-m", "pypxe_homelab", "--config", str(self.config), *args], cwd=REPO
        )
        if check and result.returncode != 0:
            raise AssertionError(f"pypxe-homelab {' '.join(args)} failed: {result.stdout}{result.stderr}")
        return result

    def start(self, ports: tuple[tuple[str, int], ...] = (("udp", 67), ("udp", 69), ("tcp", 12345))) -> None:
        log = open(self.log_path, "a")  # noqa: SIM115 - owned by the process for its lifetime
        self.proc = self.lan.popen(
            self.host,
            [
                sys.executable,
                "-m",
                "pypxe_homelab",
                "--config",
                str(self.config),
                "serve",
                "--log-format",
                self.log_format,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        for proto, port in ports:
            try:
                self.lan.wait_port(self.host, proto, port, timeout=20)
            except TimeoutError:
                raise AssertionError(f"server did not bind {proto}/{port}:\n{self.log()}") from None

    @contextlib.contextmanager
    def running(self) -> Iterator[ServerProcess]:
        """Start the server, and on leaving stop it and check it exited cleanly (status 0)."""
        self.start()
        try:
            yield self
        finally:
            code = self.stop()
            assert code == 0, f"serve did not stop cleanly (exit {code}):\n{self.log()}"

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        self.proc.terminate()
        try:
            code = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(5)
        self.proc = None
        return code

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def wait_log(self, needle: str, timeout: float = 10.0, start: int = 0) -> str:
        """Wait until ``needle`` appears in the log after offset ``start``; returns the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if needle in text[start:]:
                return text
            time.sleep(0.1)
        raise AssertionError(f"{needle!r} not in the server log:\n{self.log()[start:]}")


def client_python(lan: TestLan, host: str, code: str, timeout: float = 60) -> object:
    """Run ``code`` (which prints one JSON document) inside ``host``; returns the parsed JSON."""
    result = lan.run(host, [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"client code failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout)


def tftp_get(lan: TestLan, host: str, server_ip: str, paths: list[str], **options: object) -> list[dict]:
    """Fetch ``paths`` one after the other from one client port; results carry the text of each file."""
    code = f"""
        import json, sys
        sys.path.insert(0, {str(REPO)!r})
        from tests.lab.tftpclient import TftpTestClient
        out = []
        with TftpTestClient({server_ip!r}) as c:
            for p in {paths!r}:
                r = c.get(p, **{options!r})
                d = r.as_json()
                d["text"] = r.data.decode("utf-8", "replace") if r.ok and len(r.data) < 65536 else None
                out.append(d)
        print(json.dumps(out))
    """
    return client_python(lan, host, code)  # type: ignore[return-value]


def http_request(
    lan: TestLan,
    host: str,
    url: str,
    *,
    method: str = "GET",
    headers: dict | None = None,
    data: bytes | None = None,
) -> dict:
    """One HTTP request from ``host``: status, headers, body length, sha256 and (short) text."""
    code = f"""
        import hashlib, json, urllib.request, urllib.error
        req = urllib.request.Request({url!r}, method={method!r}, headers={headers or {}!r}, data={data!r})
        try:
            resp = urllib.request.urlopen(req, timeout=30)
            status, hdrs, body = resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            status, hdrs, body = e.code, dict(e.headers), e.read()
        print(json.dumps({{"status": status, "headers": hdrs, "length": len(body),
                          "sha256": hashlib.sha256(body).hexdigest(),
                          "text": body.decode("utf-8", "replace") if len(body) < 65536 else None}}))
    """
    return client_python(lan, host, code)  # type: ignore[return-value]


class ServerLab:
    """A running server on ``lan``'s host "server" and a client host to talk to it from."""

    def __init__(self, lan: TestLan, root: Path, server: ServerProcess) -> None:
        self.lan, self.root, self.server = lan, root, server
        self.server_ip = lan.ip("server")
        self.client_ip = lan.ip("client")

    def pxe(self, *args: str) -> dict | list:
        """Run the scripted PXE client (tests/lab/pxeclient.py) in the client host; its JSON output."""
        result = self.lan.run(
            "client",
            [sys.executable, "-m", "tests.lab.pxeclient", *args, "--iface", "eth0"],
            cwd=REPO,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def config(self, device_id: str, tree: str = "") -> str:
        """The PXELINUX config the client gets over TFTP for ``device_id`` in ``tree`` ("" is BIOS)."""
        prefix = f"{tree}/" if tree else ""
        [result] = tftp_get(self.lan, "client", self.server_ip, [f"{prefix}pxelinux.cfg/{device_id}"])
        assert result["ok"], result
        return result["text"]
