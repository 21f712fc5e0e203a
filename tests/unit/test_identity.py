"""Device identity: one home for every pattern, and the ids it accepts and refuses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pypxe_homelab import identity

PACKAGE = Path(identity.__file__).parent


@pytest.mark.parametrize(
    "text,expected",
    [
        ("01-52-54-00-A0-00-01", "01-52-54-00-a0-00-01"),
        ("52:54:00:a0:00:01", "01-52-54-00-a0-00-01"),
        ("52-54-00-a0-00-01", "01-52-54-00-a0-00-01"),
        ("7092246E", "7092246e"),
    ],
)
def test_device_ids_accepted(text: str, expected: str) -> None:
    assert identity.normalise_device_id(text) == expected


def test_a_truncated_device_id_is_not_taken_for_a_mac() -> None:
    with pytest.raises(ValueError, match="missing a byte"):
        identity.normalise_device_id("01-52-54-00-12-34")
    with pytest.raises(ValueError, match="not a device id"):
        identity.normalise_device_id("01-52-54-00-12")


def test_pi_guid_and_uuid_forms() -> None:
    raw = b"\0" + b"RPi4" + (0xC03111).to_bytes(4, "little") + bytes(4) + (0x7092246E).to_bytes(4, "little")
    assert identity.pi_guid(raw) == ("RPi4", "7092246e")
    text = identity.machine_uuid(raw)
    assert identity.pi_model_of_uuid(text) == "pi4"
    assert identity.pi_model_of_uuid("52506935" + "0" * 24) == "pi5"


def test_each_identity_pattern_is_written_once_in_the_package() -> None:
    """No other module spells a Pi OUI, the Pi GUID FourCC, a MAC/device-id regex or a config-name regex."""
    needles = [
        re.escape('"dc:a6:32"'),
        re.escape('b"RPi4"'),
        re.escape("[0-9a-f]{2}(?:-[0-9a-f]{2}){5}"),
        re.escape(r"pxelinux\.cfg/"),
        re.escape("[0-9a-f]{8}"),
    ]
    for path in PACKAGE.rglob("*.py"):
        if path.name == "identity.py":
            continue
        text = path.read_text()
        for needle in needles:
            assert not re.search(needle, text), f"{path.relative_to(PACKAGE)} repeats an identity pattern"
