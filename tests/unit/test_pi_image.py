"""Raspberry Pi images: recognition, bad input, the extracted boot tree and the served initramfs, read back
the way the kernel unpacks it. Uses the Pi-shaped fixture image built from Debian's arm64 packages."""

from __future__ import annotations

import functools
import hashlib
import http.server
import lzma
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import zstandard

from pypxe_homelab.assets import pi_images
from pypxe_homelab.assets.disk_image import FatReader, RootFs, mbr_partitions
from pypxe_homelab.assets.images import CatalogueEntry
from pypxe_homelab.assets.initramfs import Tree, segments
from pypxe_homelab.errors import UserError
from tests.lab.pi_image import CMDLINE_TXT, CONFIG_TXT, ROOT_UUID, PiImage, build_pi_image

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the Pi fixture is built with apt-get download (root)"
)


@pytest.fixture(scope="module")
def fixture_image() -> PiImage:
    return build_pi_image()


@pytest.fixture(scope="module")
def added(
    fixture_image: PiImage, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, pi_images.PiImageInfo]:
    root = tmp_path_factory.mktemp("data")
    info = pi_images.add_pi_image(fixture_image.path, "pi-test", root / "httproot")
    return root, info


def test_add_recognises_the_pi_image(fixture_image: PiImage, added) -> None:
    root, info = added
    assert info.kind == "pi" and info.arch == "arm64"
    assert (info.boot_partition, info.root_partition) == (1, 2)
    assert info.root_uuid == ROOT_UUID and info.root_label == "writable"
    assert (info.kernel, info.initramfs) == ("vmlinuz", "initrd.img")
    assert info.size == fixture_image.path.stat().st_size
    assert (
        pi_images.pi_image_file(root / "httproot", "pi-test").read_bytes() == fixture_image.path.read_bytes()
    )
    assert [i.name for i in pi_images.list_pi_images(root / "httproot")] == ["pi-test"]


def test_fat_reader_shows_linux_names_and_bytes(fixture_image: PiImage) -> None:
    with open(fixture_image.path, "rb") as fh:
        boot = mbr_partitions(fh)[0]
    with FatReader(fixture_image.path, boot) as fat:
        files = fat.read_all()
    assert set(files) == set(fixture_image.boot_files)  # lower-case 8.3 names keep their case
    for name, source in fixture_image.boot_files.items():
        assert files[name] == source.read_bytes(), name
    assert files["config.txt"].decode() == CONFIG_TXT and files["cmdline.txt"].decode() == CMDLINE_TXT


def test_boot_tree_is_extracted_once_and_byte_equal(fixture_image: PiImage, added) -> None:
    root, _info = added
    tree = pi_images.boot_tree(root / "httproot", root / "cache", "pi-test")
    assert tree.files == frozenset(fixture_image.boot_files)
    for name, source in fixture_image.boot_files.items():
        assert tree.path(name).read_bytes() == source.read_bytes()
    again = pi_images.boot_tree(root / "httproot", root / "cache", "pi-test")
    assert again.folder == tree.folder
    assert [p.name for p in (root / "cache" / "pi-boot").iterdir()] == [tree.folder.parent.name]


def test_served_initramfs_holds_the_iscsi_login(fixture_image: PiImage, added) -> None:
    root, _info = added
    tree = pi_images.boot_tree(root / "httproot", root / "cache", "pi-test")
    stock = fixture_image.boot_files["initrd.img"].read_bytes()
    served = tree.served_initramfs.read_bytes()
    assert served.startswith(stock)  # the image's own archive first, unchanged
    parts = segments(served)
    assert [p.compression for p in parts] == ["zstd", "none"]
    stock_tree, view = Tree.of(stock), Tree.of(served)
    assert stock_tree.get("sbin/iscsistart") is None  # the image's initramfs cannot log in
    with open(fixture_image.path, "rb") as fh:
        rootfs_part = mbr_partitions(fh)[1]
    with RootFs(fixture_image.path, rootfs_part) as rootfs:
        iscsistart = rootfs.read("/sbin/iscsistart")
        assert view.get("sbin/iscsistart").data == iscsistart
        for lib in ("libopeniscsiusr.so.0.2.0", "libkmod.so.2", "libcrypto.so.3", "libc.so.6"):
            found = view.get(f"lib/aarch64-linux-gnu/{lib}")
            assert found is not None and found.data == rootfs.read(f"/lib/aarch64-linux-gnu/{lib}"), lib
        assert view.get("lib/ld-linux-aarch64.so.1").data == rootfs.read("/lib/ld-linux-aarch64.so.1")
        version = fixture_image.kernel_version
        mods = f"lib/modules/{version}"
        dep = view.get(f"{mods}/modules.dep").data.decode()
        for module in ("iscsi_tcp", "libiscsi_tcp", "libiscsi", "scsi_transport_iscsi"):
            line = next(x for x in dep.splitlines() if x.split(":")[0].endswith(f"/{module}.ko"))
            for rel in [line.split(":")[0], *line.split(":")[1].split()]:  # uncompressed, as mkinitramfs does
                on_root = (
                    zstandard.ZstdDecompressor().decompressobj().decompress(rootfs.read(f"/{mods}/{rel}.zst"))
                )
                assert view.get(f"{mods}/{rel}").data == on_root, rel
        for line in dep.splitlines():  # the indexes name exactly the modules the initramfs holds
            assert view.get(f"{mods}/{line.split(':')[0]}") is not None, line
        assert "kernel/drivers/net/virtio_net.ko:" in dep  # a stock module stays loadable
        assert view.get(f"{mods}/modules.dep.bin") is not None
        script = view.get("scripts/local-top/iscsi").data
        assert script == rootfs.read("/usr/share/initramfs-tools/scripts/local-top/iscsi")
    assert b"ISCSI_TARGET_NAME" in script and b"iscsistart -i $ISCSI_INITIATOR" in script
    order = view.get("scripts/local-top/ORDER").data.decode()
    assert '/scripts/local-top/iscsi "$@"' in order
    assert view.get("init").data == stock_tree.get("init").data  # the stock initramfs is all still there
    assert view.get("usr/bin/ipconfig") is not None and view.get("bin/sh").is_file


