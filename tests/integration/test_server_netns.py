"""The real `pypxe-homelab serve` in a network namespace, scripted PXE/TFTP/HTTP clients in another."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.fixtures.autoinstall.isobuild import build_test_iso
from tests.lab.netns import TestLan, ip_netns_available
from tests.lab.serverproc import (
    REPO,
    TEST_PUBLIC_KEY,
    ServerLab,
    ServerProcess,
    base_config,
    client_python,
    http_request,
    tftp_get,
)

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or not ip_netns_available(), reason="needs root and `ip netns`"),
    pytest.mark.skipif(not Path("/usr/lib/PXELINUX/lpxelinux.0").exists(), reason="needs Debian's pxelinux"),
]

KNOWN = "01-52-54-00-a0-00-01"
UNKNOWN = "01-52-54-00-a0-00-09"
NODES = f"""\
{KNOWN}:                 # the lab PC
  address: {{prefix}}.50/24
  boot:
    kernel: boot/linux
    initrd: boot/initrd.gz
    cmdline: console=ttyS0,115200 panic=-1
"""


class Lab(ServerLab):
    """The module's server."""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("server")
    root = tmp / "root"
    with TestLan(["server", "client"]) as lan:
        config = tmp / "config.yaml"
        config.write_text(base_config(lan, root, nodes=NODES.format(prefix=lan.prefix)))
        server = ServerProcess(lan, config)
        server.cli("bootfiles", "install")
        iso = tmp / "ubuntu-24.04-test.iso"
        build_test_iso(iso, b"test kernel " * 1000, b"test initrd " * 1000)
        server.cli("images", "add", str(iso), "--name", "ubuntu-24.04")
        boot = root / "httproot" / "boot"
        boot.mkdir(parents=True)
        (boot / "linux").write_bytes(os.urandom(1024 * 1024 + 17))
        (boot / "initrd.gz").write_bytes(os.urandom(300_000))
        (root / "tftproot" / "secret-link").symlink_to("/etc/passwd")
        with server.running():
            yield Lab(lan, root, server)


def test_startup_summary_names_interface_ports_and_nodes(lab: Lab) -> None:
    log = lab.server.wait_log("node(s)")
    assert f"serving eth0: {lab.server_ip}" in log
    assert "ProxyDHCP udp/67+4011" in log and "TFTP udp/69" in log
    assert f"http://{lab.server_ip}:12345; 1 node(s)" in log


def test_discover_gets_a_proxy_offer_per_architecture(lab: Lab) -> None:
    bios = lab.pxe("discover", "--profile", "bios-ipxe", "--mac", "52:54:00:a0:00:01")
    [offer] = [r for r in bios if r["message_type"] == 2]
    assert offer["yiaddr"] == "0.0.0.0" and offer["server_id"] == lab.server_ip
    assert offer["pxe"]["6"] == "03" and b"Raspberry Pi Boot".hex() in offer["pxe"]["9"]
    assert offer["length"] >= 300
    assert not {"1", "3", "6", "51"} & set(offer["options"])
    efi = lab.pxe("discover", "--profile", "edk2", "--mac", "52:54:00:a0:00:02")
    [offer] = [r for r in efi if r["message_type"] == 2]
    assert offer["siaddr"] == lab.server_ip and offer["file"] == "" and "43" not in offer["options"]


def test_non_pxe_dhcp_gets_no_answer(lab: Lab) -> None:
    assert lab.pxe("discover", "--profile", "plain", "--mac", "52:54:00:a0:00:03", "--timeout", "2") == []


