"""Least privilege, listening addresses, /metrics and /healthz of the real server, installed from its wheel.

The server runs as a user installs it (a venv every user can read). Started as root it creates its service
user (in a copy of /etc mounted over /etc in a private mount namespace, so the host's accounts are never
touched), binds, and drops to that user with no capabilities; started by a plain user holding only
CAP_NET_BIND_SERVICE (setpriv) it works the same. The server's namespace has a second link the config does
not serve: TFTP and HTTP must not answer there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pypxe_homelab.iscsi.naming import initiator_name, target_iqn
from tests.integration.test_iscsi_netns import IMAGE as PI_IMAGE
from tests.integration.test_iscsi_netns import make_pi_image
from tests.lab.install import Installed, shared_tempdir
from tests.lab.iscsiclient import disk_info, missing_tools
from tests.lab.netns import TestLan, ip_netns_available, stop_process
from tests.lab.serverproc import REPO, TEST_PUBLIC_KEY, client_python, http_request, tftp_get

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or not ip_netns_available(), reason="needs root and `ip netns`"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)"),
    pytest.mark.skipif(not Path("/usr/lib/PXELINUX/lpxelinux.0").exists(), reason="needs Debian's pxelinux"),
]

KNOWN = "01-52-54-00-a0-00-01"
PI = "aaaa0009"
SERVICE_USER = "pypxe-homelab"
PORTS = (("udp", 67), ("udp", 69), ("tcp", 12345))
KERNEL_SIZE = 1024 * 1024 + 17


def config_text(lan: TestLan, root: Path, *, user: str | None = None) -> str:
    return (
        "server:\n"
        "  interfaces: [eth0]   # eth1 is not served\n"
        "  http_port: 12345\n"
        + (f"  user: {user}\n" if user else "")
        + f"paths:\n  root: {root}\n"
        + f"defaults:\n  gateway: {lan.prefix}.1\n  dns: [{lan.prefix}.1]\n"
        + f'  ssh_authorized_keys: ["{TEST_PUBLIC_KEY}"]\n'
        + f"nodes:\n  {KNOWN}:\n    address: {lan.prefix}.50/24\n"
        + "    boot: {kernel: boot/linux, initrd: boot/initrd.gz, cmdline: console=ttyS0}\n"
    )


@dataclass
class Running:
    lan: TestLan
    proc: subprocess.Popen
    log_path: Path
    config: Path
    root: Path

    def log(self) -> str:
        return self.log_path.read_text()

    def status(self) -> dict[str, str]:
        """The server process's /proc/<pid>/status fields."""
        lines = Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
        return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}

    def stop(self) -> int:
        stop_process(self.proc, grace=10)
        return self.proc.returncode


def prepare(installed: Installed, lan: TestLan, base: Path, *, user: str | None = None) -> tuple[Path, Path]:
    """config.yaml and a data root with boot loaders and a kernel/initrd, under ``base``."""
    root = base / "root"
    config = base / "config.yaml"
    config.write_text(config_text(lan, root, user=user))
    subprocess.run([str(installed.command), "--config", str(config), "bootfiles", "install"], check=True)
    boot = root / "httproot" / "boot"
    boot.mkdir(parents=True)
    (boot / "linux").write_bytes(os.urandom(KERNEL_SIZE))
    (boot / "initrd.gz").write_bytes(os.urandom(300_000))
    return config, root


def start(
    lan: TestLan, script: str, log_path: Path, config: Path, root: Path, *, wait: bool = True
) -> Running:
    """Run ``script`` (which ends by exec'ing the server) in a private mount namespace of host "server"."""
    log = open(log_path, "w")  # noqa: SIM115 - owned by the process
    proc = lan.popen(
        "server",
        ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd="/",
    )
    running = Running(lan, proc, log_path, config, root)
    if wait:
        for proto, port in PORTS:
            try:
                lan.wait_port("server", proto, port, timeout=30)
            except TimeoutError:
                raise AssertionError(f"server did not bind {proto}/{port}:\n{running.log()}") from None
        deadline = time.monotonic() + 10
        while "running as user" not in running.log() and time.monotonic() < deadline:
            time.sleep(0.1)
    return running


def private_etc(tmp: Path) -> str:
    """Shell lines giving the namespace its own copy of /etc (accounts created there stay there)."""
    return f"mkdir -p {tmp} && cp -a /etc {tmp}/ && {{ sed -i '/^pypxe-homelab:/d' {tmp}/etc/passwd {tmp}/etc/group {tmp}/etc/shadow {tmp}/etc/gshadow 2>/dev/null || true; }} && mount --bind {tmp}/etc /etc"


