"""A node with ``os:`` boots the installer of an added image through the server, reports back, is installed once.

The image is a small ISO shaped like an Ubuntu live-server ISO: its casper kernel is the lab's Debian kernel
and its casper initrd a busybox initrd that plays the installer. It prints its command line, fetches its
seed from the ``s=`` URL, posts Subiquity-style webhook events and calls the late-command callback. The
same machine then boots again and must get the local-boot answer instead of the installer.

The tests run in order on one machine (one UEFI VM, same NVRAM and UUID across boots).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import BIOS_MAC, NODE_CMDLINE, UEFI_MAC, NetbootLab, config_head
from tests.fixtures.autoinstall.inventories import public_key
from tests.fixtures.autoinstall.isobuild import build_test_iso
from tests.lab.mkinitrd import build_net_initrd

pytestmark = pytest.mark.e2e

FIRMWARE = "uefi"
MAC = UEFI_MAC
DEVICE_ID = "01-" + MAC.replace(":", "-")
IMAGE = "ubuntu-e2e"
ISO_FILE = "ubuntu-e2e-live-server-amd64.iso"
HOSTNAME = "e2e-node1"
PASSWORD = "plaintext-e2e-secret-4711"

DONE = "PXH-INSTALLER-DONE"
CMDLINE = "PXH-INSTALLER-CMDLINE:"
KERNEL_LOG_LINE = re.compile(r"\[\s*\d+\.\d+\] ")
USER_DATA_BEGIN, USER_DATA_END = "PXH-USER-DATA-BEGIN", "PXH-USER-DATA-END"
META_DATA_BEGIN, META_DATA_END = "PXH-META-DATA-BEGIN", "PXH-META-DATA-END"
LOCAL_BOOT_SAY = "booting from the local disk"
# syslinux.efi's LOCALBOOT returns to the firmware: OVMF reports that the PXEv4 entry ended and, the VM having
# no disk, goes on to its next boot option, PXE over IPv6
PXE4_ENDED = "BdsDxe: failed to start Boot"
NEXT_BOOT_OPTION = ">>Start PXE over IPv6"

# (event_type, name, result) posted to the webhook, as Subiquity's reporting would
INSTALLER_EVENTS = (
    ("start", "subiquity/Install/install", None),
    ("start", "subiquity/Install/install/curtin_install", None),
    ("finish", "subiquity/Install/install/curtin_install", "SUCCESS"),
    ("finish", "subiquity/Install/install", "SUCCESS"),
)


def installer_script() -> str:
    """The fake installer: runs after the initrd has its DHCP address."""
    posts = []
    for event_type, name, result in INSTALLER_EVENTS:
        body = {"name": name, "event_type": event_type, "origin": "curtin", "level": "INFO"}
        if result:
            body["result"] = result
        body["description"] = f"{event_type} {name.rsplit('/', 1)[-1]}"
        posts.append(f"post_event '{json.dumps(body)}'")
    post_lines = "\n".join(posts)
    return f"""
dmesg -n 1  # keep kernel messages from interleaving with what is printed below
echo "{CMDLINE} $(cat /proc/cmdline)"
SEED=""
for w in $(cat /proc/cmdline); do
  case "$w" in
    "ds=nocloud-net;s="*) SEED="${{w#*;s=}}" ;;
  esac
