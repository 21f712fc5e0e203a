"""The transfer engine against a scripted socket: block headers, the ACK fast path, duplicates and the timer."""

from __future__ import annotations

import struct

from pypxe_homelab.services.tftp_transfer import CHUNK_BYTES, DONE, STRANGER, BlockSource, Transfer

CLIENT = ("192.0.2.10", 40000)


class ScriptedSocket:
    """Records what is sent; hands out the datagrams queued in ``inbox``."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.inbox: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, packet: memoryview | bytes, addr: tuple[str, int]) -> int:
        assert addr == CLIENT
        self.sent.append(bytes(packet))
        return len(packet)

    def recvfrom(self, size: int) -> tuple[bytes, tuple[str, int]]:
        data, addr = self.inbox.pop(0)
        return data[:size], addr

    def close(self) -> None:
        pass


def ack(block: int) -> bytes:
    return struct.pack("!HH", 4, block & 0xFFFF)


def blocks(packets: list[bytes]) -> list[int]:
    return [struct.unpack("!HH", p[:4])[1] for p in packets if p[:2] == b"\x00\x03"]


def transfer(data: bytes, *, blksize: int = 8, windowsize: int = 1, options: bool = False):
    sock = ScriptedSocket()
    opts = {"blksize": str(blksize)} if options else {}
    t = Transfer(
        sock,  # type: ignore[arg-type]
        CLIENT,
        BlockSource(data=data, size=len(data)),
        blksize=blksize,
        windowsize=windowsize,
        timeout=2.0,
        options=opts,
    )
    return t, sock


def answer(
    t: Transfer, sock: ScriptedSocket, datagram: bytes, sender: tuple[str, int] = CLIENT
) -> str | None:
    sock.inbox.append((datagram, sender))
    return t.readable()


def test_lock_step_sends_every_block_with_its_header_and_a_short_last_one() -> None:
    data = bytes(range(256)) * 3 + b"tail"  # 772 bytes: 96 full blocks of 8 and a 4-byte last block
    t, sock = transfer(data)
    t.begin()
    block = 1
    while answer(t, sock, ack(block)) != DONE:
        block += 1
    assert blocks(sock.sent) == list(range(1, 98))
    assert b"".join(p[4:] for p in sock.sent) == data
    assert len(sock.sent[-1]) == 4 + 4


def test_block_numbers_roll_over_inside_one_chunk() -> None:
    blksize = 8
    data = bytes(blksize * 65540)
    t, sock = transfer(data, blksize=blksize, windowsize=16)
    t.begin()
    while True:
        outcome = answer(t, sock, ack(t.sent))
        if outcome == DONE:
            break
    numbers = blocks(sock.sent)
    assert numbers[65533:65538] == [65534, 65535, 0, 1, 2]
    assert len(numbers) == 65541  # 65540 full blocks and the empty last one
    assert CHUNK_BYTES // blksize > 16  # the rollover fell inside a chunk, not on a chunk boundary


def test_duplicate_ack_in_lock_step_is_ignored() -> None:
    t, sock = transfer(bytes(100))
    t.begin()
    answer(t, sock, ack(1))
    assert blocks(sock.sent) == [1, 2]
    answer(t, sock, ack(1))  # the Sorcerer's Apprentice: answering would double every later block
    assert blocks(sock.sent) == [1, 2]


def test_duplicate_ack_in_a_window_resends_the_window() -> None:
    t, sock = transfer(bytes(200), windowsize=4, options=True)
    t.begin()
    answer(t, sock, ack(0))  # the OACK is acknowledged
    assert blocks(sock.sent) == [1, 2, 3, 4]
    answer(t, sock, ack(0))  # block 1 never arrived
    assert blocks(sock.sent) == [1, 2, 3, 4, 1, 2, 3, 4]
    answer(t, sock, ack(4))
    assert blocks(sock.sent)[-4:] == [5, 6, 7, 8]


def test_ack_from_inside_the_window_restarts_at_the_first_missing_block() -> None:
    t, sock = transfer(bytes(200), windowsize=4)
    t.begin()
    answer(t, sock, ack(2))
    assert blocks(sock.sent) == [1, 2, 3, 4, 3, 4, 5, 6]
    answer(t, sock, ack(6))
    assert blocks(sock.sent)[-4:] == [7, 8, 9, 10]


def test_stranger_and_error_are_handed_to_the_service() -> None:
    t, sock = transfer(bytes(100))
    t.begin()
    assert not t.heard_back
    assert answer(t, sock, ack(1), ("192.0.2.99", 5)) == STRANGER and t.stranger == ("192.0.2.99", 5)
    assert not t.heard_back
    assert answer(t, sock, b"\x00\x05\x00\x00stop\x00") == "client-error"
    assert t.heard_back and bytes(t.received) == b"\x00\x05\x00\x00stop\x00"


def test_timer_is_never_early_and_progress_resets_tries() -> None:
    t, sock = transfer(bytes(100))
    t.begin()
    assert not t.overdue(10.0)  # the sweep sees the first send: the deadline is 12.0
    assert not t.overdue(11.9)
    assert t.overdue(12.0)
    t.resend()
    assert t.tries == 1 and blocks(sock.sent) == [1, 1]
    assert not t.overdue(12.1) and not t.overdue(14.0)
    answer(t, sock, ack(1))  # progress
    assert not t.overdue(14.2) and t.tries == 0
    assert t.overdue(16.2)
