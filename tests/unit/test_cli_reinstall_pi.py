"""`reinstall <serial>` of a Raspberry Pi: asks, then makes its disk again from its image."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pypxe_homelab.cli import main
from pypxe_homelab.web.client import ApiClient, ServerNotRunning

SERIAL = "7092246e"


@pytest.fixture
def pi_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    def not_running(self: ApiClient, device_id: str) -> int:
        raise ServerNotRunning(device_id)

    monkeypatch.setattr(ApiClient, "reinstall", not_running)
    root = tmp_path / "root"
    image = root / "httproot" / "images" / "pi" / "pi.img"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"IMAGE" * 1000)
    disk = root / "iscsiroot" / f"{SERIAL}.img"
    disk.parent.mkdir(parents=True)
    disk.write_bytes(b"used disk")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"paths:\n  root: {root}\ndefaults:\n  pi_os: pi\nnodes:\n  {SERIAL}:\n    address: 10.0.0.60/24\n"
    )
    return config, image, disk


def test_reinstall_asks_and_a_no_keeps_the_disk(pi_setup: tuple[Path, Path, Path]) -> None:
    config, _image, disk = pi_setup
    result = CliRunner().invoke(main, ["--config", str(config), "reinstall", SERIAL], input="n\n")
    assert result.exit_code != 0
    assert f"This erases the disk of {SERIAL} ({disk})" in result.output
    assert disk.read_bytes() == b"used disk"


def test_reinstall_yes_makes_the_disk_again(pi_setup: tuple[Path, Path, Path]) -> None:
    config, image, disk = pi_setup
    result = CliRunner().invoke(main, ["--config", str(config), "reinstall", SERIAL, "--yes"])
    assert result.exit_code == 0, result.output
    assert f"{SERIAL}: disk made again (install generation 2)" in result.output
    assert disk.read_bytes() == image.read_bytes()


def test_reinstall_of_a_pi_without_its_image_is_one_line(pi_setup: tuple[Path, Path, Path]) -> None:
    config, image, disk = pi_setup
    image.unlink()
    result = CliRunner().invoke(main, ["--config", str(config), "reinstall", SERIAL, "--yes"])
    assert result.exit_code == 1
    assert "its os 'pi' is not a ready Pi image" in result.output
    assert disk.read_bytes() == b"used disk"