done
echo "PXH-SEED: $SEED"
NODE_URL="${{SEED%cloud-init/}}"
echo "{USER_DATA_BEGIN}"
wget -q -O /tmp/user-data "${{SEED}}user-data" && cat /tmp/user-data || echo "PXH-FETCH-FAILED user-data"
echo
echo "{USER_DATA_END}"
# the per-install token that only this node's user-data holds (its webhook URL and callback carry it)
TOKEN="$(sed -n 's/.*events?token=\\([0-9a-f]*\\).*/\\1/p' /tmp/user-data | head -n 1)"
echo "{META_DATA_BEGIN}"
wget -q -O - "${{SEED}}meta-data" || echo "PXH-FETCH-FAILED meta-data"
echo
echo "{META_DATA_END}"
post_event() {{
  if wget -q -O - --header "Content-Type: application/json" --post-data "$1" "${{NODE_URL}}events?token=$TOKEN"; then
    echo " PXH-EVENT-OK"
  else
    echo "PXH-EVENT-FAILED"
  fi
}}
{post_lines}
if wget -q -O - --post-data "token=$TOKEN" "${{NODE_URL}}installed"; then echo "PXH-CALLBACK-OK"; else echo "PXH-CALLBACK-FAILED"; fi
echo "{DONE}"
"""


def ssh_public_key(workdir: Path) -> str:
    """A fresh ed25519 public key line made by ssh-keygen (a well-formed synthetic one without it)."""
    if not shutil.which("ssh-keygen"):
        return public_key("admin@e2e", seed=7)
    key = workdir / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "admin@e2e", "-f", str(key)],
        check=True,
        capture_output=True,
    )
    return key.with_suffix(".pub").read_text().strip()


def install_config(lab: NetbootLab, key: str) -> str:
    """config.yaml where the UEFI machine installs the added image (the BIOS node keeps its plain boot)."""
    p = lab.lan.prefix
    return (
        config_head(lab)
        + f"""\
  01-{BIOS_MAC.replace(":", "-")}:
    address: {p}.50/24
    boot: {{kernel: boot/linux, initrd: boot/initrd.gz, cmdline: "{NODE_CMDLINE}"}}
  {DEVICE_ID}:
    hostname: {HOSTNAME}
    address: {p}.51/24
    os: {IMAGE}
    password: {PASSWORD}
    ssh_authorized_keys:
      - {key}
    cmdline: {NODE_CMDLINE}
