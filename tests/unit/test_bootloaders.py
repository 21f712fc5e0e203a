"""Boot loaders into the TFTP root: from the distribution packages, or from the pinned upstream tarball."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from pypxe_homelab.assets import bootloaders
from pypxe_homelab.config.model import DEFAULT_LOADERS
from pypxe_homelab.errors import UserError

SIX = [
    "lpxelinux.0",
    "ldlinux.c32",
    "efi64/syslinux.efi",
    "efi64/ldlinux.e64",
    "efi32/syslinux.efi",
    "efi32/ldlinux.e32",
]


def test_manifest_pins_the_upstream_release():
    release = bootloaders.load_manifest()
    assert release.url.startswith("https://") and release.url.endswith(".tar.xz")
    assert len(release.sha256) == 64
    assert sorted(release.files) == sorted(SIX)


def test_required_files_pair_each_loader_with_its_ldlinux():
    assert bootloaders.required_files(DEFAULT_LOADERS) == SIX
    assert bootloaders.required_files({"bios": "pxelinux.0", "efi64": "ipxe.efi", "arm64": ""}) == [
        "pxelinux.0",
        "ldlinux.c32",
        "ipxe.efi",
    ]


def test_missing_bootloaders_lists_what_is_absent(tmp_path):
    assert bootloaders.missing_bootloaders(tmp_path, DEFAULT_LOADERS) == SIX
    (tmp_path / "lpxelinux.0").write_bytes(b"x")
    assert bootloaders.missing_bootloaders(tmp_path, DEFAULT_LOADERS) == SIX[1:]


@pytest.mark.skipif(
    not bootloaders.packages_available(), reason="pxelinux/syslinux-efi/syslinux-common not installed"
)
def test_install_from_packages_copies_the_package_files(tmp_path):
    report = bootloaders.install_bootloaders(tmp_path / "tftp", source="auto", cache=tmp_path / "cache")
    assert report.source == "packages"
    assert "pxelinux" in report.detail
    for rel, src in bootloaders.PACKAGE_FILES.items():
        assert (tmp_path / "tftp" / rel).read_bytes() == src.read_bytes()
    assert bootloaders.missing_bootloaders(tmp_path / "tftp", DEFAULT_LOADERS) == []
    assert not (tmp_path / "cache").exists()  # nothing downloaded


def _fake_release(
    tmp_path, *, drop: str | None = None
) -> tuple[bootloaders.UpstreamRelease, dict[str, bytes]]:
    manifest = bootloaders.load_manifest()
    contents = {inner: f"payload of {inner}".encode() for inner in manifest.files.values()}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for inner, data in contents.items():
            if inner == drop:
                continue
            info = tarfile.TarInfo(f"syslinux-test/{inner}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    (cache / "syslinux-test.tar.xz").write_bytes(buf.getvalue())
    release = bootloaders.UpstreamRelease(
        version="test",
        url="http://127.0.0.1:9/syslinux-test.tar.xz",  # never contacted: the verified tarball is in the cache
        sha256=hashlib.sha256(buf.getvalue()).hexdigest(),
        files=manifest.files,
    )
    return release, contents


def test_install_from_upstream_tarball_extracts_the_six_files(tmp_path):
    release, contents = _fake_release(tmp_path)
    report = bootloaders.install_bootloaders(
        tmp_path / "tftp", source="upstream", cache=tmp_path / "cache", manifest=release, progress=False
    )
    assert report.source == "upstream"
    for rel, inner in release.files.items():
        assert (tmp_path / "tftp" / rel).read_bytes() == contents[inner]
    assert len(report.files) == 6


def test_upstream_tarball_lacking_a_file_is_refused(tmp_path):
    release, _ = _fake_release(tmp_path, drop="efi32/efi/syslinux.efi")
    with pytest.raises(UserError, match="lacks efi32/efi/syslinux.efi"):
        bootloaders.install_bootloaders(
            tmp_path / "tftp", source="upstream", cache=tmp_path / "cache", manifest=release, progress=False
        )
    assert not (tmp_path / "tftp").exists() or not any((tmp_path / "tftp").rglob("*.efi"))


def test_unknown_source_is_refused(tmp_path):
    with pytest.raises(UserError, match="unknown boot-loader source"):
        bootloaders.install_bootloaders(tmp_path, source="apt", cache=tmp_path)  # type: ignore[arg-type]
