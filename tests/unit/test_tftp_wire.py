"""TFTP request parsing, option negotiation and error packets."""

from __future__ import annotations

import struct

import pytest

from pypxe_homelab.protocol.tftp_wire import (
    OP_RRQ,
    OP_WRQ,
    MalformedPacket,
    ack_block,
    acknowledged,
    block_count,
    error_packet,
    max_blksize_for_mtu,
    negotiate,
    oack_packet,
    opcode_of,
    parse_error,
    parse_request,
)


def rrq(name: bytes, *opts: bytes, op: int = OP_RRQ, mode: bytes = b"octet") -> bytes:
    return struct.pack("!H", op) + name + b"\0" + mode + b"\0" + b"".join(o + b"\0" for o in opts)


def test_parse_rrq_with_edk2_options() -> None:
    req = parse_request(rrq(b"efi64/syslinux.efi", b"tsize", b"0", b"blksize", b"1468", b"windowsize", b"4"))
    assert req.opcode == OP_RRQ and not req.is_write
    assert req.raw_name == "efi64/syslinux.efi"
    assert req.mode == "octet"
    assert req.options == {"tsize": "0", "blksize": "1468", "windowsize": "4"}


def test_parse_rrq_without_options_pi3_style() -> None:
    req = parse_request(rrq(b"bootcode.bin"))
    assert req.options == {}


def test_option_names_are_case_insensitive_and_first_wins() -> None:
    req = parse_request(rrq(b"f", b"BLKSIZE", b"1024", b"TSize", b"0", b"blksize", b"8"))
    assert req.options == {"blksize": "1024", "tsize": "0"}


def test_mode_is_case_insensitive_and_netascii_accepted() -> None:
    assert parse_request(rrq(b"f", mode=b"OCTET")).mode == "octet"
    assert parse_request(rrq(b"f", mode=b"NetASCII")).mode == "netascii"


def test_wrq_is_recognised() -> None:
    assert parse_request(rrq(b"upload.bin", op=OP_WRQ)).is_write


def test_trailing_padding_and_dangling_option_are_tolerated() -> None:
    padded = rrq(b"f", b"blksize", b"1408") + b"\0\0\0"
    assert parse_request(padded).options == {"blksize": "1408"}
    dangling = rrq(b"f", b"blksize", b"1408", b"tsize")
    assert parse_request(dangling).options == {"blksize": "1408"}


def test_non_ascii_name_survives_as_latin1() -> None:
    assert parse_request(rrq(b"caf\xe9.bin")).raw_name == "caf\xe9.bin"


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"\x00",
        b"\x00\x01",
        b"\x00\x01abc",  # no terminating NUL
        b"\x00\x01\x00octet\x00",  # empty name
        b"\x00\x01name\x00\x00",  # empty mode
        b"\x00\x01name\x00mail\x00",  # obsolete mode
        b"\x00\x03\x00\x01data",  # DATA is not a request
        b"\x00\x04\x00\x00",
        b"\xff\xffjunk\x00octet\x00",
    ],
)
def test_malformed_requests(datagram: bytes) -> None:
    with pytest.raises(MalformedPacket):
        parse_request(datagram)


def test_opcode_of() -> None:
    assert opcode_of(b"\x00\x01x") == 1
    assert opcode_of(b"\x00") is None


@pytest.mark.parametrize(("mtu", "blk"), [(1500, 1468), (9000, 8968), (576, 544), (65536, 65464), (20, 8)])
def test_max_blksize_for_mtu(mtu: int, blk: int) -> None:
    assert max_blksize_for_mtu(mtu) == blk


def test_negotiate_answers_only_what_was_asked_in_order() -> None:
    asked = {"tsize": "0", "blksize": "1408"}
    assert list(negotiate(asked, size=123, max_blksize=1468).items()) == [
        ("tsize", "123"),
        ("blksize", "1408"),
    ]


@pytest.mark.parametrize(
    ("asked", "answered"),
    [("1468", "1468"), ("1432", "1432"), ("1024", "1024"), ("9000", "1468"), ("65464", "1468"), ("8", "8")],
)
def test_negotiate_clamps_blksize(asked: str, answered: str) -> None:
    assert negotiate({"blksize": asked}, size=None, max_blksize=1468) == {"blksize": answered}


@pytest.mark.parametrize("bad", ["7", "0", "-5", "abc", "", "1e3"])
def test_negotiate_ignores_invalid_blksize(bad: str) -> None:
    assert negotiate({"blksize": bad}, size=10, max_blksize=1468) == {}