@pytest.mark.parametrize(
    ("profile", "mac", "file"),
    [
        ("bios-ipxe", "52:54:00:a0:00:01", "lpxelinux.0"),  # from 68, xid 0, option 43.71
        ("ipxe-efi", "52:54:00:a0:00:02", "efi64/syslinux.efi"),  # from 68, the DISCOVER's xid, option 54
        ("edk2", "52:54:00:a0:00:04", "efi64/syslinux.efi"),  # from 4011, new xid, answer to 4011
    ],
)
def test_port_4011_acks_in_all_three_styles(lab: Lab, profile: str, mac: str, file: str) -> None:
    result = lab.pxe("boot", "--profile", profile, "--mac", mac, "--client-ip", lab.client_ip)
    [ack] = result["acks"]
    assert ack["message_type"] == 5 and ack["file"] == file and ack["siaddr"] == lab.server_ip
    assert ack["sport"] == 4011
    if profile == "edk2":
        assert ack["dport"] == 4011


def test_tftp_serves_the_loader_with_blksize_and_tsize(lab: Lab) -> None:
    expected = Path("/usr/lib/PXELINUX/lpxelinux.0").read_bytes()
    [loader, ldlinux, cfg] = tftp_get(
        lab.lan,
        "client",
        lab.server_ip,
        ["lpxelinux.0", "ldlinux.c32", f"pxelinux.cfg/{KNOWN}"],
        blksize=1408,
        tsize=True,
    )
    assert loader["ok"] and loader["sha256"] == hashlib.sha256(expected).hexdigest()
    assert loader["oack"] == {"blksize": "1408", "tsize": str(len(expected))}
    assert ldlinux["ok"] and cfg["ok"]
    assert f"KERNEL http://{lab.server_ip}:12345/boot/linux" in cfg["text"]
    assert f"INITRD http://{lab.server_ip}:12345/boot/initrd.gz" in cfg["text"]
    assert "APPEND console=ttyS0,115200 panic=-1" in cfg["text"]


def test_tftp_clamps_blksize_to_the_mtu(lab: Lab) -> None:
    [result] = tftp_get(lab.lan, "client", lab.server_ip, ["lpxelinux.0"], blksize=9000)
    assert result["ok"] and result["oack"]["blksize"] == "1468" and result["max_block"] <= 1468


def test_generated_config_is_the_same_for_uefi_trees(lab: Lab) -> None:
    bios = lab.config(KNOWN)
    assert lab.config(KNOWN, "efi64").splitlines()[2:] == bios.splitlines()[2:]
    assert "LABEL boot" in lab.config(KNOWN, "efi32")


def test_tftp_refuses_uploads_traversal_and_symlink_escape(lab: Lab) -> None:
    code = f"""
        import json, sys
        sys.path.insert(0, {str(REPO)!r})
        from tests.lab.tftpclient import TftpTestClient
        with TftpTestClient({lab.server_ip!r}) as c:
            out = [c.put("pxelinux.cfg/evil").as_json()]
            for p in ["../../../etc/passwd", "/etc/passwd", "secret-link", "efi64/../../etc/passwd"]:
                out.append(c.get(p).as_json())
        print(json.dumps(out))
    """
    put, *reads = client_python(lab.lan, "client", code)
    assert not put["ok"] and put["error_code"] in (2, 4)
    assert not (lab.root / "tftproot" / "pxelinux.cfg" / "evil").exists()
    for result in reads:
        assert not result["ok"] and result["error_code"] in (1, 2), result


def test_http_get_range_and_head(lab: Lab) -> None:
    body = (lab.root / "httproot" / "boot" / "linux").read_bytes()
    url = f"http://{lab.server_ip}:12345/boot/linux"
    full = http_request(lab.lan, "client", url)
    assert full["status"] == 200 and full["sha256"] == hashlib.sha256(body).hexdigest()
    assert full["headers"]["Content-Length"] == str(len(body))
    part = http_request(lab.lan, "client", url, headers={"Range": "bytes=1000-1999"})
    assert part["status"] == 206 and part["length"] == 1000
    assert part["sha256"] == hashlib.sha256(body[1000:2000]).hexdigest()
    head = http_request(lab.lan, "client", url, method="HEAD")
    assert (
        head["status"] == 200 and head["length"] == 0 and head["headers"]["Content-Length"] == str(len(body))
    )
    assert http_request(lab.lan, "client", f"http://{lab.server_ip}:12345/../../etc/passwd")["status"] == 404


