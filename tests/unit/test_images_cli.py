"""`images add` / `images list` / `bootfiles status` through the real CLI."""

from __future__ import annotations

from click.testing import CliRunner

from pypxe_homelab.cli import main
from tests.fixtures.autoinstall.isobuild import build_test_iso


def test_images_add_and_list(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"paths:\n  root: {tmp_path / 'data'}\n")
    iso = build_test_iso(tmp_path / "My-Ubuntu.iso", b"kernel", b"initrd")
    runner = CliRunner()
    added = runner.invoke(main, ["-c", str(config), "images", "add", str(iso), "--name", "lab-22.04"])
    assert added.exit_code == 0, added.output
    assert "lab-22.04: ready (My-Ubuntu.iso, Ubuntu 22.04.1" in added.output
    assert (tmp_path / "data/httproot/images/lab-22.04/casper/vmlinuz").read_bytes() == b"kernel"
    listed = runner.invoke(main, ["-c", str(config), "images", "list"])
    assert listed.exit_code == 0, listed.output
    assert "ubuntu-24.04" in listed.output and "not fetched" in listed.output
    assert "lab-22.04" in listed.output
    bad = runner.invoke(main, ["-c", str(config), "images", "add", str(iso), "--name", "Bad Name"])
    assert bad.exit_code == 1 and "not a valid image name" in bad.output


def test_bootfiles_status_reports_missing_files(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"paths:\n  root: {tmp_path / 'data'}\n")
    result = CliRunner().invoke(main, ["-c", str(config), "bootfiles", "status"])
    assert result.exit_code == 1
    assert "lpxelinux.0" in result.output and "MISSING" in result.output