def test_negotiate_drops_windowsize_and_timeout() -> None:
    asked = {"blksize": "1468", "windowsize": "4", "timeout": "5", "multicast": ""}
    assert negotiate(asked, size=1, max_blksize=1468) == {"blksize": "1468"}


def test_negotiate_only_unsupported_options_means_no_oack() -> None:
    assert negotiate({"windowsize": "4"}, size=1, max_blksize=1468) == {}


def test_negotiate_tsize_needs_a_known_size() -> None:
    assert negotiate({"tsize": "0"}, size=None, max_blksize=1468) == {}
    assert negotiate({"tsize": "0"}, size=0, max_blksize=1468) == {"tsize": "0"}


def test_error_packet_round_trip() -> None:
    packet = error_packet(1, "File not found")
    assert packet == b"\x00\x05\x00\x01File not found\x00"
    assert parse_error(packet) == (1, "File not found")


def test_parse_error_edk2_abort_and_bare_four_bytes() -> None:
    assert parse_error(b"\x00\x05\x00\x08User aborted the transfer\x00") == (8, "User aborted the transfer")
    assert parse_error(b"\x00\x05\x00\x08") == (8, "")
    with pytest.raises(MalformedPacket):
        parse_error(b"\x00\x04\x00\x00")


# ---- RFC 7440 windowsize, ACK arithmetic across rollover, packets ------------------------------------


def test_windowsize_is_granted_up_to_the_cap() -> None:
    asked = {"blksize": "1468", "windowsize": "16"}
    assert negotiate(asked, size=10, max_blksize=1468, max_windowsize=64) == {
        "blksize": "1468",
        "windowsize": "16",
    }
    assert negotiate({"windowsize": "1000"}, size=10, max_blksize=1468, max_windowsize=64) == {
        "windowsize": "64"
    }
    assert negotiate({"windowsize": "1"}, size=10, max_blksize=1468, max_windowsize=64) == {"windowsize": "1"}


@pytest.mark.parametrize("value", ["0", "-4", "abc", "", "65536", "١٢", "4 "])
def test_invalid_windowsize_is_left_out(value: str) -> None:
    assert negotiate({"windowsize": value}, size=10, max_blksize=1468, max_windowsize=64) == {}


def test_windowsize_off_answers_lock_step() -> None:
    assert negotiate({"windowsize": "8", "tsize": "0"}, size=7, max_blksize=1468, max_windowsize=1) == {
        "tsize": "7"
    }
    assert negotiate({"windowsize": "8"}, size=7, max_blksize=1468) == {}  # the default cap is lock-step


def test_timeout_option_is_not_answered() -> None:
    """The server keeps its own resend timer (never under 2 s), whatever the client asks."""
    assert negotiate({"timeout": "1"}, size=7, max_blksize=1468, max_windowsize=64) == {}


def test_oack_packet_keeps_the_order() -> None:
    assert oack_packet({"blksize": "1468", "tsize": "42", "windowsize": "4"}) == (
        b"\x00\x06blksize\x001468\x00tsize\x0042\x00windowsize\x004\x00"
    )


@pytest.mark.parametrize(
    ("size", "blksize", "blocks"), [(0, 512, 1), (511, 512, 1), (512, 512, 2), (1469, 1468, 2)]
)
def test_block_count_always_ends_with_a_short_block(size: int, blksize: int, blocks: int) -> None:
    assert block_count(size, blksize) == blocks


@pytest.mark.parametrize(
    ("wire", "acked", "sent", "expected"),
    [
        (0, -1, 0, 0),  # the ACK of the OACK
        (1, 0, 1, 1),  # lock-step
        (4, 0, 8, 4),  # from inside a window: the client saw a gap after 4
        (8, 0, 8, 8),
        (9, 0, 8, None),  # beyond what was sent
        (0, 0, 8, None),  # a duplicate
        (65535, 65530, 65540, 65535),
        (0, 65530, 65540, 65536),  # the block number rolled over to 0
        (4, 65535, 65540, 65540),
        (65534, 65536, 65540, None),  # an old ACK from before the rollover
        (2, 131070, 131075, 131074),  # the second rollover
    ],
)
def test_acknowledged_reads_acks_across_rollover(
    wire: int, acked: int, sent: int, expected: int | None
) -> None:
    assert acknowledged(wire, acked, sent) == expected


def test_ack_block() -> None:
    assert ack_block(b"\x00\x04\x01\x02") == 258
    assert ack_block(b"\x00\x04\x01") is None
    assert ack_block(b"\x00\x05\x00\x01") is None
