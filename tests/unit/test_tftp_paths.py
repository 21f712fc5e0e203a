"""TFTP name rules: normalisation, refusals, device hints and PXELINUX config requests."""

from __future__ import annotations

import pytest

from pypxe_homelab.identity import DeviceHint, device_hint, loader_config_request
from pypxe_homelab.protocol.tftp_paths import MAX_NAME_LENGTH, PathRefused, normalise


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("lpxelinux.0", "lpxelinux.0"),
        ("/grub/grub.cfg", "grub/grub.cfg"),  # GRUB sends absolute names
        ("efi64//boot/isolinux/ldlinux.e64", "efi64/boot/isolinux/ldlinux.e64"),  # syslinux.efi retry path
        ("\\efi64\\syslinux.efi", "efi64/syslinux.efi"),  # Windows-style separators
        ("efi64\\pxelinux.cfg/01-52-54-00-a0-00-01", "efi64/pxelinux.cfg/01-52-54-00-a0-00-01"),
        ("./pxelinux.cfg/./default", "pxelinux.cfg/default"),
        ("///a///b//", "a/b"),
        ("pxelinux.cfg/C0A8010A", "pxelinux.cfg/C0A8010A"),  # case is kept
        ("a..b/c...", "a..b/c..."),  # dots inside names are fine
        ("x" * MAX_NAME_LENGTH, "x" * MAX_NAME_LENGTH),
    ],
)
def test_normalise_cleans_names(raw: str, clean: str) -> None:
    assert normalise(raw) == clean


def test_normalise_is_idempotent() -> None:
    once = normalise("\\\\efi64//./pxelinux.cfg\\default")
    assert normalise(once) == once


@pytest.mark.parametrize(
    ("raw", "reason_part"),
    [
        ("../etc/passwd", ".."),
        ("/../etc/passwd", ".."),
        ("efi64/../../etc/shadow", ".."),
        ("..\\..\\windows\\win.ini", ".."),
        ("efi64/..", ".."),
        ("file\x00.bin", "NUL"),
        ("file\n.bin", "control"),
        ("C:\\boot\\pxeboot.n12", "drive letter"),
        ("c:/boot", "drive letter"),
        ("", "empty"),
        ("/", "empty"),
        ("//./", "empty"),
        ("x" * (MAX_NAME_LENGTH + 1), "longer"),
    ],
)
def test_normalise_refuses_unsafe_names(raw: str, reason_part: str) -> None:
    with pytest.raises(PathRefused) as info:
        normalise(raw)
    assert reason_part in info.value.reason


def test_path_refused_is_a_value_error_with_reason() -> None:
    err = PathRefused("because")
    assert isinstance(err, ValueError)
    assert err.reason == "because" and str(err) == "because"


# ---- device hints -------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "pxelinux.cfg/01-52-54-00-a0-00-01",
        "efi64/pxelinux.cfg/01-52-54-00-a0-00-01",
        "efi32/pxelinux.cfg/01-52-54-00-A0-00-01",
        "m/52-54-00-a0-00-01/efi64/pxelinux.cfg/01-52-54-00-a0-00-01",
    ],
)
def test_hint_pxelinux_mac_any_prefix(path: str) -> None:
    hint = device_hint(path)
    assert hint == DeviceHint("pxelinux-mac", device_id="01-52-54-00-a0-00-01", mac="52:54:00:a0:00:01")


def test_hint_pxelinux_uuid_lower_cased() -> None:
    hint = device_hint("efi64/pxelinux.cfg/2E1B5C8A-0000-0040-8000-525400A00001")
    assert hint == DeviceHint("pxelinux-uuid", uuid="2e1b5c8a-0000-0040-8000-525400a00001")
    assert hint.device_id is None and hint.mac is None


