"""TFTP: one file downloaded by atftp from our TftpService, tftpd-hpa and dnsmasq, on loopback.

The windowsize rows ask for RFC 7440 windows (atftp ``--option "windowsize N"``); tftpd-hpa and dnsmasq
do not implement the option and answer lock-step, so the ratio that matters there is ours windowed / ours
lock-step, paired per round.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    CLIENT_CPU,
    REPO,
    SERVER_CPU,
    median,
    paired_ratio,
    rotate,
    start_server,
    stop_server,
    table,
)

FILE = "f16m"
CASES = [(1468, 1), (512, 1), (1468, 8), (512, 8)]  # (blksize, parallel clients)
WINDOWS = [4, 16]  # windowsize asked for at blksize 1468, 1 client (EDK2 asks for 4)


@dataclass
class TftpServer:
    name: str
    port: int
    argv: list[str]
    proc: subprocess.Popen | None = None
    results: dict[str, list[float]] = field(default_factory=dict)


def servers(root: Path, work: Path) -> list[TftpServer]:
    pin = ["taskset", "-c", SERVER_CPU]
    return [
        TftpServer(
            "ours", 6970, [*pin, sys.executable, str(REPO / "bench" / "ours.py"), "tftp", str(root), "6970"]
        ),
        TftpServer(
            "tftpd-hpa",
            6969,
            [*pin, "in.tftpd", "--foreground", "--address", "127.0.0.1:6969", "--secure", str(root)],
        ),
        TftpServer(
            "dnsmasq",
            69,
            [
                *pin,
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--port=0",
                "--enable-tftp",
                f"--tftp-root={root}",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--user=root",
                "--tftp-max=64",
                f"--pid-file={work}/dnsmasq-tftp.pid",
                f"--log-facility={work}/dnsmasq-tftp.log",
            ],
        ),
    ]


def _atftp(ns: str, port: int, blksize: int, out: str, windowsize: int | None = None) -> list[str]:
    window = ["--option", f"windowsize {windowsize}"] if windowsize else []
    return [
        "ip", "netns", "exec", ns, "taskset", "-c", CLIENT_CPU, "atftp",
        "--option", f"blksize {blksize}", "--option", "tsize 0", *window,
        "-g", "-r", FILE, "-l", out, "127.0.0.1", str(port),
    ]  # fmt: skip


def download(
    ns: str, port: int, blksize: int, clients: int, out: str = "/dev/null", windowsize: int | None = None
) -> float:
    """Seconds until ``clients`` parallel downloads of FILE all finished; RuntimeError if one failed."""
    argv = _atftp(ns, port, blksize, out, windowsize)
    t0 = time.perf_counter()
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(clients)]
    outputs = [(p.wait(timeout=300), p.stdout.read().decode(errors="replace")) for p in procs]
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.stdout.close()
    for rc, text in outputs:
        if rc != 0 or "error" in text.lower():
            raise RuntimeError(f"atftp on port {port} failed ({rc}): {text.strip()[:200]}")
    return elapsed


def run(lan, root: Path, work: Path, quick: bool) -> str:
    """Start the three servers in the lab's server namespace, verify content, time the downloads."""
    ns = lan.ns("server")
    size = (root / FILE).stat().st_size
    contenders = servers(root, work)
    try:
        for s in contenders:
            s.proc = start_server(lan, "server", s.argv, work / f"{s.name}.err", "udp", s.port)
        checks = _measure(ns, root, work, size, contenders, quick)
    finally:
        for s in contenders:
            if s.proc is not None:
                stop_server(s.proc)
    return _report(size, contenders, checks)


def _measure(
    ns: str, root: Path, work: Path, size: int, contenders: list[TftpServer], quick: bool
) -> list[str]:
    checks = []
    for s in contenders:
        for window in (None, WINDOWS[-1]):
            out = work / f"check-{s.name}"
            download(ns, s.port, 1468, 1, str(out), window)
            same = "identical" if out.read_bytes() == (root / FILE).read_bytes() else "DIFFERENT"
            checks.append(f"{s.name}{f' (windowsize {window})' if window else ''}: {same}")
            out.unlink()
    rounds = 1 if quick else 3
    for r in range(rounds):
        for blksize, clients in CASES:
            if clients > 1 and r >= max(1, rounds - 1):
                continue  # the 8-client cases get one round fewer, to keep the run short
            for s in rotate(contenders, r):
                seconds = download(ns, s.port, blksize, clients)
                s.results.setdefault(f"{blksize}/{clients}", []).append(clients * size / seconds / 1e6)
        for window in WINDOWS:
            for s in rotate(contenders, r):
                seconds = download(ns, s.port, 1468, 1, windowsize=window)
                s.results.setdefault(f"w{window}", []).append(size / seconds / 1e6)
    return checks


def _report(size: int, contenders: list[TftpServer], checks: list[str]) -> str:
    ours = contenders[0]
    rows = []
    for blksize, clients in CASES:
        key = f"{blksize}/{clients}"
        for peer in contenders[1:]:
            ratio = paired_ratio(ours.results[key], peer.results[key])
            rows.append(
                [
                    f"{size >> 20} MiB @ blksize {blksize}, {clients} client{'s' if clients > 1 else ''}",
                    f"{median(ours.results[key]):.1f}",
                    peer.name,
                    f"{median(peer.results[key]):.1f}",
                    ratio or "n/a",
                    len(ours.results[key]),
                ]
            )
    header = [
        "case (aggregate MB/s, higher is better)",
        "ours MB/s",
        "peer",
        "peer MB/s",
        "ratio ours/peer",
        "rounds",
    ]
    lock_step = ours.results["1468/1"]
    window_rows = []
    for window in WINDOWS:
        windowed = ours.results[f"w{window}"]
        peers = " / ".join(
            f"{p.name} {median(p.results[f'w{window}']):.1f} ({paired_ratio(windowed, p.results[f'w{window}'])})"
            for p in contenders[1:]
        )
        window_rows.append(
            [
                f"{size >> 20} MiB @ blksize 1468, windowsize {window}, 1 client",
                f"{median(windowed):.1f}",
                f"{median(lock_step):.1f}",
                paired_ratio(windowed, lock_step) or "n/a",
                peers,
                len(windowed),
            ]
        )
    window_header = [
        "case (MB/s)",
        "ours windowed",
        "ours lock-step",
        "ratio windowed/lock-step",
        "peer asked the same (lock-step: no windowsize support), ratio ours/peer",
        "rounds",
    ]
    return "\n".join(
        [
            "## TFTP (loopback, atftp client for every server)",
            "",
            table(header, rows),
            "",
            'RFC 7440 windowsize, asked for by atftp (`--option "windowsize N"`):',
            "",
            table(window_header, window_rows),
            "",
            "Content check (one download at blksize 1468 compared byte for byte): " + "; ".join(checks) + ".",
        ]
    )
