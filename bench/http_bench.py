"""HTTP: wrk against our HttpService and nginx (one worker, sendfile) on loopback, plus Range checks with curl."""

from __future__ import annotations

import re
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

BIG, SMALL = "f64m", "f1k"
CASES = [(BIG, 1), (BIG, 16), (SMALL, 1), (SMALL, 16)]  # (file, connections)
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path {work}/nginx-tmp;
    proxy_temp_path {work}/nginx-tmp;
    fastcgi_temp_path {work}/nginx-tmp;
    uwsgi_temp_path {work}/nginx-tmp;
    scgi_temp_path {work}/nginx-tmp;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


@dataclass
class HttpServer:
    name: str
    port: int
    argv: list[str]
    proc: subprocess.Popen | None = None
    rps: dict[str, list[float]] = field(default_factory=dict)
    p50: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)


def servers(data_root: Path, work: Path) -> list[HttpServer]:
    pin = ["taskset", "-c", SERVER_CPU]
    conf = work / "nginx.conf"
    (work / "nginx-tmp").mkdir(exist_ok=True)
    conf.write_text(NGINX_CONF.format(work=work, port=8081, root=data_root / "httproot"))
    return [
        HttpServer(
            "ours",
            8080,
            [*pin, sys.executable, str(REPO / "bench" / "ours.py"), "http", str(data_root), "8080"],
        ),
        HttpServer("nginx", 8081, [*pin, "nginx", "-c", str(conf), "-p", str(work)]),
    ]


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_s: float
    p99_s: float
    errors: str


def parse_wrk(text: str) -> WrkResult:
    """Requests/s, latency percentiles and any error lines from wrk's --latency output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    lat = {
        q: float(v) * _UNITS[u]
        for q, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    }
    errors = "; ".join(
        line.strip() for line in text.splitlines() if "Non-2xx" in line or "Socket errors" in line
    )
    return WrkResult(rps, lat.get("50", 0.0), lat.get("99", 0.0), errors)


def wrk(ns: str, url: str, connections: int, seconds: float) -> WrkResult:
    argv = ["ip", "netns", "exec", ns, "taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{connections}",
            f"-d{seconds:g}s", "--latency", url]  # fmt: skip
    res = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"wrk {url} failed: {res.stderr.strip()[:200]}")
    return parse_wrk(res.stdout)


def range_check(ns: str, port: int, source: bytes, work: Path) -> str:
    """Two Range requests (middle bytes, last 100 bytes): status, Content-Range and body must be right."""
    total = len(source)
    cases = [("1000000-1999999", 1000000, 2000000), ("-100", total - 100, total)]
    verdicts = []
    for spec, start, end in cases:
        body, heads = work / "range.body", work / "range.head"
        argv = ["ip", "netns", "exec", ns, "curl", "-s", "-r", spec, "-D", str(heads), "-o", str(body),
                "-w", "%{http_code}", f"http://127.0.0.1:{port}/{BIG}"]  # fmt: skip
        code = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout.strip()
        head = heads.read_text().lower() if heads.exists() else ""
        want_range = f"content-range: bytes {start}-{end - 1}/{total}"
        ok = code == "206" and want_range in head and body.read_bytes() == source[start:end]
        verdicts.append(f"`{spec}` {'ok' if ok else f'WRONG (status {code})'}")
    return ", ".join(verdicts)


def run(lan, data_root: Path, work: Path, quick: bool) -> str:
    ns = lan.ns("server")
    httproot = data_root / "httproot"
    contenders = servers(data_root, work)
    rounds, seconds = (1, 1.0) if quick else (3, 2.0)
    try:
        for s in contenders:
            s.proc = start_server(lan, "server", s.argv, work / f"{s.name}.err", "tcp", s.port)
        big = (httproot / BIG).read_bytes()
        checks = [f"{s.name}: {range_check(ns, s.port, big, work)}" for s in contenders]
        errors = _measure(ns, contenders, rounds, seconds)
    finally:
        for s in contenders:
            if s.proc is not None:
                stop_server(s.proc)
    return _report(httproot, contenders, rounds, seconds, checks, errors)


def _measure(ns: str, contenders: list[HttpServer], rounds: int, seconds: float) -> dict[str, str]:
    """Run every case on every server per round; returns wrk's error lines (last round) per server and case."""
    errors: dict[str, str] = {}
    for r in range(rounds):
        for name, conns in CASES:
            key = f"{name}/{conns}"
            for s in rotate(contenders, r):
                cpu0 = cpu_seconds(s.proc.pid)
                result = wrk(ns, f"http://127.0.0.1:{s.port}/{name}", conns, seconds)
                s.cpu.setdefault(key, []).append((cpu_seconds(s.proc.pid) - cpu0) / seconds)
                s.rps.setdefault(key, []).append(result.requests_per_s)
                s.p50.setdefault(key, []).append(result.p50_s)
                if result.errors:
                    errors[f"{s.name} {key}"] = result.errors
    return errors


def _report(
    httproot: Path,
    contenders: list[HttpServer],
    rounds: int,
    seconds: float,
    checks: list[str],
    errors: list[str],
) -> str:
    ours, nginx = contenders
    rows = []
    for name, conns in CASES:
        key = f"{name}/{conns}"
        size = (httproot / name).stat().st_size
        label = f"{'64 MiB' if name == BIG else '1 KiB'} file, {conns} conn"
        o, n = median(ours.rps[key]), median(nginx.rps[key])
        rows.append(
            [
                label,
                f"{o:,.0f} req/s, {o * size / 1e6:,.1f} MB/s",
                f"{n:,.0f} req/s, {n * size / 1e6:,.1f} MB/s",
                paired_ratio(ours.rps[key], nginx.rps[key]) or "n/a",
                f"{median(ours.p50[key]) * 1e3:.2f} / {median(nginx.p50[key]) * 1e3:.2f}",
                f"{median(ours.cpu[key]):.2f} / {median(nginx.cpu[key]):.2f}",
            ]
        )
    header = ["case", "ours", "nginx", "ratio ours/nginx (req/s, higher is better)", "p50 ms ours / nginx",
              "server CPU cores ours / nginx"]  # fmt: skip
    lines = [
        "## HTTP (loopback, wrk -t1, nginx with 1 worker and sendfile)",
        "",
        table(header, rows),
        "",
        f"{rounds} round(s) of {seconds:g} s per case and server. Range checks on the 64 MiB file (status 206, "
        "Content-Range, bytes compared): " + "; ".join(checks) + ".",
    ]
    if errors:
        lines.append(
            f"wrk reported errors (per {seconds:g} s run): "
            + "; ".join(f"{k}: {v}" for k, v in errors.items())
            + "."
        )
    return "\n".join(lines)
