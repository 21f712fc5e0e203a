"""A scripted TFTP client for tests, written on plain sockets (standard library only).

It behaves like the firmware the server meets: RRQ with blksize/tsize/windowsize, an EDK2-style size probe
(abort with ERROR 8 after the OACK), lpxelinux-style consecutive requests from one local port, and WRQ
attempts. With a negotiated windowsize it acknowledges once per window and, on a gap, the last block it got
in order (RFC 7440); ``drop`` names blocks (counted from 1 across rollover) whose first copy it discards, as
if the network had lost them. Usable as a module or as a script inside a network namespace::

    python3 tests/lab/tftpclient.py 10.231.5.3 --blksize 1408 --tsize lpxelinux.0 ldlinux.c32
    python3 tests/lab/tftpclient.py 10.231.5.3 --abort-after-oack --tsize efi64/syslinux.efi
    python3 tests/lab/tftpclient.py 10.231.5.3 --put upload.txt

prints one JSON object per request (a JSON list), see ``TftpResult``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass, field

RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6


@dataclass
class TftpResult:
    """The outcome of one request as the client saw it."""

    path: str
    ok: bool = False
    bytes: int = 0
    sha256: str | None = None
    oack: dict[str, str] | None = None
    error_code: int | None = None
    error_message: str | None = None
    aborted: bool = False  # we sent ERROR after the OACK (size probe)
    blocks: int = 0
    max_block: int = 0  # largest DATA payload received
    duplicates: int = 0  # DATA blocks received twice
    windowsize: int = 1
    acks: int = 0  # ACKs of DATA sent
    dropped: list[int] = field(default_factory=list)  # blocks whose first copy was discarded on purpose
    server_port: int | None = None
    local_port: int = 0
    duration: float = 0.0
    data: bytes = field(default=b"", repr=False)

    def as_json(self) -> dict:
        out = asdict(self)
        out.pop("data")
        return out


def _request(opcode: int, path: str, options: dict[str, str]) -> bytes:
    body = path.encode("latin-1") + b"\0octet\0"
    for key, value in options.items():
        body += key.encode() + b"\0" + str(value).encode() + b"\0"
    return struct.pack("!H", opcode) + body


def _error(code: int, message: str) -> bytes:
    return struct.pack("!HH", ERROR, code) + message.encode() + b"\0"


def _parse_options(payload: bytes) -> dict[str, str]:
    parts = payload.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return {parts[i].decode().lower(): parts[i + 1].decode() for i in range(0, len(parts) - 1, 2)}


class TftpTestClient:
    """One local UDP port; every request reuses it (like lpxelinux). Close it when done."""

    def __init__(
        self, server: str, port: int = 69, *, timeout: float = 3.0, retries: int = 3, local_ip: str = ""
    ) -> None:
        self.server = server
        self.port = port
        self.timeout = timeout
        self.retries = retries
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local_ip, 0))
        self.local_port = self.sock.getsockname()[1]
        self._old_tids: set[int] = set()  # server ports of earlier transfers: their late packets are ignored

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> TftpTestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, datagram: bytes, port: int | None = None) -> None:
        """Send any bytes to the server (to test its robustness)."""
        self.sock.sendto(datagram, (self.server, port or self.port))

    def _drain(self) -> None:
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recvfrom(65536)
        except (BlockingIOError, OSError):
            pass
        finally:
            self.sock.setblocking(True)

    def get(
        self,
        path: str,
        *,
        blksize: int | None = None,
        tsize: bool = False,
        windowsize: int | None = None,
        options: dict[str, str] | None = None,
        abort_after_oack: bool = False,
        drop: set[int] | None = None,
        fail_at_block: int | None = None,
    ) -> TftpResult:
        """Download ``path``; with ``abort_after_oack`` stop after the OACK as EDK2's size probe does.

        ``drop``: absolute block numbers (1, 2, … across rollover) whose first arrival is discarded.
        ``fail_at_block``: give up with an ERROR when that block arrives (a client that cannot take it).
        """
        opts: dict[str, str] = {}
        if tsize:
            opts["tsize"] = "0"
        if blksize is not None:
            opts["blksize"] = str(blksize)
        if windowsize is not None:
            opts["windowsize"] = str(windowsize)
        opts.update(options or {})
        return self._transfer(
            RRQ,
            path,
            opts,
            abort_after_oack=abort_after_oack,
            drop=drop or set(),
            fail_at_block=fail_at_block,
        )

    def put(self, path: str, data: bytes = b"upload attempt\n") -> TftpResult:
        """Try to upload; a read-only server answers ERROR (2 or 4)."""
        result = self._transfer(WRQ, path, {}, upload=data)
        return result

    def _transfer(
        self,
        opcode: int,
        path: str,
        opts: dict[str, str],
        *,
        abort_after_oack: bool = False,
        upload: bytes = b"",
        drop: set[int] | None = None,
        fail_at_block: int | None = None,
    ) -> TftpResult:
        result = TftpResult(path=path, local_port=self.local_port)
        self._drain()
        started = time.monotonic()
        last = _request(opcode, path, opts)
        last_dest = (self.server, self.port)
        self.sock.sendto(last, last_dest)
        blksize = 512
        window = 1
        in_window = 0  # blocks received in order since the last ACK
        gap_acked = False  # the gap of this window was already reported
        to_drop = set(drop or ())
        expected = 1  # absolute number of the next block
        received = bytearray()
        tid: int | None = None
        tries = 0
        self.sock.settimeout(self.timeout)
        while True:
            try:
                datagram, (host, port) = self.sock.recvfrom(65536)
            except TimeoutError:
                tries += 1
                if tries > self.retries:
                    result.error_message = "timeout"
                    break
                self.sock.sendto(last, last_dest)
                continue
            if host != self.server or len(datagram) < 4:
                continue
            op, number = struct.unpack("!HH", datagram[:4])
            if tid is None:
                stale = port in self._old_tids or (op == DATA and number != 1)
                if stale or op not in (DATA, OACK, ERROR, ACK):
                    continue  # a late packet of an earlier transfer
                tid = port
                result.server_port = port
                self._old_tids.add(port)
            elif port != tid:
                self.sock.sendto(_error(5, "Unknown transfer ID"), (host, port))
                continue
            tries = 0
            if op == ERROR:
                result.error_code = number
                result.error_message = datagram[4:].split(b"\0", 1)[0].decode("ascii", "replace")
                break
            if op == OACK:
                result.oack = _parse_options(datagram[2:])
                if abort_after_oack:
                    self.sock.sendto(_error(8, "User aborted the transfer"), (host, tid))
                    result.aborted = True
                    break
                blksize = int(result.oack.get("blksize", 512))
                window = result.windowsize = int(result.oack.get("windowsize", 1))
                if opcode == WRQ:
                    last = self._send_data(upload, 1, blksize, tid)
                    last_dest = (host, tid)
                    continue
                last = struct.pack("!HH", ACK, 0)
                last_dest = (host, tid)
                self.sock.sendto(last, last_dest)
                continue
            if op == ACK and opcode == WRQ:
                result.error_message = "server accepted an upload"
                break
            if op == DATA and opcode == RRQ:
                payload = datagram[4:]
                if fail_at_block is not None and expected == fail_at_block and number == expected & 0xFFFF:
                    self.sock.sendto(_error(0, "cannot take this block"), (host, tid))
                    result.aborted = True
                    break
                if number == expected & 0xFFFF:
                    if expected in to_drop:
                        to_drop.discard(expected)
                        result.dropped.append(expected)
                        continue
                    received += payload
                    result.blocks += 1
                    result.max_block = max(result.max_block, len(payload))
                    expected += 1
                    in_window += 1
                    last_block = len(payload) < blksize
                    if last_block or in_window >= window:
                        last = struct.pack("!HH", ACK, number)
                        last_dest = (host, tid)
                        self.sock.sendto(last, last_dest)
                        result.acks += 1
                        in_window = 0
                        gap_acked = False
                    if last_block:
                        result.ok = True
                        break
                elif window == 1 and number == (expected - 1) & 0xFFFF:
                    result.duplicates += 1
                    self.sock.sendto(struct.pack("!HH", ACK, number), (host, tid))
                elif window > 1:
                    ahead = (number - expected) & 0xFFFF
                    if ahead < 0x8000:  # a gap: report the last block we have, once per window
                        if not gap_acked:
                            last = struct.pack("!HH", ACK, (expected - 1) & 0xFFFF)
                            last_dest = (host, tid)
                            self.sock.sendto(last, last_dest)
                            result.acks += 1
                            gap_acked = True
                            in_window = 0
                    else:
                        result.duplicates += 1
        result.duration = round(time.monotonic() - started, 6)
        result.data = bytes(received)
        result.bytes = len(received)
        if result.ok:
            result.sha256 = hashlib.sha256(received).hexdigest()
        return result

    def _send_data(self, data: bytes, block: int, blksize: int, tid: int) -> bytes:
        packet = struct.pack("!HH", DATA, block) + data[:blksize]
        self.sock.sendto(packet, (self.server, tid))
        return packet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Scripted TFTP client; prints a JSON list of results.")
    parser.add_argument("server")
    parser.add_argument("paths", nargs="+", help="fetched one after the other from the same local port")
    parser.add_argument("--port", type=int, default=69)
    parser.add_argument("--blksize", type=int)
    parser.add_argument("--tsize", action="store_true")
    parser.add_argument("--windowsize", type=int)
    parser.add_argument("--abort-after-oack", action="store_true", help="EDK2-style size probe")
    parser.add_argument("--drop", type=int, action="append", default=[], help="discard this block once")
    parser.add_argument("--put", action="store_true", help="send WRQ instead of RRQ")
    parser.add_argument("--garbage", help="hex bytes sent to the server port before the requests")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    results = []
    with TftpTestClient(args.server, args.port, timeout=args.timeout) as client:
        if args.garbage:
            client.send_raw(bytes.fromhex(args.garbage))
            time.sleep(0.2)  # let any answer to the garbage arrive before the requests drain the socket
        for path in args.paths:
            if args.put:
                result = client.put(path)
            else:
                result = client.get(
                    path,
                    blksize=args.blksize,
                    tsize=args.tsize,
                    windowsize=args.windowsize,
                    abort_after_oack=args.abort_after_oack,
                    drop=set(args.drop),
                )
            results.append(result.as_json())
    json.dump(results, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
