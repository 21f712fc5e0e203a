"""Benchmarks of pypxe-homelab's services against dnsmasq, tftpd-hpa and nginx on this machine.

    sudo python3 bench/run.py [--quick] [--only tftp,http,dhcp,decide,serve]

Everything runs inside throw-away network namespaces (TFTP and HTTP on the server namespace's loopback,
ProxyDHCP between two namespaces on a bridge). Prints a markdown report and writes it to bench/results.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import dhcp_bench  # noqa: E402
import http_bench  # noqa: E402
import serve_bench  # noqa: E402
import tftp_bench  # noqa: E402
from harness import REPO, HostLoad, machine_info, table  # noqa: E402

SECTIONS = ("tftp", "http", "dhcp", "decide", "serve")
TOOLS = {
    "tftp": ("atftp", "in.tftpd", "dnsmasq"),
    "http": ("nginx", "wrk", "curl"),
    "dhcp": ("dnsmasq",),
    "serve": ("dnsmasq",),
}


def _check_host(only: list[str]) -> None:
    if os.geteuid() != 0:
        raise SystemExit("bench/run.py needs root (it creates network namespaces): run it with sudo")
    missing = sorted({t for s in only for t in TOOLS.get(s, ()) if shutil.which(t) is None})
    if missing:
        raise SystemExit(f"missing tools: {', '.join(missing)}; see 'How to run' in bench/README.md")


def _make_files(root: Path, quick: bool) -> None:
    """Random test files: the TFTP file under root/tftproot, 64 MiB and 1 KiB under root/httproot."""
    tftproot, httproot = root / "tftproot", root / "httproot"
    for d in (root, tftproot, httproot):
        d.mkdir(exist_ok=True)
        d.chmod(0o755)  # tftpd-hpa and nginx workers read as an unprivileged user
    files = {
        tftproot / tftp_bench.FILE: (4 if quick else 16) << 20,
        httproot / http_bench.BIG: 64 << 20,
        httproot / http_bench.SMALL: 1024,
    }
    for path, size in files.items():
        path.write_bytes(os.urandom(size))
        path.chmod(0o644)


def _compile_package() -> None:
    """Write the package's bytecode (what `pip install` does at install time), so that no start-up measured
    here compiles sources, even where PYTHONDONTWRITEBYTECODE is set."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "pypxe_homelab")], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one short round of everything (under a minute)")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help="comma-separated subset of " + ",".join(SECTIONS)
    )
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results.md")
    parser.add_argument(
        "--splice",
        action="store_true",
        help="replace only the sections this run measured in --output (each gets its own run line); keep the rest",
    )
    args = parser.parse_args()
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        raise SystemExit(
            f"--only: unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}"
        )
    _check_host(only)
    _compile_package()
    from tests.lab.netns import TestLan

    started = time.monotonic()
    load = HostLoad().start()
    parts: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="pxbench-"))
    work.chmod(0o755)
    try:
        data = work / "data"
        _make_files(data, args.quick)
        with TestLan(["server", "client"]) as lan:
            if "tftp" in only:
                parts.append(tftp_bench.run(lan, data / "tftproot", work, args.quick))
            if "http" in only:
                parts.append(http_bench.run(lan, data, work, args.quick))
            if "dhcp" in only:
                parts.append(dhcp_bench.run(lan, work, args.quick))
            if "serve" in only:
                parts.append(serve_bench.run(lan, work, args.quick))
        if "decide" in only:
            parts.append(dhcp_bench.decide_cost(args.quick))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load.stop()
    info = machine_info()
    info["run"] = (
        f"{datetime.datetime.now().isoformat(timespec='seconds')}, {'--quick' if args.quick else 'full'}, "
        f"{time.monotonic() - started:.0f} s"
    )
    info["host load during the run"] = (
        f"{load.busy_pct:.0f} % of all CPUs busy, {load.steal_pct:.0f} % steal, "
        f"load average {load.loadavg_start} → {load.loadavg_end}"
    )
    if args.splice and args.output.exists():
        run_line = (
            f"This section: {info['run']}; host load {info['host load during the run']}; {info['host']}."
        )
        report = splice(args.output.read_text(), [f"{part}\n\n{run_line}" for part in parts])
        print(report)
        args.output.write_text(report)
        return
    report = "\n\n".join(
        [
            "# Benchmark results",
            "Ratios are ours / peer, the median of per-round pairs [min–max]. Servers pinned to CPU 1, clients "
            "to CPU 0.",
            table(["item", "value"], list(info.items())),
            *parts,
        ]
    )
    print(report)
    args.output.write_text(report + "\n")


def splice(old: str, parts: list[str]) -> str:
    """``old`` with each of its ``## `` sections replaced by the part of the same heading (new ones appended)."""
    chunks = old.split("\n## ")
    sections = [chunks[0], *("## " + chunk for chunk in chunks[1:])]
    for part in parts:
        heading = part.splitlines()[0]
        at = next((i for i, sec in enumerate(sections) if sec.splitlines()[0] == heading), None)
        if at is None:
            sections.append(part)
        else:
            sections[at] = part
    return "\n\n".join(sec.strip("\n") for sec in sections) + "\n"


if __name__ == "__main__":
    main()
