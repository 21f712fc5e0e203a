"""Shared pieces of the benchmarks: paired ratios, process CPU, host load, tool versions, markdown rows."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVER_CPU = "1"  # servers are pinned here ...
CLIENT_CPU = "0"  # ... and clients here, so every packet needs a cross-CPU wake-up as on a real LAN
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Ratio:
    """Median and spread of per-round ratios ours/theirs."""

    median: float
    low: float
    high: float

    def __str__(self) -> str:
        if self.low == self.high:
            return f"**{self.median:.2f}**"
        return f"**{self.median:.2f}** [{self.low:.2f}–{self.high:.2f}]"


def paired_ratio(ours: Sequence[float], theirs: Sequence[float]) -> Ratio | None:
    """Median of ours[i]/theirs[i] over rounds where both are positive (each round ran both back to back)."""
    pairs = [a / b for a, b in zip(ours, theirs, strict=False) if a > 0 and b > 0]
    if not pairs:
        return None
    return Ratio(statistics.median(pairs), min(pairs), max(pairs))


def median(values: Sequence[float]) -> float:
    """Median, 0.0 for an empty list."""
    return statistics.median(values) if values else 0.0


def rotate(items: Sequence, round_no: int) -> list:
    """``items`` rotated by ``round_no`` so every contender takes every position in turn."""
    k = round_no % len(items)
    return [*items[k:], *items[:k]]


def cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid`` and all its live descendants, in seconds (10 ms tick resolution)."""
    total = 0.0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / _TICK
            for task in Path(f"/proc/{p}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return total


@dataclass
class HostLoad:
    """System-wide busy and steal percentages between ``start()`` and ``stop()``, and load averages."""

    busy_pct: float = 0.0
    steal_pct: float = 0.0
    loadavg_start: str = ""
    loadavg_end: str = ""
    _t0: list[int] = field(default_factory=list)

    @staticmethod
    def _cpu_line() -> list[int]:
        return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]

    def start(self) -> HostLoad:
        self.loadavg_start = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        self._t0 = self._cpu_line()
        return self

    def stop(self) -> HostLoad:
        t1 = self._cpu_line()
        delta = [b - a for a, b in zip(self._t0, t1, strict=False)]
        total = sum(delta) or 1
        idle = delta[3] + delta[4]
        steal = delta[7] if len(delta) > 7 else 0
        self.busy_pct = 100.0 * (total - idle) / total
        self.steal_pct = 100.0 * steal / total
        self.loadavg_end = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        return self


def _first_line(argv: list[str]) -> str:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (res.stdout + res.stderr).strip()
    return text.splitlines()[0].strip() if text else "?"


def machine_info() -> dict[str, str]:
    """The host and every tool's version, for the results header."""
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    versions = {}
    for name in ("scapy", "aiohttp"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            versions[name] = "?"
    return {
        "host": f"{os.cpu_count()} CPU ({cpu}), {mem_kb // 1024 // 1024} GiB RAM, kernel {platform.release()}",
        "python": platform.python_version() + f" ({sys.executable})",
        "python libraries": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "dnsmasq": _first_line(["dnsmasq", "--version"]),
        "tftpd-hpa": _first_line(["in.tftpd", "-V"]),
        "nginx": _first_line(["nginx", "-v"]),
        "wrk": _first_line(["wrk", "-v"]),
        "atftp (client)": _first_line(["atftp", "--version"]),
    }


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def wait_until(predicate, timeout: float, what: str) -> None:
    """Poll ``predicate`` every 50 ms; TimeoutError naming ``what`` when it stays false."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_server(lan, host: str, argv: list[str], log: Path, proto: str, port: int):
    """Start ``argv`` in ``host`` (stderr to ``log``) and wait until it listens; RuntimeError with its stderr if not."""
    with open(log, "a") as err:
        proc = lan.popen(host, argv, stdout=subprocess.DEVNULL, stderr=err)
    try:
        lan.wait_port(host, proto, port, timeout=20)
    except TimeoutError:
        stop_server(proc)
        raise RuntimeError(
            f"{argv[3] if len(argv) > 3 else argv[0]} did not start: {log.read_text()[-500:]}"
        ) from None
    return proc


def stop_server(proc) -> None:
    """TERM the process we started (KILL after 10 s) and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
