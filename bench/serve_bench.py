"""The whole `serve` process: start-up until every port is bound, a boot storm and a non-PXE flood (against
dnsmasq in proxy mode as well), resident memory meanwhile, what the state recorded, and the CLI's wall time.

The storm and flood loads are ``dhcp_load.py storm`` in the client namespace; ours is the real
``pypxe-homelab serve`` (events recorded in its state database on disk, log lines written), the peer the
dnsmasq of ``dhcp_bench``.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dhcp_bench
from harness import (
    CLIENT_CPU,
    REPO,
    SERVER_CPU,
    cpu_seconds,
    median,
    paired_ratio,
    start_server,
    stop_server,
    table,
)

HTTP_PORT = 18437  # a port nothing on the host is likely to use (the CLI also runs there)
PORTS = (("udp", 67), ("udp", 4011), ("udp", 69), ("tcp", HTTP_PORT))
STORM_CLIENTS = 1000
FLOOD_PPS = 20_000
FLOOD_TEMPLATE = "syslinux_efi_discover"  # an ordinary DHCP DISCOVER (no PXE vendor class), captured
CLI_RUNS = 5


def flood_hex() -> str:
    data = json.loads((REPO / "tests" / "fixtures" / "dhcp" / "captured.json").read_text())
    return next(p["payload"] for p in data["packets"] if p["name"] == FLOOD_TEMPLATE)


def write_config(lan, work: Path) -> Path:
    root = work / "serve-root"
    config = work / "serve.yaml"
    config.write_text(
        "server:\n  interfaces: [eth0]\n  user: root   # the program runs from a checkout the service user cannot read\n"
        f"  http_port: {HTTP_PORT}\n"
        f"paths:\n  root: {root}\n"
        "nodes:\n"
        f"  01-52-54-00-a0-00-01:\n    address: {lan.prefix}.50/24\n"
    )
    res = subprocess.run(
        [sys.executable, "-m", "pypxe_homelab", "--config", str(config), "bootfiles", "install"],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"bootfiles install failed: {res.stderr.strip()[-300:]}")
    return config


def _bound(pid: int) -> set[tuple[str, int]]:
    """(proto, port) of the sockets in ``pid``'s network namespace (its /proc view)."""
    found = set()
    for proto in ("udp", "tcp"):
        try:
            lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if proto == "tcp" and cols[3] != "0A":  # LISTEN
                continue
            found.add((proto, int(cols[1].rsplit(":", 1)[1], 16)))
    return found