@pytest.mark.parametrize(
    ("path", "ip"),
    [
        ("pxelinux.cfg/C0A8010A", "192.168.1.10"),
        ("efi64/pxelinux.cfg/0AE70088", "10.231.0.136"),
        ("pxelinux.cfg/12345678", "18.52.86.120"),
    ],
)
def test_hint_pxelinux_upper_case_hex_ip(path: str, ip: str) -> None:
    assert device_hint(path) == DeviceHint("pxelinux-ip", ipv4=ip)


@pytest.mark.parametrize(
    "path",
    [
        "pxelinux.cfg/c0a8010a",  # PXELINUX only writes upper-case hex: lower case is some other name
        "pxelinux.cfg/C0A8010",  # shortened search names name no single machine
        "pxelinux.cfg/C",
        "pxelinux.cfg/default",
        "pxelinux.cfg/01-52-54-00-a0-00",  # MAC too short
        "pxelinux.cfg/02-52-54-00-a0-00-01",  # ARP type other than Ethernet
        "lpxelinux.0",
        "ldlinux.c32",
        "efi64/syslinux.efi",
        "bootcode.bin",  # the Pi 3 ROM asks at the root: only the IP is known
        "bootsig.bin",
        "grub/grub.cfg-01-52-54-00-a0-00-01",
        "deadbeefx/start.elf",  # nine characters: not a Pi serial
        "deadbee/start.elf",
    ],
)
def test_no_hint(path: str) -> None:
    assert device_hint(path) is None


@pytest.mark.parametrize("path", ["7092246e/start4.elf", "7092246E/config.txt", "b66c4c16/overlays/x.dtbo"])
def test_hint_pi_serial_prefix(path: str) -> None:
    hint = device_hint(path)
    assert hint is not None and hint.source == "pi-serial"
    assert hint.device_id == path[:8].lower()
    assert hint.mac is None


def test_hint_pi_mac_prefix() -> None:
    hint = device_hint("dc-a6-32-01-36-C2/start4.elf")
    assert hint == DeviceHint("pi-mac", device_id="01-dc-a6-32-01-36-c2", mac="dc:a6:32:01:36:c2")


def test_pxelinux_mac_beats_pi_serial_prefix() -> None:
    hint = device_hint("deadbeef/pxelinux.cfg/01-52-54-00-a0-00-01")
    assert hint is not None and hint.source == "pxelinux-mac"


def test_hint_as_dict_drops_empty_fields() -> None:
    assert device_hint("pxelinux.cfg/C0A8010A").as_dict() == {"source": "pxelinux-ip", "ipv4": "192.168.1.10"}
    assert device_hint("7092246e/start4.elf").as_dict() == {"source": "pi-serial", "device_id": "7092246e"}


# ---- PXELINUX config requests -----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("pxelinux.cfg/default", ("bios", "default")),
        ("pxelinux.cfg/01-52-54-00-a0-00-01", ("bios", "01-52-54-00-a0-00-01")),
        ("pxelinux.cfg/C0A8010A", ("bios", "C0A8010A")),
        ("efi64/pxelinux.cfg/01-52-54-00-a0-00-01", ("efi64", "01-52-54-00-a0-00-01")),
        ("efi32/pxelinux.cfg/default", ("efi32", "default")),
        ("EFI64/PXELINUX.CFG/default", ("efi64", "default")),
        (
            "efi64/pxelinux.cfg/2e1b5c8a-0000-0040-8000-525400a00001",
            ("efi64", "2e1b5c8a-0000-0040-8000-525400a00001"),
        ),
    ],
)
def test_loader_config_request(path: str, expected: tuple[str, str]) -> None:
    assert loader_config_request(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "pxelinux.cfg",
        "pxelinux.cfg/",
        "pxelinux.cfg/sub/default",
        "efi128/pxelinux.cfg/default",
        "boot/pxelinux.cfg/default",
        "lpxelinux.0",
        "efi64/ldlinux.e64",
        "grub/grub.cfg",
    ],
)
def test_not_a_loader_config_request(path: str) -> None:
    assert loader_config_request(path) is None