def add_unserved_link(lan: TestLan) -> tuple[str, str]:
    """A veth between server and client that the config does not serve; (server address, client address)."""
    net = lan.prefix.replace("10.231.", "10.232.", 1)
    server_ip, client_ip = f"{net}.1", f"{net}.2"
    subprocess.run(
        ["ip", "-n", lan.ns("server"), "link", "add", "eth1", "type", "veth", "peer", "name", "eth1", "netns",
         lan.ns("client")],
        check=True,
    )  # fmt: skip
    for host, ip in (("server", server_ip), ("client", client_ip)):
        subprocess.run(["ip", "-n", lan.ns(host), "addr", "add", f"{ip}/24", "dev", "eth1"], check=True)
        subprocess.run(["ip", "-n", lan.ns(host), "link", "set", "eth1", "up"], check=True)
    return server_ip, client_ip


def scrape(lan: TestLan, server_ip: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics, parsed with prometheus-client's own parser: {(sample name, labels): value}."""
    page = http_request(lan, "client", f"http://{server_ip}:12345/metrics")
    assert page["status"] == 200 and page["headers"]["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(page["text"]):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# --- started as root ---------------------------------------------------------------------------------


@dataclass
class RootLab:
    lan: TestLan
    server: Running
    server_ip: str
    unserved_ip: str


@pytest.fixture(scope="module")
def root_lab(installed_program: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RootLab]:
    base = shared_tempdir("pxh-privilege-")
    private = tmp_path_factory.mktemp("etc")
    try:
        with TestLan(["server", "client"]) as lan:
            unserved_ip, _ = add_unserved_link(lan)
            config, root = prepare(installed_program, lan, base)
            script = f"{private_etc(private)}\nexec {installed_program.command} --config {config} serve"
            server = start(lan, script, base / "serve.log", config, root)
            try:
                yield RootLab(lan, server, lan.ip("server"), unserved_ip)
            finally:
                code = server.stop()
                assert code == 0, f"serve did not stop cleanly ({code}):\n{server.log()}"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_root_start_drops_to_the_service_user_without_capabilities(root_lab: RootLab) -> None:
    log = root_lab.server.log()
    assert f"created the system user {SERVICE_USER}" in log
    assert f"running as user {SERVICE_USER} with no capabilities" in log
    status = root_lab.server.status()
    uids = status["Uid"].split()
    assert len(set(uids)) == 1 and uids[0] != "0", status["Uid"]
    assert status["Gid"].split()[0] != "0"
    for caps in ("CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd"):
        assert int(status[caps], 16) == 0, f"{caps} {status[caps]}"
    assert status["NoNewPrivs"] == "1"
    # the data root and the state database belong to the service user
    assert root_lab.server.root.stat().st_uid == int(uids[0])
    assert (root_lab.server.root / "state.db").stat().st_uid == int(uids[0])


def test_tftp_and_http_listen_on_the_served_address_and_loopback_only(root_lab: RootLab) -> None:
    lan = root_lab.lan
    listening = lan.run("server", ["ss", "-Hlntu"]).stdout
    local = {line.split()[4] for line in listening.splitlines()}
    assert {
        f"{root_lab.server_ip}:69",
        "127.0.0.1:69",
        f"{root_lab.server_ip}:12345",
        "127.0.0.1:12345",
    } <= local
    assert not {"0.0.0.0:69", "*:69", "0.0.0.0:12345", "*:12345", f"{root_lab.unserved_ip}:69"} & local
    # from the client, over the link the config does not serve: neither TFTP nor HTTP answers
    code = f"""
        import json, socket, sys
        sys.path.insert(0, {str(REPO)!r})
        from tests.lab.tftpclient import TftpTestClient
        with TftpTestClient({root_lab.unserved_ip!r}, timeout=1.0, retries=1) as c:
            tftp = c.get("lpxelinux.0").ok
        try:
            socket.create_connection(({root_lab.unserved_ip!r}, 12345), timeout=3).close()
            http = "connected"
        except OSError as exc:
            http = type(exc).__name__
        print(json.dumps({{"tftp": tftp, "http": http}}))
    """
    assert client_python(lan, "client", code) == {"tftp": False, "http": "ConnectionRefusedError"}
    # on the served address both answer, and loopback serves the local CLI
    [loader] = tftp_get(lan, "client", root_lab.server_ip, ["lpxelinux.0"])
    assert loader["ok"]
    local_health = lan.run("server", [sys.executable, "-c", "import urllib.request as u; "
                                      "print(u.urlopen('http://127.0.0.1:12345/healthz').status)"])  # fmt: skip
    assert local_health.stdout.strip() == "200", local_health.stderr


def test_a_scripted_boot_moves_the_counters_by_the_right_amounts(root_lab: RootLab) -> None:
    lan, ip = root_lab.lan, root_lab.server_ip
    before = scrape(lan, ip)
    result = lan.run(
        "client",
        [sys.executable, "-m", "tests.lab.pxeclient", "discover", "--profile", "bios-ipxe", "--mac",
         "52:54:00:a0:00:01", "--iface", "eth0"],
        cwd=REPO, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [r["message_type"] for r in json.loads(result.stdout)] == [2]  # one offer
    files = ["lpxelinux.0", "ldlinux.c32", f"pxelinux.cfg/{KNOWN}"]
    fetched = tftp_get(lan, "client", ip, files, blksize=1408)
    assert all(f["ok"] for f in fetched)
    kernel_gets = 2
    for _ in range(kernel_gets):
        assert http_request(lan, "client", f"http://{ip}:12345/boot/linux")["length"] == KERNEL_SIZE
    cloud = http_request(lan, "client", f"http://{ip}:12345/{KNOWN}/cloud-init/meta-data")
    assert cloud["status"] == 200

    expected = {
        ("pypxe_homelab_dhcp_requests_total", (("client_class", "bios"), ("outcome", "offer"))): 1,
        ("pypxe_homelab_tftp_transfers_total", (("result", "done"),)): len(files),
        ("pypxe_homelab_tftp_sent_bytes_total", ()): sum(f["bytes"] for f in fetched),
        ("pypxe_homelab_http_boot_requests_total", (("kind", "kernel"),)): kernel_gets,
        ("pypxe_homelab_http_sent_bytes_total", (("kind", "kernel"),)): kernel_gets * KERNEL_SIZE,
        ("pypxe_homelab_http_boot_requests_total", (("kind", "cloud-init"),)): 1,
    }
    deadline = time.monotonic() + 10  # events are counted once recorded, which may lag the reply a little
    while True:
        after = scrape(lan, ip)
        moved = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in expected}
        if moved == expected or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert moved == expected
    recorded = value(after, "pypxe_homelab_event_record_seconds_count") - value(
        before, "pypxe_homelab_event_record_seconds_count"
    )
    assert recorded >= 1 + 2 * len(files) + 2 * kernel_gets + 1  # offer, rrq+done per file, get+done, fetch
    assert value(after, "pypxe_homelab_tftp_active_transfers") == 0
    assert value(after, "pypxe_homelab_nodes") == 1
    assert value(after, "pypxe_homelab_service_up", service="tftp") == 1
    # and the events were recorded by the unprivileged server: the node's timeline has them
    timeline = http_request(lan, "client", f"http://{ip}:12345/api/nodes/{KNOWN}/events")
    kinds = {e["kind"] for e in json.loads(timeline["text"])["events"]}
    assert {"dhcp.offer", "tftp.done", "http.done", "cloudinit.fetch"} <= kinds
    assert "readonly database" not in root_lab.server.log()


def test_healthz_turns_503_after_a_broken_edit_and_200_after_the_fix(root_lab: RootLab) -> None:
    lan, ip, config = root_lab.lan, root_lab.server_ip, root_lab.server.config
    url = f"http://{ip}:12345/healthz"

    def health_until(status: int) -> dict:
        deadline = time.monotonic() + 15
        while True:
            answer = http_request(lan, "client", url)
            if answer["status"] == status or time.monotonic() > deadline:
                return answer

    assert health_until(200)["status"] == 200
    before = scrape(lan, ip)
    good = config.read_text()
    config.write_text(good.replace("  http_port: 12345\n", "  http_port: twelve\n"))
    try:
        broken = health_until(503)
        assert broken["status"] == 503, broken
        [problem] = json.loads(broken["text"])["problems"]
        assert "http_port" in problem and str(config) in problem
    finally:
        config.write_text(good + "# fixed\n")
    assert health_until(200)["status"] == 200
    after = scrape(lan, ip)
    assert (
        value(after, "pypxe_homelab_config_reloads_total", result="failed")
        - value(before, "pypxe_homelab_config_reloads_total", result="failed")
        == 1
    )
    assert value(after, "pypxe_homelab_config_reloads_total", result="ok") > value(
        before, "pypxe_homelab_config_reloads_total", result="ok"
    )
    assert value(after, "pypxe_homelab_config_last_reload_ok") == 1


# --- started with capabilities only ------------------------------------------------------------------


def capability_start(installed: Installed, user: str, group: str) -> str:
    """The command that starts the server as ``user`` holding only CAP_NET_BIND_SERVICE."""
    return (
        f"setpriv --reuid {user} --regid {group} --clear-groups --inh-caps +net_bind_service "
        f"--ambient-caps +net_bind_service --bounding-set -all,+net_bind_service {installed.command}"
    )


def test_a_start_with_only_capabilities_works_the_same(installed_program: Installed, test_lan) -> None:
    lan = test_lan(["server", "client"])
    base = shared_tempdir("pxh-caps-")
    try:
        config, root = prepare(installed_program, lan, base, user="nobody")
        shutil.chown(root, "nobody", "nogroup")
        script = f"exec {capability_start(installed_program, 'nobody', 'nogroup')} --config {config} serve"
        server = start(lan, script, base / "serve.log", config, root)
        try:
            status = server.status()
            assert status["Uid"].split()[0] == "65534"
            assert int(status["CapEff"], 16) == 0 and int(status["CapAmb"], 16) == 0
            assert "running as user nobody with no capabilities" in server.log()
            ip = lan.ip("server")
            offers = lan.run(
                "client",
                [sys.executable, "-m", "tests.lab.pxeclient", "discover", "--profile", "edk2", "--mac",
                 "52:54:00:a0:00:01", "--iface", "eth0"],
                cwd=REPO, timeout=60,
            )  # fmt: skip
            assert any(o["message_type"] == 2 for o in json.loads(offers.stdout))
            fetched = tftp_get(lan, "client", ip, ["efi64/syslinux.efi", f"efi64/pxelinux.cfg/{KNOWN}"])
            assert all(f["ok"] for f in fetched)
            assert http_request(lan, "client", f"http://{ip}:12345/boot/initrd.gz")["status"] == 200
            cloud = http_request(lan, "client", f"http://{ip}:12345/{KNOWN}/cloud-init/meta-data")
            assert cloud["status"] == 200
            wanted = {"dhcp.offer", "tftp.done", "cloudinit.fetch"}
            deadline = time.monotonic() + 10
            kinds: set[str] = set()
            while not wanted <= kinds and time.monotonic() < deadline:
                timeline = http_request(lan, "client", f"http://{ip}:12345/api/nodes/{KNOWN}/events")
                kinds = {e["kind"] for e in json.loads(timeline["text"])["events"]}
            assert wanted <= kinds
            assert (root / "state.db").stat().st_uid == 65534
        finally:
            assert server.stop() == 0, server.log()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_an_unwritable_data_root_is_a_one_line_error(installed_program: Installed, test_lan) -> None:
    lan = test_lan(["server"])
    base = shared_tempdir("pxh-unwritable-")
    try:
        config, root = prepare(installed_program, lan, base, user="nobody")  # root-owned, 0755
        script = f"exec {capability_start(installed_program, 'nobody', 'nogroup')} --config {config} serve"
        server = start(lan, script, base / "serve.log", config, root, wait=False)
        code = server.proc.wait(30)
        lines = [line for line in server.log().splitlines() if line.strip()]
        assert code == 1, server.log()
        assert lines[-1] == (
            f"error: the data root {root} is not writable by user nobody: run `sudo chown -R nobody: {root}`, "
            "or start serve as root once (it gives the folder to the user)"
        ), server.log()
        assert "Traceback" not in server.log()
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- a Raspberry Pi's disk, exported by the unprivileged server -----------------------------------------


@pytest.mark.skipif(shutil.which("tgtd") is None, reason="needs tgtd (Debian package tgt)")
@pytest.mark.skipif(bool(missing_tools()), reason="needs qemu-utils, qemu-block-extra and libiscsi-bin")
def test_pi_disks_are_made_and_exported_by_the_service_user(
    installed_program: Installed, test_lan, tmp_path: Path
) -> None:
    lan = test_lan(["server", "client"])
    base = shared_tempdir("pxh-pi-")
    try:
        config, root = prepare(installed_program, lan, base)
        config.write_text(
            config.read_text() + f"  {PI}:\n    address: {lan.prefix}.60/24\n    os: {PI_IMAGE}\n"
        )
        make_pi_image(root)
        script = f"{private_etc(tmp_path / 'etc')}\nexec {installed_program.command} --config {config} serve"
        server = start(lan, script, base / "serve.log", config, root)
        try:
            deadline = time.monotonic() + 30
            while f"exporting {PI}" not in server.log() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert f"exporting {PI}" in server.log(), server.log()
            uid = int(server.status()["Uid"].split()[0])
            assert uid != 0
            disk = root / "iscsiroot" / f"{PI}.img"
            assert disk.stat().st_uid == uid
            children = subprocess.run(
                ["pgrep", "-x", "-P", str(server.proc.pid), "tgtd"], capture_output=True, text=True
            ).stdout.split()  # the server's own tgtd, its child
            assert len(children) == 1 and Path(f"/proc/{children[0]}").stat().st_uid == uid
            info = disk_info(lan, "client", f"{lan.ip('server')}:3260", target_iqn(PI), initiator_name(PI))
            assert info is not None and info["virtual-size"] == disk.stat().st_size
        finally:
            assert server.stop() == 0, server.log()
    finally:
        shutil.rmtree(base, ignore_errors=True)