def rss_mb(pid: int, key: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_serve(lan, config: Path, log: Path) -> tuple[subprocess.Popen, float]:
    """Start serve pinned to the server CPU; (process, seconds until every port of PORTS was bound)."""
    argv = [
        "taskset",
        "-c",
        SERVER_CPU,
        sys.executable,
        "-m",
        "pypxe_homelab",
        "--config",
        str(config),
        "serve",
    ]
    with open(log, "a") as out:
        t0 = time.perf_counter()
        proc = lan.popen("server", argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = t0 + 20
    while not set(PORTS) <= _bound(proc.pid):
        if time.perf_counter() > deadline or proc.poll() is not None:
            stop_server(proc)
            raise RuntimeError(f"serve did not bind {PORTS}: {log.read_text()[-500:]}")
        time.sleep(0.002)
    return proc, time.perf_counter() - t0


def storm_load(lan, clients: int, spread: float, base: int, flood_s: float = 0.0) -> dict:
    argv = ["taskset", "-c", CLIENT_CPU, sys.executable, str(REPO / "bench" / "dhcp_load.py"), "eth0",
            dhcp_bench.template_hex(), "storm", str(clients), str(spread)]  # fmt: skip
    if flood_s:
        argv += [flood_hex(), str(FLOOD_PPS), str(flood_s)]
    argv += ["--base", str(base)]
    res = lan.run("client", argv, timeout=spread + flood_s + 60)
    if res.returncode != 0:
        raise RuntimeError(f"storm load failed: {res.stderr.strip()[-300:]}")
    return json.loads(res.stdout)


def cli_seconds(lan, config: Path) -> dict[str, float]:
    """Median wall time of each CLI command: on the host (``status`` then reads the state database, as with no
    server) and, for ``status``, in the server namespace too, where it asks the running server's API."""
    base = [sys.executable, "-m", "pypxe_homelab", "--config", str(config)]
    cases = [
        ("--help", None, ["--help"]),
        ("list", None, ["list"]),
        ("status --once (state database)", None, ["status", "--once"]),
        ("status --once (API of the running server)", "server", ["status", "--once"]),
    ]
    out = {}
    for label, host, args in cases:
        runs = []
        for _ in range(CLI_RUNS):
            t0 = time.perf_counter()
            if host is None:
                res = subprocess.run([*base, *args], capture_output=True, text=True, cwd=REPO, check=False)
            else:
                res = lan.run(host, [*base, *args], cwd=REPO)
            runs.append(time.perf_counter() - t0)
            if res.returncode != 0:
                raise RuntimeError(f"pypxe-homelab {label} failed: {res.stderr.strip()[-300:]}")
        out[label] = statistics.median(runs)
    t0 = time.perf_counter()
    for _ in range(CLI_RUNS):
        lan.run("server", ["true"])
    out["(`ip netns exec … true`, the namespace's own overhead)"] = (time.perf_counter() - t0) / CLI_RUNS
    return out


@dataclass
class Rounds:
    storm: list[dict] = field(default_factory=list)
    flood: list[dict] = field(default_factory=list)
    cpu_storm: list[float] = field(default_factory=list)


def run(lan, work: Path, quick: bool) -> str:
    config = write_config(lan, work)
    rounds = 1 if quick else 3
    flood_s = 2.0 if quick else 10.0
    flood_clients = int(100 * flood_s)  # PXE clients booting during the flood: 100 a second
    ours, peer = Rounds(), Rounds()
    startups: list[float] = []
    hwm: list[float] = []
    recorded: list[str] = []
    cli: dict[str, float] = {}
    dnsmasq = dhcp_bench.servers(lan, work)[-1]
    for r in range(rounds):
        base = r * 10_000
        db = config.parent / "serve-root" / "state.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        proc, seconds = start_serve(lan, config, work / "serve.log")
        startups.append(seconds)
        try:
            time.sleep(2.0)  # let the start-up node checks (autoinstall render + schema) finish first
            cpu0 = cpu_seconds(proc.pid)
            ours.storm.append(storm_load(lan, STORM_CLIENTS, 1.0, base))
            ours.cpu_storm.append((cpu_seconds(proc.pid) - cpu0) / STORM_CLIENTS * 1e6)
            if r == 0:
                ours.flood.append(storm_load(lan, flood_clients, flood_s, base + 5000, flood_s))
                cli = cli_seconds(lan, config)
            hwm.append(rss_mb(proc.pid))
        finally:
            stop_server(proc)
        sent = STORM_CLIENTS + (flood_clients if r == 0 else 0)
        got = (
            sqlite3.connect(db)
            .execute("SELECT count(*) FROM devices WHERE mac LIKE '52:54:02:%'")
            .fetchone()[0]
        )
        flooded = (
            sqlite3.connect(db)
            .execute("SELECT count(*) FROM devices WHERE mac LIKE '52:54:03:%'")
            .fetchone()[0]
        )
        recorded.append(f"{got:,}/{sent:,} PXE clients recorded, {flooded} flood MACs")
        proc = start_server(lan, "server", dnsmasq.argv, work / "dnsmasq-storm.err", "udp", 67)
        try:
            cpu0 = cpu_seconds(proc.pid)
            peer.storm.append(storm_load(lan, STORM_CLIENTS, 1.0, base + 20_000))
            peer.cpu_storm.append((cpu_seconds(proc.pid) - cpu0) / STORM_CLIENTS * 1e6)
            if r == 0:
                peer.flood.append(storm_load(lan, flood_clients, flood_s, base + 25_000, flood_s))
        finally:
            stop_server(proc)
    return _report(ours, peer, startups, hwm, recorded, cli, rounds, flood_s, flood_clients)


def _col(runs: list[dict], key: str) -> list[float]:
    return [float(r[key]) for r in runs]


def _report(ours, peer, startups, hwm, recorded, cli, rounds, flood_s, flood_clients) -> str:
    rows = []

    def answered(runs: list[dict]) -> str:
        return f"{sum(r['answered'] for r in runs):,}/{sum(r['clients'] for r in runs):,}"

    rows.append(
        [
            f"boot storm: {STORM_CLIENTS:,} clients in 1 s, answered",
            answered(ours.storm),
            answered(peer.storm),
            "—",
        ]
    )
    for key, label in (("p50_us", "median µs"), ("p99_us", "p99 µs"), ("max_us", "max µs")):
        o, p = _col(ours.storm, key), _col(peer.storm, key)
        rows.append(
            [
                f"boot storm: DISCOVER→OFFER {label}",
                f"{median(o):,.0f}",
                f"{median(p):,.0f}",
                paired_ratio(o, p) or "n/a",
            ]
        )
    rows.append(["boot storm: server CPU µs per client", f"{median(ours.cpu_storm):,.0f}", f"{median(peer.cpu_storm):,.0f}",
                 paired_ratio(ours.cpu_storm, peer.cpu_storm) or "n/a"])  # fmt: skip
    fl = f"non-PXE flood {FLOOD_PPS:,}/s for {flood_s:g} s, {flood_clients:,} PXE clients meanwhile"
    rows.append([f"{fl}: PXE answered", answered(ours.flood), answered(peer.flood), "—"])
    o, p = _col(ours.flood, "p99_us"), _col(peer.flood, "p99_us")
    rows.append([f"{fl}: PXE p99 µs", f"{median(o):,.0f}", f"{median(p):,.0f}", paired_ratio(o, p) or "n/a"])
    rows.append([f"{fl}: replies to non-PXE packets", str(sum(r["flood_replies"] for r in ours.flood)),
                 str(sum(r["flood_replies"] for r in peer.flood)), "—"])  # fmt: skip
    rows.append([f"{fl}: flood packets sent", f"{sum(r['flood_sent'] for r in ours.flood):,}",
                 f"{sum(r['flood_sent'] for r in peer.flood):,}", "—"])  # fmt: skip
    lines = [
        "## serve: start-up, boot storm, non-PXE flood, memory, CLI",
        "",
        table(["measurement", "ours (`serve`)", "dnsmasq", "ratio ours/dnsmasq"], rows),
        "",
        table(
            ["measurement", "ours", "target"],
            [
                [
                    f"`serve` start → UDP 67, 4011, 69 and TCP {HTTP_PORT} bound (median of {len(startups)}) [min–max]",
                    f"{median(startups):.2f} s [{min(startups):.2f}–{max(startups):.2f}]",
                    "< 1.0 s",
                ],
                [
                    "peak RSS of `serve` through the storm (and flood in round 1), max of rounds",
                    f"{max(hwm):.0f} MB",
                    "< 120 MB",
                ],
                *[
                    [f"`pypxe-homelab {k}` wall time (median of {CLI_RUNS})", f"{v:.2f} s", "< 0.25 s"]
                    if not k.startswith("(")
                    else [k, f"{v:.2f} s", "—"]
                    for k, v in cli.items()
                ],
            ],  # fmt: skip
        ),
        "",
        f"{rounds} round(s); the flood ran in round 1. State database after each round: "
        + "; ".join(recorded)
        + ".",
    ]
    return "\n".join(lines)
