"""ProxyDHCP: DISCOVER→OFFER between two namespaces on a bridge, our ProxyDhcpService vs dnsmasq in proxy mode;
and the socket-free per-packet cost of parse + decide + build."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    CLIENT_CPU,
    REPO,
    SERVER_CPU,
    cpu_seconds,
    median,
    paired_ratio,
    rotate,
    start_server,
    stop_server,
    table,
)

TEMPLATE_NAME = "bios_ipxe_discover"  # a real iPXE BIOS ROM DISCOVER (arch 0), captured on a test LAN
BURST_WINDOW = 16


def template_hex() -> str:
    """The captured DISCOVER the load generator varies (xid, MAC)."""
    data = json.loads((REPO / "tests" / "fixtures" / "dhcp" / "captured.json").read_text())
    return next(p["payload"] for p in data["packets"] if p["name"] == TEMPLATE_NAME)


@dataclass
class DhcpServer:
    name: str
    argv: list[str]
    runs: dict[str, list[dict]] = field(default_factory=dict)


def servers(lan, work: Path) -> list[DhcpServer]:
    pin = ["taskset", "-c", SERVER_CPU]
    ours = [*pin, sys.executable, str(REPO / "bench" / "ours.py"), "dhcp", "eth0"]
    return [
        DhcpServer("ours", ours),
        DhcpServer("ours, events dropped", [*ours, "--no-events"]),
        DhcpServer(
            "dnsmasq",
            [
                *pin,
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--port=0",
                "--interface=eth0",
                "--bind-interfaces",
                f"--dhcp-range={lan.prefix}.0,proxy",
                "--pxe-service=x86PC,Boot,lpxelinux",
                "--quiet-dhcp",
                "--user=root",
                f"--dhcp-leasefile={work}/dnsmasq.leases",
                f"--pid-file={work}/dnsmasq-dhcp.pid",
                f"--log-facility={work}/dnsmasq-dhcp.log",
            ],
        ),
    ]


def load(lan, mode: str, seconds: float) -> dict:
    argv = ["taskset", "-c", CLIENT_CPU, sys.executable, str(REPO / "bench" / "dhcp_load.py"), "eth0",
            template_hex(), mode, str(seconds), str(BURST_WINDOW)]  # fmt: skip
    res = lan.run("client", argv, timeout=seconds + 30)
    if res.returncode != 0:
        raise RuntimeError(f"DHCP load generator failed: {res.stderr.strip()[-300:]}")
    return json.loads(res.stdout)


def _one_server(lan, server: DhcpServer, work: Path, seconds: float) -> None:
    proc = start_server(lan, "server", server.argv, work / "dhcp-server.err", "udp", 67)
    try:
        load(lan, "latency", 0.3)  # warm-up: ARP, caches, lazy imports
        for mode in ("latency", "burst"):
            cpu0 = cpu_seconds(proc.pid)
            result = load(lan, mode, seconds)
            result["server_cpu_us_per_offer"] = (
                (cpu_seconds(proc.pid) - cpu0) / max(result["answered"], 1) * 1e6
            )
            server.runs.setdefault(mode, []).append(result)
    finally:
        stop_server(proc)


def run(lan, work: Path, quick: bool) -> str:
    contenders = servers(lan, work)
    rounds, seconds = (1, 1.0) if quick else (3, 2.0)
    for r in range(rounds):
        for s in rotate(contenders, r):
            _one_server(lan, s, work, seconds)
    dnsmasq = contenders[-1]
    rows = []

    def col(s: DhcpServer, mode: str, key: str) -> list[float]:
        return [run[key] for run in s.runs[mode]]

    metrics = [
        ("latency", "p50_us", "1 outstanding: median RTT µs (lower is better)", "{:,.0f}"),
        ("latency", "p99_us", "1 outstanding: p99 RTT µs", "{:,.0f}"),
        ("latency", "offers_per_s", "1 outstanding: OFFERs/s (higher is better)", "{:,.0f}"),
        ("burst", "offers_per_s", f"{BURST_WINDOW} outstanding: OFFERs/s (higher is better)", "{:,.0f}"),
        ("burst", "p50_us", f"{BURST_WINDOW} outstanding: median RTT µs", "{:,.0f}"),
        (
            "burst",
            "server_cpu_us_per_offer",
            f"{BURST_WINDOW} outstanding: server CPU µs per OFFER",
            "{:,.0f}",
        ),
    ]
    for mode, key, label, fmt in metrics:
        row = [label]
        for s in contenders:
            row.append(fmt.format(median(col(s, mode, key))))
        for s in contenders[:-1]:
            row.append(paired_ratio(col(s, mode, key), col(dnsmasq, mode, key)) or "n/a")
        rows.append(row)
    recording = [
        [f"{label}: ours (events recorded) / ours (events dropped)", paired_ratio(col(contenders[0], mode, key), col(contenders[1], mode, key)) or "n/a"]
        for mode, key, label in (
            ("latency", "p50_us", "1 outstanding: median RTT"),
            ("burst", "offers_per_s", f"{BURST_WINDOW} outstanding: OFFERs/s"),
            ("burst", "server_cpu_us_per_offer", f"{BURST_WINDOW} outstanding: server CPU per OFFER"),
        )
    ]  # fmt: skip
    totals = []
    for s in contenders:
        runs = [run for mode_runs in s.runs.values() for run in mode_runs]
        totals.append(f"{s.name} {sum(r['answered'] for r in runs):,}/{sum(r['sent'] for r in runs):,}")
    header = ["metric", *[s.name for s in contenders], *[f"ratio {s.name}/dnsmasq" for s in contenders[:-1]]]
    return "\n".join(
        [
            "## ProxyDHCP (client and server namespaces on a bridge, DISCOVER → OFFER)",
            "",
            table(header, rows),
            "",
            f"{rounds} round(s) of {seconds:g} s per mode and server. Answered/sent over all runs: "
            + "; ".join(totals)
            + ".",
            "",
            "What recording costs (the background recorder into an in-memory StateStore, as `serve` does on disk):",
            "",
            table(["ratio", "median [min–max]"], recording),
        ]
    )


def decide_cost(quick: bool) -> str:
    """Per-packet CPU of the protocol code, no sockets (pinned to the server CPU)."""
    argv = ["taskset", "-c", SERVER_CPU, sys.executable, str(REPO / "bench" / "decide_cost.py"), template_hex(),
            "1.2" if quick else "4"]  # fmt: skip
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"decide_cost failed: {res.stderr.strip()[-300:]}")
    r = json.loads(res.stdout)
    rows = [
        ["`parse_request` (scapy parse of the 349-byte DISCOVER)", f"{r['parse_us']:.1f}"],
        [
            "`RequestParser.parse` (pre-check, then the parse of this request shape, copied)",
            f"{r['cached_parse_us']:.1f}",
        ],
        ["`dhcp_decision` (read the ask, Booter, build the reply record)", f"{r['decide_us']:.1f}"],
        [f"`build_reply` ({r['reply_bytes']}-byte OFFER)", f"{r['build_us']:.1f}"],
        ["`ReplyEncoder.encode` (the OFFER's template, patched)", f"{r['cached_build_us']:.1f}"],
        ["scapy parse + decide + scapy build", f"{r['parse_decide_build_us']:.1f}"],
        [
            "`ProxyDhcpService.handle` (pre-check, cached parse, decide, patched reply), events dropped",
            f"{r['handle_no_events_us']:.1f}",
        ],
        [
            "`ProxyDhcpService.handle`, events queued for the recorder (as `serve`)",
            f"{r['handle_queued_us']:.1f}",
        ],
        [
            "`ProxyDhcpService.handle`, events recorded in line in an in-memory StateStore",
            f"{r['handle_recorded_in_line_us']:.1f}",
        ],
    ]
    return "\n".join(
        [
            "## ProxyDHCP per-packet cost without sockets",
            "",
            table(["step (one DISCOVER → OFFER)", "µs per packet (median)"], rows),
        ]
    )
