"""The TFTP service on 127.0.0.1 against the independent scripted client (no namespaces, no root needed)."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pypxe_homelab.errors import UserError
from pypxe_homelab.events import Event
from pypxe_homelab.rootfiles import static_file
from pypxe_homelab.services.tftp import TftpFile, TftpService
from tests.lab.tftpclient import TftpTestClient

GENERATED = b"DEFAULT install\nLABEL install\n  KERNEL http://10.0.0.5:12345/node01/casper/vmlinuz\n"
MAC_CONFIG = "pxelinux.cfg/01-52-54-00-a0-00-01"


@dataclass
class Lab:
    root: Path
    service: TftpService
    events: list[Event] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    resolved: list[tuple[str, tuple[str, int]]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.service.address[1]

    def client(self, **kw) -> TftpTestClient:
        return TftpTestClient("127.0.0.1", self.port, **kw)

    def kinds(self, path: str | None = None) -> list[str]:
        return [e.kind for e in self.events if path is None or e.detail.get("path") == path]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"condition not met; events: {[(e.kind, e.detail) for e in self.events]}"
                )
            time.sleep(0.02)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    root = tmp_path / "tftproot"
    (root / "efi64").mkdir(parents=True)
    files = {
        "lpxelinux.0": os.urandom(42_000),
        "ldlinux.c32": os.urandom(120_123),
        "efi64/syslinux.efi": os.urandom(200_001),
        "empty.bin": b"",
        "exact.bin": os.urandom(1468 * 3),  # ends on a block boundary: needs an empty last DATA
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    (tmp_path / "secret.txt").write_text("not for clients\n")
    (root / "escape").symlink_to(tmp_path / "secret.txt")

    lab_ref: list[Lab] = []

    def resolve(path: str, client: tuple[str, int]) -> TftpFile | None:
        lab_ref[0].resolved.append((path, client))
        if path.endswith(MAC_CONFIG):
            return TftpFile(data=GENERATED)
        found = static_file(root, path)
        return TftpFile(path=found) if found else None

    events: list[Event] = []
    service = TftpService("127.0.0.1", 0, resolve, events.append, mtu=1500)
    lab_ref.append(Lab(root, service, events, files))
    service.start()
    try:
        yield lab_ref[0]
    finally:
        service.stop()


@pytest.mark.parametrize("blksize", [1468, 1432, 1408, 1024])
def test_fetch_with_blksize_and_tsize(lab: Lab, blksize: int) -> None:
    with lab.client() as c:
        r = c.get("ldlinux.c32", blksize=blksize, tsize=True)
    assert r.ok, r
    assert r.oack == {"blksize": str(blksize), "tsize": str(len(lab.files["ldlinux.c32"]))}
    assert r.sha256 == sha(lab.files["ldlinux.c32"])
    assert r.max_block == blksize
    lab.wait_for(lambda: "tftp.done" in lab.kinds())
    done = [e for e in lab.events if e.kind == "tftp.done"][0]
    assert done.detail["bytes"] == len(lab.files["ldlinux.c32"])
    assert done.detail["blksize"] == blksize
    assert done.detail["duration"] >= 0


def test_blksize_is_clamped_to_mtu(lab: Lab) -> None:
    with lab.client() as c:
        r = c.get("efi64/syslinux.efi", blksize=9000, tsize=True)
    assert r.ok
    assert r.oack == {"blksize": "1468", "tsize": str(len(lab.files["efi64/syslinux.efi"]))}
    assert r.max_block == 1468
    assert r.sha256 == sha(lab.files["efi64/syslinux.efi"])


def test_no_options_means_no_oack_and_512_blocks(lab: Lab) -> None:
    with lab.client() as c:
        r = c.get("lpxelinux.0")
    assert r.ok and r.oack is None
    assert r.max_block == 512
    assert r.sha256 == sha(lab.files["lpxelinux.0"])


def test_windowsize_is_negotiated_and_capped(lab: Lab) -> None:
    with lab.client() as c:
        r = c.get("lpxelinux.0", windowsize=4)
        r2 = c.get("ldlinux.c32", blksize=1468, windowsize=1000)
    assert r.ok and r.oack == {"windowsize": "4"} and r.max_block == 512
    assert r.sha256 == sha(lab.files["lpxelinux.0"])
    assert r.duplicates == 0 and r.acks == -(-r.blocks // 4)  # one ACK per window of 4
    assert r2.ok and r2.oack == {"blksize": "1468", "windowsize": "64"}
    assert r2.sha256 == sha(lab.files["ldlinux.c32"])


def test_windowsize_off_means_lock_step(lab: Lab) -> None:
    lab.service.max_windowsize = 1
    with lab.client() as c:
        r = c.get("lpxelinux.0", blksize=1468, windowsize=8)
    assert r.ok and r.oack == {"blksize": "1468"} and r.windowsize == 1
    assert r.acks == r.blocks


@pytest.mark.parametrize(
    ("window", "drop", "duplicates"),
    [
        (8, {5}, 0),  # inside a window: the client acknowledges block 4, the server restarts at 5
        (8, {9}, 0),  # first block of a window: a duplicate ACK of 8 restarts the window at 9
        (8, {16}, 7),  # last block of a window: no ACK comes; on the timeout 9-16 again (9-15 twice)
        (4, {3, 4, 7, 30}, 4),
        (1, {2, 10}, 0),  # lock-step: only the timeout recovers
    ],
)
def test_lost_block_in_a_window_is_sent_again(lab: Lab, window: int, drop: set[int], duplicates: int) -> None:
    lab.service.resend_timeout = 0.2
    name = "ldlinux.c32"  # 82 blocks of 1468
    with lab.client(timeout=1.0) as c:
        r = c.get(name, blksize=1468, windowsize=window, drop=drop)
    assert r.ok, r
    assert r.windowsize == window and sorted(r.dropped) == sorted(drop)
    assert r.duplicates == duplicates  # each restart begins at the first block the client lacks
    assert r.sha256 == sha(lab.files[name])
    lab.wait_for(lambda: "tftp.done" in lab.kinds())
    done = next(e for e in lab.events if e.kind == "tftp.done")
    assert done.detail["bytes"] == len(lab.files[name]) and done.detail["windowsize"] == window


def test_windowed_block_number_rollover(lab: Lab) -> None:
    data = os.urandom(16 * 65536 + 100)
    (lab.root / "big.bin").write_bytes(data)
    lab.service.resend_timeout = 0.2
    with lab.client(timeout=2) as c:
        r = c.get("big.bin", blksize=16, windowsize=16, drop={65535, 65536, 65537})
    assert r.ok and r.blocks == 65536 + 7 and r.windowsize == 16
    assert r.dropped == [65535, 65536, 65537]
    assert r.sha256 == sha(data)


@pytest.mark.parametrize("name", ["empty.bin", "exact.bin"])
def test_empty_and_block_aligned_files(lab: Lab, name: str) -> None:
    with lab.client() as c:
        r = c.get(name, blksize=1468, tsize=True)
    assert r.ok and r.bytes == len(lab.files[name])
    assert r.oack == {"blksize": "1468", "tsize": str(len(lab.files[name]))}
    assert r.blocks == len(lab.files[name]) // 1468 + 1


def test_generated_file_and_device_id_in_events(lab: Lab) -> None:
    with lab.client() as c:
        r = c.get("efi64/" + MAC_CONFIG, blksize=1468, tsize=True)
        port = c.local_port
    assert r.ok and r.data == GENERATED
    assert r.oack == {"blksize": "1468", "tsize": str(len(GENERATED))}
    lab.wait_for(lambda: "tftp.done" in lab.kinds())
    rrq, done = lab.events
    assert rrq.kind == "tftp.rrq"
    assert rrq.client == f"127.0.0.1:{port}"
    assert rrq.device_id == "01-52-54-00-a0-00-01" and rrq.mac == "52:54:00:a0:00:01"
    assert rrq.detail == {
        "path": "efi64/" + MAC_CONFIG,
        "raw": "efi64/" + MAC_CONFIG,
        "options": {"blksize": "1468", "tsize": "0"},
        "hint": {"source": "pxelinux-mac", "device_id": "01-52-54-00-a0-00-01", "mac": "52:54:00:a0:00:01"},
    }
    assert done.device_id == "01-52-54-00-a0-00-01"
    assert lab.resolved == [("efi64/" + MAC_CONFIG, ("127.0.0.1", port))]


def test_odd_names_are_normalised_before_the_resolver(lab: Lab) -> None:
    with lab.client() as c:
        r1 = c.get("\\efi64\\syslinux.efi")
        r2 = c.get("//efi64//./syslinux.efi")
    assert r1.ok and r2.ok
    assert [p for p, _ in lab.resolved] == ["efi64/syslinux.efi", "efi64/syslinux.efi"]


def test_wrq_refused_and_nothing_written(lab: Lab) -> None:
    before = sorted(p.name for p in lab.root.rglob("*"))
    with lab.client() as c:
        r = c.put("uploaded.bin")
        r2 = c.put("lpxelinux.0")
    assert r.error_code == 2 and r2.error_code == 2
    assert sorted(p.name for p in lab.root.rglob("*")) == before
    assert (lab.root / "lpxelinux.0").read_bytes() == lab.files["lpxelinux.0"]
    lab.wait_for(lambda: lab.kinds().count("tftp.error") == 2)


@pytest.mark.parametrize("name", ["../secret.txt", "/../secret.txt", "..\\secret.txt", "escape", "C:\\x"])
def test_traversal_and_symlink_escape_refused(lab: Lab, name: str) -> None:
    with lab.client() as c:
        r = c.get(name, tsize=True)
    assert not r.ok and r.error_code == 2, r
    assert r.bytes == 0
    lab.wait_for(lambda: "tftp.error" in lab.kinds())
    err = [e for e in lab.events if e.kind == "tftp.error"][0]
    assert err.detail["code"] == 2 and err.detail["raw"] == name


def test_missing_file_is_error_1_at_once(lab: Lab) -> None:
    with lab.client() as c:
        started = time.monotonic()
        results = [c.get(n) for n in ("pxelinux.cfg/C0A8010A", "pxelinux.cfg/C0A801", "pxelinux.cfg/default")]
        elapsed = time.monotonic() - started
    assert all(r.error_code == 1 for r in results)
    assert elapsed < 1.0  # three misses in a row, as PXELINUX's config search produces
    lab.wait_for(lambda: lab.kinds().count("tftp.error") == 3)
    first = next(e for e in lab.events if e.kind == "tftp.rrq")
    assert first.detail["hint"] == {"source": "pxelinux-ip", "ipv4": "192.168.1.10"}


def test_edk2_size_probe_then_full_fetch(lab: Lab) -> None:
    name = "efi64/syslinux.efi"
    with lab.client() as probe:
        p = probe.get(name, tsize=True, blksize=1468, windowsize=4, abort_after_oack=True)
    with lab.client() as fetch:
        r = fetch.get(name, blksize=1468, windowsize=4)
    assert p.aborted and p.oack == {"tsize": str(len(lab.files[name])), "blksize": "1468", "windowsize": "4"}
    assert r.ok and r.sha256 == sha(lab.files[name]) and r.oack == {"blksize": "1468", "windowsize": "4"}
    lab.wait_for(lambda: "tftp.done" in lab.kinds())
    abort = next(e for e in lab.events if e.kind == "tftp.abort")
    assert abort.detail["probe"] is True and abort.detail["code"] == 8 and abort.detail["bytes"] == 0
    assert "tftp.error" not in lab.kinds()


def test_consecutive_requests_from_the_same_port(lab: Lab) -> None:
    names = ["lpxelinux.0", "ldlinux.c32", "efi64/" + MAC_CONFIG, "lpxelinux.0"]
    with lab.client() as c:
        results = [c.get(n, blksize=1408, tsize=True) for n in names]
        port = c.local_port
    assert all(r.ok for r in results), results
    assert results[1].sha256 == sha(lab.files["ldlinux.c32"])
    lab.wait_for(lambda: lab.kinds().count("tftp.done") == 4)
    assert {e.client for e in lab.events} == {f"127.0.0.1:{port}"}
    assert "tftp.abort" not in lab.kinds() and "tftp.error" not in lab.kinds()


def test_block_number_rollover(lab: Lab) -> None:
    data = os.urandom(16 * 65536 + 100)  # more than 65535 blocks of 16 bytes
    (lab.root / "big.bin").write_bytes(data)
    with lab.client(timeout=5) as c:
        r = c.get("big.bin", blksize=16)
    assert r.ok and r.blocks == 65536 + 7
    assert r.sha256 == sha(data)


def test_repeated_request_before_any_answer_is_ignored(lab: Lab) -> None:
    request = b"\x00\x01lpxelinux.0\x00octet\x00blksize\x001468\x00"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.bind(("127.0.0.1", 0))
        s.sendto(request, ("127.0.0.1", lab.port))
        s.sendto(request, ("127.0.0.1", lab.port))
        oack, server = s.recvfrom(2048)
        assert oack[:2] == b"\x00\x06"
        lab.wait_for(lambda: len(lab.resolved) >= 1)
        time.sleep(0.2)
        assert lab.kinds() == ["tftp.rrq"]  # one transfer, the copy did not restart it
        s.sendto(struct.pack("!HH", 5, 8) + b"done\x00", server)
    lab.wait_for(lambda: "tftp.abort" in lab.kinds())


def test_packets_from_a_stranger_get_unknown_tid(lab: Lab) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as owner,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger,
    ):
        for s in (owner, stranger):
            s.settimeout(3)
            s.bind(("127.0.0.1", 0))
        owner.sendto(b"\x00\x01lpxelinux.0\x00octet\x00", ("127.0.0.1", lab.port))
        data1, tid = owner.recvfrom(2048)
        assert data1[:4] == b"\x00\x03\x00\x01"
        stranger.sendto(b"\x00\x04\x00\x01", tid)
        err, _ = stranger.recvfrom(2048)
        assert err[:4] == b"\x00\x05\x00\x05"
        owner.sendto(b"\x00\x04\x00\x01", tid)
        data2, _ = owner.recvfrom(2048)
        assert data2[:4] == b"\x00\x03\x00\x02"  # the transfer went on
        owner.sendto(b"\x00\x05\x00\x00stop\x00", tid)
    lab.wait_for(lambda: "tftp.abort" in lab.kinds())
    abort = next(e for e in lab.events if e.kind == "tftp.abort")
    assert abort.detail["probe"] is False and abort.detail["bytes"] == 1024


def test_garbage_does_not_kill_the_server(lab: Lab) -> None:
    junk = [
        b"",
        b"\x00",
        b"\xff" * 3,
        b"\x00\x01",
        b"\x00\x01abc",
        b"\x00\x01\xff\xfe\x00octet\x00blksize\x00abc\x00",
        b"\x00\x01x\x00octet\x00blksize\x00\xff\x00",
        b"\x00\x01x\x00bogus\x00",
        b"\x00\x03\x00\x01data",
        b"\x00\x04\x00",
        b"\x00\x05\x00",
        b"\x00\x06tsize\x00",
        os.urandom(1500),
        os.urandom(65000),
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        for datagram in junk:
            s.sendto(datagram, ("127.0.0.1", lab.port))
        # and junk on a running transfer's own port
        s.settimeout(3)
        s.sendto(b"\x00\x01lpxelinux.0\x00octet\x00", ("127.0.0.1", lab.port))
        while True:
            first, tid = s.recvfrom(2048)
            if first[:2] == b"\x00\x03":
                break
        for datagram in (b"\x00", b"\x00\x04\x00", b"\x00\x04", os.urandom(700), b"\x00\x09\x00\x00"):
            s.sendto(datagram, tid)
    time.sleep(0.2)
    with lab.client() as c:
        r = c.get("ldlinux.c32", blksize=1468, tsize=True)
    assert r.ok and r.sha256 == sha(lab.files["ldlinux.c32"])
    assert lab.service._thread is not None and lab.service._thread.is_alive()


def test_client_that_vanishes_is_dropped_after_retries(lab: Lab) -> None:
    lab.service.resend_timeout = 0.1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.sendto(b"\x00\x01lpxelinux.0\x00octet\x00tsize\x000\x00", ("127.0.0.1", lab.port))
        s.settimeout(3)
        copies = 0
        with pytest.raises(TimeoutError):
            while True:
                s.settimeout(1.5)
                packet, _ = s.recvfrom(2048)
                assert packet[:2] == b"\x00\x06"
                copies += 1
    assert copies == 1 + lab.service.resend_tries
    lab.wait_for(lambda: "tftp.abort" in lab.kinds())
    abort = next(e for e in lab.events if e.kind == "tftp.abort")
    assert abort.detail["probe"] is True and abort.detail["code"] is None


def test_concurrent_clients(lab: Lab) -> None:
    results = []

    def fetch(name: str) -> None:
        with lab.client() as c:
            results.append((name, c.get(name, blksize=1468, tsize=True)))

    threads = [threading.Thread(target=fetch, args=(n,)) for n in ["ldlinux.c32", "efi64/syslinux.efi"] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6
    assert all(r.ok and r.sha256 == sha(lab.files[n]) for n, r in results)


def test_port_in_use_is_one_clear_user_error(lab: Lab) -> None:
    other = TftpService("127.0.0.1", lab.port, lambda p, c: None, lambda e: None)
    with pytest.raises(UserError, match="already in use") as info:
        other.start()
    assert "\n" not in str(info.value) and "tftp_port" not in str(info.value)
    assert "stop that program (firmware only asks port 69)" in str(info.value)


def test_address_not_on_this_host_is_a_user_error() -> None:
    service = TftpService("192.0.2.1", 0, lambda p, c: None, lambda e: None)
    with pytest.raises(UserError, match="not an address of this host"):
        service.start()


def test_stop_releases_the_port_and_can_be_called_twice(tmp_path: Path) -> None:
    service = TftpService("127.0.0.1", 0, lambda p, c: None, lambda e: None)
    service.start()
    port = service.address[1]
    service.stop()
    service.stop()
    again = TftpService("127.0.0.1", port, lambda p, c: None, lambda e: None)
    again.start()
    again.stop()
    assert not [t for t in threading.enumerate() if t.name == "tftp"]
