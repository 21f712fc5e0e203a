"""The container image: built with podman from the repository's Containerfile (on a Debian base image made
with mmdebstrap), run with host networking inside a test namespace; a scripted PXE client boots through it,
an edit of config.yaml in the mounted volume is applied live, the health check passes and `podman stop`
ends it within 10 s."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lab.container import PRODUCT_IMAGE, podman_skip_reason, product_image, run_options
from tests.lab.install import shared_tempdir
from tests.lab.netns import TestLan, ip_netns_available
from tests.lab.serverproc import REPO, TEST_PUBLIC_KEY, http_request, tftp_get

pytestmark = [
    pytest.mark.container,
    pytest.mark.netns,
    pytest.mark.skipif(not ip_netns_available(), reason="needs `ip netns`"),
]

KNOWN = "01-52-54-00-a0-00-01"
IMAGE_UID = 969  # the image's user pypxe-homelab
KERNEL_SIZE = 2 * 1024 * 1024 + 5
STOP_SECONDS = 10


def config_text(lan: TestLan, cmdline: str) -> str:
    return (
        "server:\n  interfaces: [eth0]\n  http_port: 12345\n"
        f"defaults:\n  gateway: {lan.prefix}.1\n  dns: [{lan.prefix}.1]\n"
        f'  ssh_authorized_keys: ["{TEST_PUBLIC_KEY}"]\n'
        f"nodes:\n  {KNOWN}:\n    address: {lan.prefix}.50/24\n"
        f"    boot: {{kernel: boot/linux, initrd: boot/initrd.gz, cmdline: {cmdline}}}\n"
    )


@dataclass
class Container:
    lan: TestLan
    name: str
    config: Path
    data: Path

    def podman(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """podman in the server's network namespace (nsenter keeps runc's cgroup mounts; ip netns exec does not)."""
        return subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.lan.ns('server')}", "podman", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def logs(self) -> str:
        result = self.podman("logs", self.name)
        return result.stdout + result.stderr

    def inspect(self, template: str) -> str:
        return self.podman("inspect", self.name, "--format", template).stdout.strip()


@pytest.fixture(scope="module")
def container() -> Iterator[Container]:
    reason = podman_skip_reason()
    if reason:
        pytest.skip(reason)
    product_image()
    base = shared_tempdir("pxh-container-")
    try:
        with TestLan(["server", "client"]) as lan:
            config = base / "config"
            config.mkdir(mode=0o755)
            (config / "config.yaml").write_text(config_text(lan, "console=ttyS0"))
            data = base / "data"
            boot = data / "httproot" / "boot"
            boot.mkdir(parents=True)
            (boot / "linux").write_bytes(b"k" * KERNEL_SIZE)
            (boot / "initrd.gz").write_bytes(b"i" * 4096)
            for path in (data, *data.rglob("*")):
                shutil.chown(path, IMAGE_UID, IMAGE_UID)
            box = Container(lan, f"{lan.token}pxh", config / "config.yaml", data)
            started = box.podman(
                "run", "-d", "--name", box.name, *run_options(), "--network", "host",
                "--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE",
                "-v", f"{config}:/etc/pypxe-homelab:ro", "-v", f"{data}:/var/lib/pypxe-homelab",
                PRODUCT_IMAGE,
            )  # fmt: skip
            assert started.returncode == 0, started.stderr
            try:
                for proto, port in (("udp", 67), ("udp", 69), ("tcp", 12345)):
                    try:
                        lan.wait_port("server", proto, port, timeout=60)
                    except TimeoutError:
                        raise AssertionError(f"no {proto}/{port}:\n{box.logs()}") from None
                yield box
            finally:
                box.podman("rm", "-f", "-t", "0", box.name)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_it_runs_as_the_image_user_without_capabilities(container: Container) -> None:
    pid = container.inspect("{{.State.Pid}}")
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    assert status["Uid"].split()[0] == str(IMAGE_UID)
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
    assert "running as user pypxe-homelab with no capabilities" in container.logs()


def test_a_scripted_pxe_client_boots_through_it(container: Container) -> None:
    lan = container.lan
    ip = lan.ip("server")
    client_ip = lan.ip("client")
    result = lan.run(
        "client",
        [sys.executable, "-m", "tests.lab.pxeclient", "boot", "--profile", "bios-ipxe", "--mac",
         "52:54:00:a0:00:01", "--client-ip", client_ip, "--iface", "eth0"],
        cwd=REPO, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [ack] = json.loads(result.stdout)["acks"]
    assert ack["file"] == "lpxelinux.0" and ack["siaddr"] == ip
    loader, ldlinux, cfg = tftp_get(
        lan, "client", ip, ["lpxelinux.0", "ldlinux.c32", f"pxelinux.cfg/{KNOWN}"]
    )
    assert loader["ok"] and ldlinux["ok"] and cfg["ok"]
    assert loader["bytes"] == Path("/usr/lib/PXELINUX/lpxelinux.0").stat().st_size
    assert f"http://{ip}:12345/boot/linux" in cfg["text"]
    kernel = http_request(lan, "client", f"http://{ip}:12345/boot/linux")
    assert kernel["status"] == 200 and kernel["length"] == KERNEL_SIZE
    assert (container.data / "state.db").stat().st_uid == IMAGE_UID  # and it recorded the boot


def test_the_health_check_passes(container: Container) -> None:
    result = container.podman("healthcheck", "run", container.name)
    assert result.returncode == 0, result.stdout + result.stderr + container.logs()
    assert container.inspect("{{.State.Health.Status}}") == "healthy"


def test_an_edit_of_config_yaml_in_the_volume_is_applied_live(container: Container) -> None:
    lan = container.lan
    container.config.write_text(config_text(lan, "console=ttyS0 edited-live"))
    deadline = time.monotonic() + 15
    while True:
        [cfg] = tftp_get(lan, "client", lan.ip("server"), [f"pxelinux.cfg/{KNOWN}"])
        if "edited-live" in (cfg["text"] or "") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "edited-live" in cfg["text"], container.logs()
    assert f"node changed: {KNOWN}" in container.logs()


def test_podman_stop_ends_it_cleanly_within_10_seconds(container: Container) -> None:
    started = time.monotonic()
    result = container.podman("stop", "-t", str(STOP_SECONDS + 5), container.name)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert took < STOP_SECONDS, f"podman stop took {took:.1f} s"
    assert container.inspect("{{.State.ExitCode}}") == "0", container.logs()
    assert container.logs().rstrip().endswith("stopped")