"""
    )


@dataclass
class Installer:
    """The lab set up for the install, and where in the server log the current boot starts."""

    lab: NetbootLab
    key: str
    log_offset: int = 0  # server log length when the current boot started

    @property
    def node_url(self) -> str:
        return f"http://{self.lab.server_ip}:{self.lab.http_port}/{DEVICE_ID}"

    def log_since_mark(self) -> str:
        return self.lab.server_log()[self.log_offset :]

    def mark(self) -> None:
        self.log_offset = len(self.lab.server_log())

    def status(self) -> dict:
        res = self.lab.cli("status", DEVICE_ID, "--json", "--limit", "1000")
        assert res.returncode == 0, f"status failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
        return json.loads(res.stdout)


@pytest.fixture(scope="module")
def installer(netboot_lab: NetbootLab, tmp_path_factory: pytest.TempPathFactory) -> Installer:
    """The lab with image ``ubuntu-e2e`` added from a test ISO and the UEFI machine set to install it."""
    lab = netboot_lab
    work = tmp_path_factory.mktemp("autoinstall")
    initrd = build_net_initrd(installer_script(), lab.kernel)
    iso = build_test_iso(work / ISO_FILE, lab.kernel.vmlinuz.read_bytes(), initrd)
    res = lab.cli("images", "add", str(iso), "--name", IMAGE)
    assert res.returncode == 0, f"images add failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    key = ssh_public_key(work)
    lab.write_config(install_config(lab, key))
    res = lab.cli("validate")
    assert res.returncode == 0, f"validate refused the config ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    lab.restart_server()
    return Installer(lab, key)


def between(text: str, begin: str, end: str) -> str:
    """The lines printed between two markers, without kernel log lines (``[   2.23] …``)."""
    m = re.search(re.escape(begin) + r"\n(.*?)\n" + re.escape(end), text, re.S)
    assert m, f"no {begin} … {end} block on the serial console"
    return "\n".join(line for line in m.group(1).splitlines() if not KERNEL_LOG_LINE.match(line)) + "\n"


def served_paths(log: str, kind: str) -> list[str]:
    """Paths of ``kind`` (http.get, http.done, …) events for DEVICE_ID in a server log."""
    return re.findall(rf"{re.escape(kind)} {DEVICE_ID} \(.*?\) path=(\S+)", log)


def test_installer_boots_with_the_autoinstall_cmdline_and_reads_its_seed(installer: Installer):
    lab = installer.lab
    installer.mark()
    result = lab.boot(FIRMWARE, MAC, expect=DONE)
    context = result.describe() + "\n---- server log ----\n" + installer.log_since_mark()[-5000:]
    assert result.ok, context

    m = re.search(re.escape(CMDLINE) + r" (.*)", result.serial)
    assert m, context
    cmdline = m.group(1).split()
    base = f"http://{lab.server_ip}:{lab.http_port}"
    for token in (
        "autoinstall",
        "ip=dhcp",
        "cloud-config-url=/dev/null",
        f"url={base}/{DEVICE_ID}/{ISO_FILE}",
        f"ds=nocloud-net;s={base}/{DEVICE_ID}/cloud-init/",
        "console=ttyS0,115200",
    ):
        assert token in cmdline, f"{token!r} missing from {cmdline}"
    assert f"PXH-SEED: {base}/{DEVICE_ID}/cloud-init/" in result.serial

    user_data = between(result.serial, USER_DATA_BEGIN, USER_DATA_END)
    assert user_data.startswith("#cloud-config\n"), user_data[:200]
    assert f"hostname: {HOSTNAME}" in user_data
    assert installer.key.split()[1] in user_data
    assert PASSWORD not in user_data
    assert "password: $6$" in user_data
    meta_data = between(result.serial, META_DATA_BEGIN, META_DATA_END)
    assert f"instance-id: {DEVICE_ID}-1" in meta_data
    assert result.serial.count("PXH-EVENT-OK") == len(INSTALLER_EVENTS), context
    assert "PXH-CALLBACK-OK" in result.serial, context

    log = installer.log_since_mark()
    for kind in ("http.get", "http.done"):
        paths = served_paths(log, kind)
        assert f"/{DEVICE_ID}/casper/vmlinuz" in paths, f"{kind} of the kernel missing:\n{log[-5000:]}"
        assert f"/{DEVICE_ID}/casper/initrd" in paths, f"{kind} of the initrd missing:\n{log[-5000:]}"


def test_the_node_is_installed_and_its_timeline_shows_the_install(installer: Installer):
    status = installer.status()
    assert status["state"] == "installed", json.dumps(status, indent=2)[:4000]
    assert status["os"] == IMAGE
    events = status["events"]
    kinds = {e["kind"] for e in events}
    assert {
        "dhcp.offer",
        "tftp.done",
        "http.done",
        "cloudinit.fetch",
        "install.event",
        "install.callback",
    } <= kinds
    done = {e["detail"].get("path") for e in events if e["kind"] == "http.done"}
    assert {f"/{DEVICE_ID}/casper/vmlinuz", f"/{DEVICE_ID}/casper/initrd"} <= done
    installer_events = [
        (e["detail"]["event_type"], e["detail"]["name"], e["detail"].get("result"))
        for e in events
        if e["kind"] == "install.event"
    ]
    assert installer_events == list(INSTALLER_EVENTS)


def test_the_installed_node_boots_from_its_disk_next_time(installer: Installer):
    lab = installer.lab
    installer.mark()
    result = lab.boot(
        FIRMWARE,
        MAC,
        expect=re.escape(NEXT_BOOT_OPTION),
        fail=r"Kernel panic|Linux version \d",
        same_machine=True,
    )
    log = installer.log_since_mark()
    context = result.describe() + "\n---- server log ----\n" + log[-5000:]
    assert result.ok, context
    serial = result.serial
    assert LOCAL_BOOT_SAY in serial, context
    # the node's own config was served, PXELINUX handed back to the firmware, which moved on
    assert serial.index(LOCAL_BOOT_SAY) < serial.index(PXE4_ENDED) < serial.index(NEXT_BOOT_OPTION), context
    assert f"efi64/pxelinux.cfg/{DEVICE_ID}" in served_paths(log, "tftp.done"), context
    assert "Linux version" not in serial
    for kind in ("http.get", "http.done"):
        assert not [p for p in served_paths(log, kind) if "casper" in p], context
    status = installer.status()
    assert status["state"] == "installed"


def test_reinstall_rearms_the_installer_with_a_new_instance_id(installer: Installer):
    lab = installer.lab
    res = lab.cli("reinstall", DEVICE_ID)
    assert res.returncode == 0, f"reinstall failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    assert "generation 2" in res.stdout

    res = lab.cli("render", DEVICE_ID)
    assert res.returncode == 0, f"render failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    assert f"KERNEL http://{lab.server_ip}:{lab.http_port}/{DEVICE_ID}/casper/vmlinuz" in res.stdout
    assert f"instance-id: {DEVICE_ID}-2" in res.stdout
    assert "LOCALBOOT" not in res.stdout
    status = installer.status()
    assert status["state"] == "discovered"
    assert status["generation"] == 2

    # the seed is only for the address that network-booted as the node: another host gets 403, nothing moves
    served = lab.lan.run(
        "server", ["busybox", "wget", "-q", "-O", "-", f"{installer.node_url}/cloud-init/meta-data"]
    )
    assert served.returncode != 0 and "403" in served.stderr
    status = installer.status()
    assert (status["state"], status["generation"]) == ("discovered", 2)