@pytest.fixture(scope="module")
def image_xz(fixture_image: PiImage, tmp_path_factory: pytest.TempPathFactory) -> Path:
    xz = tmp_path_factory.mktemp("xz") / "small-pi.img.xz"
    with xz.open("wb") as out:
        subprocess.run(["xz", "-0", "-T2", "-c", str(fixture_image.path)], stdout=out, check=True)
    return xz


def test_image_xz_is_decompressed(fixture_image: PiImage, image_xz: Path, tmp_path: Path) -> None:
    xz = image_xz
    info = pi_images.add_pi_image(xz, "from-xz", tmp_path / "httproot")
    raw = pi_images.pi_image_file(tmp_path / "httproot", "from-xz")
    assert raw.name == "small-pi.img" and info.arch == "arm64"
    assert (
        hashlib.sha256(raw.read_bytes()).digest() == hashlib.sha256(fixture_image.path.read_bytes()).digest()
    )


def test_corrupt_xz_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    good = lzma.compress(os.urandom(300_000), format=lzma.FORMAT_XZ)
    bad = tmp_path / "broken.img.xz"
    bad.write_bytes(good[: len(good) // 2] + b"\x00" * 64 + good[len(good) // 2 :])
    with pytest.raises(UserError) as err:
        pi_images.add_pi_image(bad, "broken", tmp_path / "httproot")
    assert "\n" not in str(err.value) and "xz" in str(err.value)
    assert not (tmp_path / "httproot" / "images" / "broken").exists()


def test_truncated_xz_says_so(tmp_path: Path) -> None:
    good = lzma.compress(os.urandom(300_000), format=lzma.FORMAT_XZ)
    cut = tmp_path / "cut.img.xz"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(UserError, match="ends early"):
        pi_images.add_pi_image(cut, "cut", tmp_path / "httproot")
    assert not (tmp_path / "httproot" / "images" / "cut").exists()


def test_image_without_boot_partition_is_refused(tmp_path: Path) -> None:
    ext = tmp_path / "root.ext4"
    with open(ext, "wb") as fh:
        fh.truncate(16 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(ext)], check=True)
    disk = tmp_path / "no-boot.img"
    with open(disk, "wb") as fh:
        fh.truncate(18 << 20)
    subprocess.run(
        ["sfdisk", "-q", str(disk)], input="label: dos\nstart=2048, type=83\n", text=True, check=True
    )
    with open(disk, "r+b") as out, open(ext, "rb") as src:
        out.seek(1 << 20)
        shutil.copyfileobj(src, out)
    with pytest.raises(UserError) as err:
        pi_images.add_pi_image(disk, "no-boot", tmp_path / "httproot")
    message = str(err.value)
    assert "\n" not in message and "no Raspberry Pi boot partition" in message and "start4.elf" in message
    assert not (tmp_path / "httproot" / "images" / "no-boot").exists()


def test_a_file_that_is_no_disk_image_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(UserError, match="no MBR partition table"):
        pi_images.add_pi_image(junk, "junk", tmp_path / "httproot")


@pytest.fixture
def http_dir(image_xz: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(image_xz.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _entry(url: str, sha256: str) -> CatalogueEntry:
    return CatalogueEntry(
        name="pi-fetched", description="test", release="12", iso="small-pi.img.xz", sha256=sha256,
        urls=(f"{url}/small-pi.img.xz",), kind="pi", arch="arm64",
    )  # fmt: skip


def test_fetch_downloads_checks_and_decompresses(
    fixture_image: PiImage, image_xz: Path, http_dir: str, tmp_path: Path
) -> None:
    sha = hashlib.sha256(image_xz.read_bytes()).hexdigest()
    info = pi_images.fetch_pi_image(_entry(http_dir, sha), tmp_path / "httproot", progress=False)
    folder = tmp_path / "httproot" / "images" / "pi-fetched"
    assert info.sha256 == sha and sorted(p.name for p in folder.iterdir()) == [
        "pi-image.json",
        "small-pi.img",
    ]
    assert (folder / "small-pi.img").read_bytes() == fixture_image.path.read_bytes()
    again = pi_images.fetch_pi_image(_entry(http_dir, sha), tmp_path / "httproot", progress=False)
    assert again == info  # ready: nothing fetched twice


def test_fetch_with_a_wrong_checksum_leaves_nothing(image_xz: Path, http_dir: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="sha256 is"):
        pi_images.fetch_pi_image(_entry(http_dir, "0" * 64), tmp_path / "httproot", progress=False)
    assert not (tmp_path / "httproot" / "images" / "pi-fetched").exists()