def test_http_keep_alive_serves_files_one_after_the_other(lab: Lab) -> None:
    code = f"""
        import http.client, json
        conn = http.client.HTTPConnection({lab.server_ip!r}, 12345, timeout=10)
        sizes = []
        for path in ["/boot/initrd.gz", "/boot/linux", "/boot/initrd.gz"]:
            conn.request("GET", path)
            resp = conn.getresponse()
            sizes.append((resp.status, len(resp.read()), resp.getheader("Connection")))
        print(json.dumps({{"sizes": sizes, "same_socket": conn.sock is not None}}))
    """
    result = client_python(lab.lan, "client", code)
    assert [s[:2] for s in result["sizes"]] == [[200, 300000], [200, 1024 * 1024 + 17], [200, 300000]]
    assert result["same_socket"]
    assert "Error handling request" not in lab.server.log()


def test_http_1_0_client_gets_content_length(lab: Lab) -> None:
    code = f"""
        import json, socket
        s = socket.create_connection(({lab.server_ip!r}, 12345))
        s.sendall(b"GET /boot/initrd.gz HTTP/1.0\\r\\nUser-Agent: Syslinux/6.04\\r\\n\\r\\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        head, _, body = data.partition(b"\\r\\n\\r\\n")
        print(json.dumps({{"head": head.decode(), "length": len(body)}}))
    """
    result = client_python(lab.lan, "client", code)
    assert "Content-Length: 300000" in result["head"] and result["length"] == 300000


def test_unknown_pc_sees_its_id_the_add_line_and_boots_locally(lab: Lab) -> None:
    for tree in ("", "efi64", "efi32"):
        text = lab.config(UNKNOWN, tree)
        assert f"device id:  {UNKNOWN}" in text
        assert f"pypxe-homelab add {UNKNOWN} --node-address" in text
        assert "LOCALBOOT 0" in text and "KERNEL" not in text


def test_every_request_is_an_event_with_the_device_id(lab: Lab) -> None:
    start = len(lab.server.log())
    lab.config(KNOWN)
    log = lab.server.wait_log(f"tftp.done {KNOWN}", start=start)
    assert f"path=pxelinux.cfg/{KNOWN}" in log[start:]


def test_add_while_running_then_remove(lab: Lab) -> None:
    start = len(lab.server.log())
    lab.server.cli("add", UNKNOWN, "--node-address", f"{lab.lan.prefix}.60/24", "--os", "ubuntu-24.04")
    lab.server.wait_log(f"node added: {UNKNOWN}", start=start)
    text = lab.config(UNKNOWN)
    assert f"KERNEL http://{lab.server_ip}:12345/{UNKNOWN}/casper/vmlinuz" in text
    assert (
        " autoinstall " in text
        and f"ds=nocloud-net;s=http://{lab.server_ip}:12345/{UNKNOWN}/cloud-init/" in text
    )
    start = len(lab.server.log())
    lab.server.cli("remove", UNKNOWN)
    lab.server.wait_log(f"node removed: {UNKNOWN}", start=start)
    assert "LOCALBOOT 0" in lab.config(UNKNOWN)


