"""Images: catalogue sanity, adding a local ISO, layout, readiness."""

from __future__ import annotations

import json
import re

import pytest

from pypxe_homelab.assets import images
from pypxe_homelab.assets.download import sha256_file
from pypxe_homelab.errors import UserError
from tests.fixtures.autoinstall.isobuild import build_test_iso


def test_catalogue_entries_are_well_formed():
    catalogue = images.load_catalogue()
    assert {"ubuntu-22.04.1", "ubuntu-22.04", "ubuntu-24.04"} <= set(catalogue)
    assert catalogue["ubuntu-22.04.1"].iso == "ubuntu-22.04.1-live-server-amd64.iso"
    for name, entry in catalogue.items():
        assert images.NAME_PATTERN.match(name)
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
        assert entry.iso.endswith(".img.xz" if entry.is_pi else ".iso")
        assert entry.release.startswith(name.removeprefix("ubuntu-")[:5])
        assert entry.urls and all(
            u.startswith("https://") and u.endswith("/" + entry.iso) for u in entry.urls
        )


def test_add_local_iso_extracts_kernel_and_initrd_byte_equal(tmp_path):
    kernel, initrd = b"\x7fKERNEL" * 5000, b"\x1f\x8bINITRD" * 7000
    iso = build_test_iso(tmp_path / "src" / "ubuntu-test.iso", kernel, initrd)
    root = tmp_path / "httproot"
    info = images.add_image(iso, "lab-22.04", root)
    folder = root / "images" / "lab-22.04"
    assert (folder / "casper" / "vmlinuz").read_bytes() == kernel
    assert (folder / "casper" / "initrd").read_bytes() == initrd
    assert (folder / "ubuntu-test.iso").read_bytes() == iso.read_bytes()
    marker = json.loads((folder / "image.json").read_text())
    assert marker["sha256"] == sha256_file(iso) == info.sha256
    assert marker["release"] == "22.04.1"
    paths = images.image_paths(root, "lab-22.04")
    assert paths == images.ImagePaths(
        name="lab-22.04",
        iso_file="ubuntu-test.iso",
        iso="images/lab-22.04/ubuntu-test.iso",
        kernel="images/lab-22.04/casper/vmlinuz",
        initrd="images/lab-22.04/casper/initrd",
    )
    assert [i.name for i in images.list_images(root)] == ["lab-22.04"]
    assert images.image_release(root, "lab-22.04") == "22.04.1"


def test_image_is_not_ready_without_marker_or_any_file(tmp_path):
    iso = build_test_iso(tmp_path / "a.iso", b"k", b"i")
    root = tmp_path / "httproot"
    images.add_image(iso, "a", root)
    (root / "images/a/casper/initrd").unlink()
    assert images.image_paths(root, "a") is None
    images.add_image(iso, "a", root)  # adding again repairs it
    assert images.image_paths(root, "a") is not None
    (root / "images/a/image.json").unlink()
    assert images.image_paths(root, "a") is None
    assert images.list_images(root) == []


def test_bad_names_and_non_iso_files_are_refused(tmp_path):
    iso = build_test_iso(tmp_path / "a.iso", b"k", b"i")
    for bad in ("Ubuntu", "-x", "a/b", "", "../x"):
        with pytest.raises(UserError, match="not a valid image name"):
            images.add_image(iso, bad, tmp_path / "root")
    junk = tmp_path / "junk.iso"
    junk.write_bytes(b"\0" * 70000)
    with pytest.raises(UserError, match="not a readable ISO"):
        images.add_image(junk, "junk", tmp_path / "root")
    assert not (tmp_path / "root" / "images" / "junk").exists()
    img = tmp_path / "a.img"
    img.write_bytes(iso.read_bytes())
    with pytest.raises(UserError, match="must end in .iso"):
        images.add_image(img, "a", tmp_path / "root")


def test_iso_without_casper_is_refused_and_not_marked_ready(tmp_path):
    import io

    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(rock_ridge="1.09")
    iso.add_fp(io.BytesIO(b"x"), 1, "/README.;1", rr_name="README")
    path = tmp_path / "other.iso"
    iso.write(str(path))
    iso.close()
    with pytest.raises(UserError, match="has no casper/vmlinuz"):
        images.add_image(path, "other", tmp_path / "root")
    assert images.image_paths(tmp_path / "root", "other") is None


def test_fetch_unknown_catalogue_name_is_refused(tmp_path):
    with pytest.raises(UserError, match="no image 'ubuntu-9.04'"):
        images.fetch_image("ubuntu-9.04", tmp_path)
