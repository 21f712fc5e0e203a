"""The wheel holds everything the program reads at run time, installs into a fresh venv, and runs there;
the systemd unit it ships passes systemd's own checks."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.lab.install import Installed

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
MAX_EXPOSURE = 3.0  # systemd-analyze security: "OK" or better


def test_the_wheel_holds_templates_schemas_catalogue_static_files_and_the_unit(
    installed_program: Installed,
) -> None:
    names = set(zipfile.ZipFile(installed_program.wheel).namelist())
    for needed in (
        "pypxe_homelab/boot/templates/user-data.j2",
        "pypxe_homelab/boot/templates/pxelinux-boot.cfg.j2",
        "pypxe_homelab/assets/schemas/autoinstall-schema.json",
        "pypxe_homelab/assets/catalogue.yaml",
        "pypxe_homelab/assets/bootfiles-manifest.yaml",
        "pypxe_homelab/config/default.yaml",
        "pypxe_homelab/web/static/index.html",
        "pypxe_homelab/deploy/pypxe-homelab.service.j2",
    ):
        assert needed in names, f"{needed} missing from {installed_program.wheel.name}"
    installed = installed_program.site_packages() / "pypxe_homelab" / "deploy" / "pypxe-homelab.service.j2"
    assert installed.is_file()


def test_the_installed_program_runs_from_its_venv(installed_program: Installed, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(installed_program.command), "--help"], capture_output=True, text=True, cwd="/", timeout=60
    )
    assert result.returncode == 0, result.stderr
    for command in ("serve", "add", "status", "probe", "install-service", "health"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.M), result.stdout
    # it reads its own package data, not the clone's
    config = tmp_path / "config.yaml"
    config.write_text("server:\n  interfaces: [lo]\n")
    unit = subprocess.run(
        [str(installed_program.command), "--config", str(config), "install-service", "--print"],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=60,
    )
    assert unit.returncode == 0, unit.stderr
    assert f"ExecStart={installed_program.command} --config {config} serve" in unit.stdout


@pytest.fixture
def unit_file(installed_program: Installed, tmp_path: Path) -> Path:
    """The unit `install-service` writes, for the default data root and config."""
    result = subprocess.run(
        [
            str(installed_program.command),
            "--config",
            "/etc/pypxe-homelab/config.yaml",
            "install-service",
            "--print",
        ],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    path = tmp_path / "pypxe-homelab.service"
    path.write_text(result.stdout)
    return path


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="needs systemd-analyze (the systemd package)")
def test_the_unit_passes_systemd_analyze_verify(unit_file: Path) -> None:
    text = unit_file.read_text()
    for line in (
        "User=pypxe-homelab",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "StateDirectory=pypxe-homelab",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_INET AF_UNIX AF_NETLINK",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "Type=notify",
    ):
        assert line in text.splitlines(), line
    result = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", str(unit_file)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert unit_file.name not in result.stderr, result.stderr  # no warning about our unit


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="needs systemd-analyze (the systemd package)")
def test_the_unit_rates_ok_in_systemd_analyze_security(unit_file: Path) -> None:
    result = subprocess.run(
        [str(SYSTEMD_ANALYZE), "security", "--offline=true", "--no-pager", str(unit_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_install_service_creates_the_user_and_writes_the_unit(
    installed_program: Installed, tmp_path: Path
) -> None:
    """Run as root in a private mount namespace whose /etc is a copy: the host's accounts stay untouched."""
    units = tmp_path / "units"
    existed = subprocess.run(["getent", "passwd", "pypxe-homelab"], capture_output=True).returncode == 0
    script = (
        f"cp -a /etc {tmp_path}/ && {{ sed -i '/^pypxe-homelab:/d' {tmp_path}/etc/passwd {tmp_path}/etc/group {tmp_path}/etc/shadow {tmp_path}/etc/gshadow 2>/dev/null || true; }} && mount --bind {tmp_path}/etc /etc && "
        f"{installed_program.command} --config /etc/pypxe-homelab/config.yaml install-service --unit-dir {units} && "
        "id -u pypxe-homelab && getent passwd pypxe-homelab"
    )
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"wrote {units}/pypxe-homelab.service (runs as pypxe-homelab)" in result.stdout
    uid_line, passwd = result.stdout.strip().splitlines()[-2:]
    assert int(uid_line) < 1000 and passwd.endswith(":/var/lib/pypxe-homelab:/usr/sbin/nologin")
    assert "User=pypxe-homelab" in (units / "pypxe-homelab.service").read_text()
    host_has_it = subprocess.run(["getent", "passwd", "pypxe-homelab"], capture_output=True).returncode == 0
    assert host_has_it == existed  # the host's accounts were not touched