BREAKAGES = {
    "bad YAML": lambda text, prefix: text.replace("  boot:\n", "  boot: [\n", 1),
    "bad CIDR": lambda text, prefix: text.replace(f"{prefix}.50/24", f"{prefix}.500/24"),
    "duplicate address": lambda text, prefix: (
        text + f"  {UNKNOWN}:\n    address: {prefix}.50/24\n    boot: {{kernel: boot/linux}}\n"
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_broken_edit_keeps_the_last_good_config_until_fixed(lab: Lab, breakage: str) -> None:
    config = lab.server.config
    good = config.read_text()
    start = len(lab.server.log())
    try:
        config.write_text(BREAKAGES[breakage](good, lab.lan.prefix))
        lab.server.wait_log("config not applied", start=start)
        time.sleep(2.5)  # the watcher looks again: still one error line
        errors = [line for line in lab.server.log()[start:].splitlines() if "config not applied" in line]
        assert len(errors) == 1 and f"{config}:" in errors[0], errors
        assert "KERNEL" in lab.config(KNOWN)  # still served from the last good config
        start = len(lab.server.log())
        added = f"  {UNKNOWN}:\n    address: {lab.lan.prefix}.61/24\n    boot: {{kernel: boot/linux, cmdline: quiet}}\n"
        config.write_text(good + added)
        lab.server.wait_log(f"node added: {UNKNOWN}", start=start)
        assert "APPEND quiet" in lab.config(UNKNOWN)
    finally:
        start = len(lab.server.log())
        config.write_text(good)
        lab.server.wait_log("config reloaded", start=start)


def test_sighup_reloads_at_once(lab: Lab) -> None:
    start = len(lab.server.log())
    lab.server.proc.send_signal(signal.SIGHUP)
    lab.server.wait_log("config reloaded", start=start, timeout=3)


PI_SERIAL = "1e2d3c4b"  # the serial in the scripted Pi 4 option 97
PI_MAC = "dc:a6:32:01:36:c2"


def test_probe_shows_a_scripted_pc_and_pi(lab: Lab) -> None:
    pi_dir = lab.root / "tftproot" / PI_SERIAL
    pi_dir.mkdir(exist_ok=True)
    (pi_dir / "start4.elf").write_bytes(os.urandom(200_000))
    (pi_dir / "config.txt").write_text("arm_64bit=1\n")
    pc_mac = "52:54:00:a0:00:0a"
    pc_id = "01-" + pc_mac.replace(":", "-")
    lab.pxe("boot", "--profile", "bios-ipxe", "--mac", pc_mac, "--client-ip", lab.client_ip)
    assert "LOCALBOOT" in lab.config(pc_id)
    offers = lab.pxe("discover", "--profile", "pi4", "--mac", PI_MAC)
    assert any(b"Raspberry Pi Boot".hex() in o["pxe"].get("9", "") for o in offers)
    start4, config_txt = tftp_get(
        lab.lan,
        "client",
        lab.server_ip,
        [f"{PI_SERIAL}/start4.elf", f"{PI_SERIAL}/config.txt"],
        blksize=1024,
        tsize=True,
    )
    assert start4["ok"] and start4["oack"] == {"blksize": "1024", "tsize": "200000"} and config_txt["ok"]
    result = lab.server.cli("probe", "--once", "--json")
    devices = {d["device_id"]: d for d in json.loads(result.stdout)}
    assert devices[pc_id]["mac"] == pc_mac and devices[pc_id]["firmware"] == "bios"
    pi = devices[PI_SERIAL]
    assert pi["pi"] and pi["mac"] == PI_MAC and pi["serial"] == PI_SERIAL
    assert KNOWN not in devices  # registered nodes are not "discovered, not yet registered"


INSTALLER = "01-52-54-00-a0-00-0b"


def _post_event(lab: Lab, device_id: str, event: dict, token: str = "", host: str = "client") -> int:
    url = f"http://{lab.server_ip}:12345/{device_id}/events?token={token}"
    body = json.dumps(event).encode()
    return http_request(
        lab.lan, host, url, method="POST", headers={"Content-Type": "application/json"}, data=body
    )["status"]


def _token_of(user_data: str) -> str:
    match = re.search(r"events\?token=([0-9a-f]+)", user_data)
    assert match, user_data
    return match.group(1)


def _callback(lab: Lab, device_id: str, token: str, host: str = "client") -> int:
    url = f"http://{lab.server_ip}:12345/{device_id}/installed"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    return http_request(lab.lan, host, url, method="POST", headers=form, data=f"token={token}".encode())[
        "status"
    ]


def test_installed_node_boots_locally_after_restart_until_reinstall(lab: Lab) -> None:
    config = lab.server.config
    good = config.read_text()
    node = (
        f"  {INSTALLER}:\n    address: {lab.lan.prefix}.70/24\n    os: ubuntu-24.04\n"
        f'    ssh_authorized_keys: ["{TEST_PUBLIC_KEY}"]\n'
    )
    start = len(lab.server.log())
    config.write_text(good + node)
    lab.server.wait_log(f"node added: {INSTALLER}", start=start)
    try:
        assert "casper/vmlinuz" in lab.config(INSTALLER)
        meta = http_request(
            lab.lan, "client", f"http://{lab.server_ip}:12345/{INSTALLER}/cloud-init/meta-data"
        )
        assert meta["status"] == 200 and f"instance-id: {INSTALLER}-1" in meta["text"]
        user = http_request(
            lab.lan, "client", f"http://{lab.server_ip}:12345/{INSTALLER}/cloud-init/user-data"
        )
        assert user["text"].startswith("#cloud-config\n") and TEST_PUBLIC_KEY in user["text"]
        token = _token_of(user["text"])
        base = {"origin": "curtin", "level": "INFO", "timestamp": 1.0}
        for event_type, name in [
            ("start", "subiquity/Install/install"),
            ("start", "subiquity/Install/install/curthooks"),
            ("finish", "subiquity/Install/install/curthooks"),
        ]:
            assert (
                _post_event(
                    lab,
                    INSTALLER,
                    {
                        **base,
                        "event_type": event_type,
                        "name": name,
                        "description": name,
                        "result": "SUCCESS",
                    },
                    token,
                )
                == 200
            )
        state = json.loads(lab.server.cli("status", INSTALLER, "--json").stdout)
        assert state["state"] == "installing"
        assert (
            _post_event(
                lab,
                INSTALLER,
                {
                    **base,
                    "event_type": "finish",
                    "name": "subiquity/Install/install",
                    "description": "",
                    "result": "SUCCESS",
                },
                token,
            )
            == 200
        )
        # a plain GET (any web page could make one) and a report from another address change nothing
        before = json.loads(lab.server.cli("status", INSTALLER, "--json").stdout)["state"]
        plain_get = http_request(lab.lan, "client", f"http://{lab.server_ip}:12345/{INSTALLER}/installed")
        assert plain_get["status"] in (404, 405)
        assert _callback(lab, INSTALLER, token, host="server") == 403
        fail = {**base, "event_type": "finish", "name": "subiquity/Install/install", "result": "FAIL"}
        assert _post_event(lab, INSTALLER, fail, token, host="server") == 403
        assert json.loads(lab.server.cli("status", INSTALLER, "--json").stdout)["state"] == before
        seed = f"http://{lab.server_ip}:12345/{INSTALLER}/cloud-init/user-data"
        assert http_request(lab.lan, "server", seed)["status"] == 403  # the seed: only to the booted address
        assert "only the address that network-booted as this node gets it" in lab.server.log()
        assert _callback(lab, INSTALLER, token) == 200
        assert json.loads(lab.server.cli("status", INSTALLER, "--json").stdout)["state"] == "installed"
        lab.server.stop()
        lab.server.start()
        for tree in ("", "efi64", "efi32"):
            text = lab.config(INSTALLER, tree)
            assert "LOCALBOOT 0" in text and "KERNEL" not in text and "reinstall" in text
        lab.server.cli("reinstall", INSTALLER)
        assert "casper/vmlinuz" in lab.config(INSTALLER)
        meta = http_request(
            lab.lan, "client", f"http://{lab.server_ip}:12345/{INSTALLER}/cloud-init/meta-data"
        )
        assert f"instance-id: {INSTALLER}-2" in meta["text"]
    finally:
        start = len(lab.server.log())
        config.write_text(good)
        lab.server.wait_log(f"node removed: {INSTALLER}", start=start)


def serve_error(lab: Lab, host: str, config: Path) -> str:
    """Run `serve` that must fail at start-up; returns its one `error:` line."""
    result = lab.lan.run(
        host, [sys.executable, "-m", "pypxe_homelab", "--config", str(config), "serve"], cwd=REPO, timeout=30
    )
    assert result.returncode == 1, result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    return line


def test_second_server_says_which_port_is_taken(lab: Lab) -> None:
    line = serve_error(lab, "server", lab.server.config)
    pid = lab.server.proc.pid
    assert "UDP port 67 is in use on eth0 by " in line and "stop it" in line
    assert f"(pid {pid})" in line  # the program holding the port is named


def test_missing_boot_loaders_are_one_line_with_the_fix(lab: Lab, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(base_config(lab.lan, tmp_path / "empty-root"))
    line = serve_error(lab, "client", config)
    assert "boot loaders missing" in line and f"pypxe-homelab --config {config} bootfiles install" in line


def test_interface_without_ipv4_is_one_line_with_the_fix(lab: Lab, tmp_path: Path) -> None:
    made = lab.lan.run("client", ["ip", "link", "add", "noaddr0", "type", "veth", "peer", "name", "noaddr1"])
    assert made.returncode == 0, made.stderr
    lab.lan.run("client", ["ip", "link", "set", "noaddr0", "up"])
    config = tmp_path / "config.yaml"
    config.write_text(base_config(lab.lan, lab.root).replace("interfaces: [eth0]", "interfaces: [noaddr0]"))
    line = serve_error(lab, "client", config)
    assert "'noaddr0' has no IPv4 address" in line and "server.interfaces" in line


def test_a_stalled_http_client_is_not_dropped(lab: Lab) -> None:
    """lpxelinux stops reading for seconds inside a large initrd (zero window): the server must wait."""
    size = 32 * 1024 * 1024  # more than both sides' socket buffers absorb, so the server really blocks
    (lab.root / "httproot" / "boot" / "big-initrd").write_bytes(os.urandom(size))
    code = f"""
        import json, socket, time
        s = socket.create_connection(({lab.server_ip!r}, 12345))
        s.sendall(b"GET /boot/big-initrd HTTP/1.0\\r\\n\\r\\n")
        data = s.recv(8192)
        time.sleep(8)  # the receive window closes; the server's send blocks
        while chunk := s.recv(1 << 20):
            data += chunk
        head, _, body = data.partition(b"\\r\\n\\r\\n")
        print(json.dumps({{"status": head.split(b" ")[1].decode(), "length": len(body)}}))
    """
    start = len(lab.server.log())
    result = client_python(lab.lan, "client", code)
    assert result == {"status": "200", "length": size}
    log = lab.server.wait_log("path=/boot/big-initrd", start=start)
    [done] = [line for line in log[start:].splitlines() if "http.done" in line and "big-initrd" in line]
    assert float(done.split("duration=")[1].split()[0]) >= 7  # it waited out the stall


def test_a_config_reload_does_not_break_a_transfer_in_flight(lab: Lab) -> None:
    big = lab.root / "tftproot" / "big.bin"
    big.write_bytes(os.urandom(8 * 1024 * 1024))
    code = f"""
        import json, sys, time
        sys.path.insert(0, {str(REPO)!r})
        from tests.lab.tftpclient import TftpTestClient
        with TftpTestClient({lab.server_ip!r}) as c:  # each dropped block waits out a 2 s resend
            r = c.get("big.bin", blksize=512, drop={{1000, 4000, 8000, 12000}})
        print(json.dumps(r.as_json()))
    """
    config = lab.server.config
    good = config.read_text()
    start = len(lab.server.log())
    proc = lab.lan.popen(
        "client", [sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, cwd=REPO
    )
    try:
        lab.server.wait_log("tftp.rrq", start=start)
        config.write_text(good.replace("panic=-1", "panic=-1 quiet"))
        assert lab.server.proc is not None
        os.kill(lab.server.proc.pid, signal.SIGHUP)  # reload now: the transfer lasts well under a second
        lab.server.wait_log("node changed: " + KNOWN, start=start, timeout=10)
        out, _ = proc.communicate(timeout=120)
    finally:
        restored = len(lab.server.log())
        config.write_text(good)
        lab.server.wait_log("config reloaded", start=restored)
    result = json.loads(out)
    assert result["ok"] and result["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
    lines = lab.server.log()[start:].splitlines()
    changed = next(i for i, line in enumerate(lines) if "node changed" in line)
    done = next(i for i, line in enumerate(lines) if "tftp.done" in line and "path=big.bin" in line)
    assert changed < done  # the reload happened while the file was still being sent


def test_a_browsers_404_creates_no_machine_and_moves_no_node(lab: Lab) -> None:
    """Only firmware and installer traffic on a node's own paths creates or changes records: /favicon.ico
    from a LAN host is neither a machine seen nor a step of the node whose address it comes from."""
    client_mac = lab.lan.run("client", ["cat", "/sys/class/net/eth0/address"]).stdout.strip()
    # the client's address is tied to the registered node first (as after the node's own network boot)
    lab.pxe("boot", "--profile", "bios-ipxe", "--mac", "52:54:00:a0:00:01", "--client-ip", lab.client_ip)
    before = json.loads(lab.server.cli("status", KNOWN, "--json").stdout)
    for path in ("favicon.ico", "robots.txt", "no/such/page"):
        assert http_request(lab.lan, "client", f"http://{lab.server_ip}:12345/{path}")["status"] == 404
    time.sleep(1.5)  # events are recorded off the reply path
    devices = json.loads(lab.server.cli("probe", "--once", "--json").stdout)
    assert client_mac not in {d.get("mac") for d in devices}
    assert not any(d["device_id"] == "01-" + client_mac.replace(":", "-") for d in devices)
    after = json.loads(lab.server.cli("status", KNOWN, "--json").stdout)
    assert after["state"] == before["state"]
    paths = [str((e.get("detail") or {}).get("path")) for e in after["events"]]
    assert not any(p.endswith(("favicon.ico", "robots.txt", "page")) for p in paths)


INSTALL_TARGET = "01-52-54-00-a0-00-0c"


def test_an_address_based_config_name_never_gets_another_nodes_installer(lab: Lab) -> None:
    """After the node network-boots from an address, another machine asking pxelinux.cfg/default from that
    address gets no installer: only 01-<mac>, which names the machine, does."""
    config = lab.server.config
    good = config.read_text()
    node = (
        f"  {INSTALL_TARGET}:\n    address: {lab.lan.prefix}.72/24\n    os: ubuntu-24.04\n"
        f'    ssh_authorized_keys: ["{TEST_PUBLIC_KEY}"]\n'
    )
    start = len(lab.server.log())
    config.write_text(good + node)
    lab.server.wait_log(f"node added: {INSTALL_TARGET}", start=start)
    try:
        mac = INSTALL_TARGET[3:].replace("-", ":")
        lab.pxe("boot", "--profile", "bios-ipxe", "--mac", mac, "--client-ip", lab.client_ip)
        assert "casper/vmlinuz" in lab.config(INSTALL_TARGET)  # the node itself, by its MAC
        [default] = tftp_get(lab.lan, "client", lab.server_ip, ["pxelinux.cfg/default"])
        assert default["ok"] and "LOCALBOOT" in default["text"]
        assert "casper" not in default["text"] and "autoinstall" not in default["text"]
        assert "only served for pxelinux.cfg/01-<mac>" in default["text"]
    finally:
        start = len(lab.server.log())
        config.write_text(good)
        lab.server.wait_log("config reloaded", start=start)
