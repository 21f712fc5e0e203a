"""The TFTP service under abuse, on loopback: transfer caps, abandoned transfers, resend logging, descriptors.

Clients use distinct loopback addresses (127.1.x.y), so per-client caps can be exercised from one process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pypxe_homelab.events import Event
from pypxe_homelab.rootfiles import static_file
from pypxe_homelab.services.tftp import TftpFile, TftpService
from tests.lab.tftpclient import TftpTestClient

STORM = 1100  # more never-ACKing clients than select() could ever watch
BUSY = b"Too many transfers; try again later"


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.02)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rrq(name: str, **options: str) -> bytes:
    body = (
        name.encode()
        + b"\0octet\0"
        + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in options.items())
    )
    return b"\x00\x01" + body


def rrqs(events: list[Event]) -> int:
    return sum(1 for e in events if e.kind == "tftp.rrq")


def client_address(i: int) -> str:
    return f"127.1.{i // 250}.{i % 250 + 1}"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "tftproot"
    root.mkdir()
    (root / "loader.efi").write_bytes(os.urandom(300_000))
    (root / "small.cfg").write_bytes(b"DEFAULT local\n")
    return root


@pytest.fixture
def make_service(root: Path) -> Iterator[Callable[..., tuple[TftpService, list[Event]]]]:
    started: list[TftpService] = []

    def make(**settings: object) -> tuple[TftpService, list[Event]]:
        events: list[Event] = []

        def resolve(path: str, client: tuple[str, int]) -> TftpFile | None:
            if path == "generated.cfg":
                return TftpFile(data=b"generated for " + client[0].encode())
            found = static_file(root, path)
            return TftpFile(path=found) if found else None

        service = TftpService("127.0.0.1", 0, resolve, events.append, **settings)  # type: ignore[arg-type]
        service.start()
        started.append(service)
        return service, events

    yield make
    for service in started:
        service.stop()


def first_reply(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data, _ = sock.recvfrom(2048)
    return data


def test_global_cap_refuses_with_an_error_and_logs_once(
    make_service, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service, events = make_service(max_transfers=3, resend_timeout=0.2, resend_tries=2)
    port = service.address[1]
    socks = []
    caplog.set_level(logging.WARNING, logger="pypxe_homelab.services.tftp")
    try:
        for i in range(8):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((client_address(i), 0))
            s.sendto(rrq("loader.efi"), ("127.0.0.1", port))
            socks.append(s)
        replies = [first_reply(s) for s in socks]
    finally:
        for s in socks:
            s.close()
    data = [r for r in replies if r[:2] == b"\x00\x03"]
    busy = [r for r in replies if r[:4] == b"\x00\x05\x00\x00"]
    assert len(data) == 3 and len(busy) == 5
    assert all(BUSY in r for r in busy)
    refused = [r for r in caplog.records if "over the transfer limits" in r.getMessage()]
    assert len(refused) == 1, [r.getMessage() for r in caplog.records]
    assert "\n" not in refused[0].getMessage()
    assert [e.kind for e in events].count("tftp.rrq") == 3  # refusals at the cap are not recorded per request
    wait_for(lambda: service.transfers == 0, what="abandoned transfers expired")
    with TftpTestClient("127.0.0.1", port) as c:
        r = c.get("loader.efi", blksize=1468, tsize=True)
    assert r.ok and r.sha256 == hashlib.sha256((root / "loader.efi").read_bytes()).hexdigest()


def test_per_client_cap_leaves_other_clients_served(make_service) -> None:
    service, _ = make_service(max_per_client=2, resend_timeout=0.2, resend_tries=2)
    port = service.address[1]
    greedy = []
    try:
        for _ in range(3):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.1.0.9", 0))
            s.sendto(rrq("loader.efi"), ("127.0.0.1", port))
            greedy.append(s)
        replies = [first_reply(s) for s in greedy]
        assert [r[:2] for r in replies].count(b"\x00\x03") == 2
        assert [r[:4] for r in replies].count(b"\x00\x05\x00\x00") == 1
        with TftpTestClient("127.0.0.1", port, local_ip="127.1.0.10") as other:
            assert other.get("small.cfg").ok
    finally:
        for s in greedy:
            s.close()


def test_resends_are_one_log_line(make_service, caplog: pytest.LogCaptureFixture) -> None:
    service, events = make_service(resend_timeout=0.05, resend_tries=5)
    caplog.set_level(logging.DEBUG, logger="pypxe_homelab.services.tftp")
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
    ):
        for s in (a, b):
            s.bind(("127.0.0.1", 0))
            s.sendto(rrq("loader.efi", blksize="1468"), ("127.0.0.1", service.address[1]))
        wait_for(lambda: [e.kind for e in events].count("tftp.abort") == 2, what="both transfers dropped")
    summary = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(summary) == 1, [r.getMessage() for r in summary]
    line = summary[0].getMessage()
    assert "sent blocks again" in line and "1 from 1 client" in line and "\n" not in line
    assert sum("resending" in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG) == 10


def test_an_idle_transfer_does_not_keep_the_server_busy(make_service) -> None:
    service, _ = make_service()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.sendto(rrq("loader.efi"), ("127.0.0.1", service.address[1]))
        assert first_reply(s)[:2] == b"\x00\x03"
        before = resource.getrusage(resource.RUSAGE_SELF)
        time.sleep(1.0)  # the client never acknowledges; the server waits for it
        after = resource.getrusage(resource.RUSAGE_SELF)
    busy = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert busy < 0.25, f"the server spent {busy:.2f} s of CPU in 1 s waiting for one client"


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    events: list[Event] = []
    service = TftpService("127.0.0.1", 0, lambda p, c: TftpFile(path=fifo), events.append)
    with service, TftpTestClient("127.0.0.1", service.address[1]) as c:
        r = c.get("pipe")
        assert r.error_code == 1
        assert c.get("pipe").error_code == 1  # and the loop still answers


def test_several_bind_addresses_each_answer_from_their_own(root: Path) -> None:
    events: list[Event] = []

    def resolve(path: str, client: tuple[str, int]) -> TftpFile | None:
        found = static_file(root, path)
        return TftpFile(path=found) if found else None

    service = TftpService(["127.0.0.1", "127.0.0.2"], 0, resolve, events.append)
    with service:
        addresses = service.addresses
        assert [ip for ip, _ in addresses] == ["127.0.0.1", "127.0.0.2"]
        assert len({port for _, port in addresses}) == 1
        for ip, port in addresses:
            with TftpTestClient(ip, port) as c:
                r = c.get("small.cfg")
            assert r.ok and r.data == b"DEFAULT local\n"  # the client only accepts replies from ``ip``
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.3", 0))
            s.settimeout(0.5)
            s.sendto(rrq("small.cfg"), ("127.0.0.3", addresses[0][1]))
            with pytest.raises(OSError):
                s.recvfrom(2048)  # nothing listens on an address that was not asked for


def test_abandon_storm_then_normal_service_and_fds_back_to_baseline(make_service, root: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 4 * STORM + 200  # our client sockets, the server's transfer sockets and files, and spare
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the hard limit of open files ({hard}) is below the {needed} this test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    try:
        service, events = make_service(max_transfers=STORM + 100, resend_timeout=0.3, resend_tries=2)
        port = service.address[1]
        baseline = open_fds()
        clients = []
        try:
            for i in range(STORM):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind((client_address(i), 0))
                clients.append(s)
            peak = {"transfers": 0, "fd": 0}
            watching = threading.Event()

            def watch() -> None:
                while not watching.is_set():
                    peak["transfers"] = max(peak["transfers"], service.transfers)
                    peak["fd"] = max([peak["fd"], *service._by_fd])
                    time.sleep(0.05)

            watcher = threading.Thread(target=watch)
            watcher.start()
            try:
                for i, s in enumerate(clients):  # one request each, never acknowledged
                    name = "generated.cfg" if i % 2 else "loader.efi"
                    request = rrq(name, blksize="1468", tsize="0") if i % 3 else rrq(name)
                    s.sendto(request, ("127.0.0.1", port))
                    if i % 100 == 99:  # in bursts the listening socket's buffer can hold
                        wait_for(lambda n=i + 1: rrqs(events) >= n, what=f"{i + 1} requests seen")
                wait_for(lambda: rrqs(events) == STORM, what="every request seen")
                wait_for(lambda: service.transfers == 0, timeout=60, what="every abandoned transfer expired")
            finally:
                watching.set()
                watcher.join()
        finally:
            for s in clients:
                s.close()
        assert peak["fd"] > 1024  # transfers lived on descriptors select() cannot watch
        assert peak["transfers"] > 1024
        kinds = [e.kind for e in events]
        assert kinds.count("tftp.abort") + kinds.count("tftp.error") == STORM
        assert service._thread is not None and service._thread.is_alive()
        with TftpTestClient("127.0.0.1", port) as c:
            r = c.get("loader.efi", blksize=1468, tsize=True, windowsize=8)
        assert r.ok and r.sha256 == hashlib.sha256((root / "loader.efi").read_bytes()).hexdigest()
        wait_for(lambda: open_fds() <= baseline, timeout=10, what=f"descriptors back to {baseline}")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
