"""A small Raspberry-Pi-shaped disk image built from Debian's arm64 packages, cached between runs.

Shaped like Ubuntu's preinstalled Pi image: an MBR (sfdisk) with a FAT32 boot partition ``system-boot``
(mkfs.vfat + mtools, no loop mounts) holding placeholder firmware, ``config.txt``, ``cmdline.txt``, a real arm64
kernel (``vmlinuz``) and an initramfs built WITHOUT iSCSI (``initrd.img``), and an ext4 root ``writable``
(``mkfs.ext4 -d``) holding open-iscsi's ``iscsistart`` with its libraries and initramfs-tools scripts, the
kernel's iSCSI modules, busybox as ``/bin/sh`` and a tiny ``/sbin/init``.

The initramfs is initramfs-tools' own ``/init`` and ``scripts/`` (from initramfs-tools-core), busybox,
klibc's ``ipconfig``/``run-init``, util-linux's ``blkid`` and the modules a QEMU ``virt`` machine needs for its
disk, NIC and ext4: it boots as a stock Ubuntu initramfs does and, like it, cannot log into iSCSI by itself.

Built under /var/cache/pypxe-homelab-tests/pi-image-<hash>/ (hash of the package versions and this recipe).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import zstandard

CACHE_ROOT = Path(os.environ.get("PYPXE_TEST_CACHE", "/var/cache/pypxe-homelab-tests"))
RECIPE = 7  # bump when the recipe changes
ROOT_UUID = "6d1c2a50-3b7e-4c1e-9a55-0c0ffee0a001"
BOOT_LABEL = "system-boot"
ROOT_LABEL = "writable"
SERIAL = "7092246e"
MIB = 1 << 20
BOOT_MIB = 96
ROOT_MIB = 192
PACKAGES = (
    "open-iscsi",
    "libc6",
    "libssl3",
    "libkmod2",
    "libopeniscsiusr",
    "libzstd1",
    "liblzma5",
    "busybox-static",
    "klibc-utils",
    "libklibc",
    "util-linux",
    "libblkid1",
)
ARCH_ALL = ("initramfs-tools-core",)
ROOT_MODULES = (
    "iscsi_tcp", "libiscsi_tcp", "libiscsi", "scsi_transport_iscsi", "crc32c_generic", "libcrc32c",
    "sd_mod", "ext4", "virtio_pci", "virtio_net", "virtio_blk",
)  # fmt: skip
INITRAMFS_MODULES = ("virtio_pci", "virtio_net", "virtio_blk", "sd_mod", "ext4", "crc32c_generic")
FIRMWARE = ("bootcode.bin", "start.elf", "fixup.dat", "start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb")
OVERLAYS = ("README", "dwc2.dtbo", "vc4-kms-v3d-pi4.dtbo")
CONFIG_TXT = """[all]
kernel=vmlinuz
cmdline=cmdline.txt
initramfs initrd.img followkernel

[pi4]
max_framebuffers=2
arm_boost=1

[all]
dtparam=audio=on
dtoverlay=dwc2
arm_64bit=1
"""
CMDLINE_TXT = (
    "console=serial0,115200 console=tty1 root=LABEL=writable rootfstype=ext4 rootwait fixrtc quiet splash\n"
)
# The root's /sbin/init for the end-to-end boot: report, leave a mark that survives a reboot, power off.
ROOT_INIT = """#!/bin/sh
mount -t proc proc /proc 2>/dev/null
mount -o remount,rw / 2>/dev/null
if [ -e /var/lib/pypxe-e2e-mark ]; then echo "PI-ROOT: mark found: $(cat /var/lib/pypxe-e2e-mark)"; else echo "PI-ROOT: no mark yet"; fi
echo "written on boot at $(cat /proc/uptime)" > /var/lib/pypxe-e2e-mark
sync
echo "PI-ROOT: root is $(grep ' / ' /proc/mounts)"
poweroff -f
"""
OS_RELEASE = 'PRETTY_NAME="Pi-shaped test image (Debian arm64 packages)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n'
BUSYBOX_APPLETS = (
    "sh", "mount", "umount", "mkdir", "cat", "echo", "ls", "ln", "sleep", "sed", "grep",
    "readlink", "ip", "mknod", "chmod", "rm", "mv", "cp", "dmesg", "poweroff", "sync", "uname", "tr", "cut",
    "head", "tail", "printf", "test", "[", "true", "false", "wc", "env", "date", "find", "touch", "mountpoint",
    "dd", "sort", "expr", "basename", "dirname", "awk", "tsort", "switch_root", "stat", "start-stop-daemon",
)  # fmt: skip


@dataclass(frozen=True)
class PiImage:
    path: Path  # the raw disk image
    kernel_version: str
    boot_files: dict[str, Path]  # relative name in the boot partition → the source file it was made from
    root_uuid: str = ROOT_UUID


def _run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def _ensure_arm64() -> None:
    if "arm64" not in _run("dpkg", "--print-foreign-architectures").stdout.split():
        _run("dpkg", "--add-architecture", "arm64")
        _run("apt-get", "update", "-qq")


def _kernel_package() -> str:
    out = _run("apt-cache", "depends", "linux-image-arm64:arm64").stdout
    for line in out.splitlines():
        word = line.strip().removeprefix("Depends:").strip()
        if word.startswith("linux-image-") and word != "linux-image-arm64:arm64":
            return word.split(":")[0]
    raise RuntimeError("apt-cache cannot resolve linux-image-arm64:arm64 (run apt-get update)")


def _version(spec: str) -> str:
    out = _run("apt-cache", "show", "--no-all-versions", spec).stdout
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Version:"))


def _specs() -> list[str]:
    _ensure_arm64()
    return [f"{p}:arm64" for p in (*PACKAGES, _kernel_package())] + list(ARCH_ALL)


def build_pi_image() -> PiImage:
    """The cached fixture image, built on the first call (a few minutes: downloads ~70 MB of .debs)."""
    specs = _specs()
    versions = {spec: _version(spec) for spec in specs}
    key = hashlib.sha256(
        json.dumps({"recipe": RECIPE, "packages": versions}, sort_keys=True).encode()
    ).hexdigest()
    final = CACHE_ROOT / f"pi-image-{key[:16]}"
    if not (final / "meta.json").is_file():
        CACHE_ROOT.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".pi-image-", dir=CACHE_ROOT))
        try:
            _build(work, specs)
            if final.exists():
                shutil.rmtree(work)
            else:
                os.replace(work, final)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    meta = json.loads((final / "meta.json").read_text())
    return PiImage(
        path=final / "disk.img",
        kernel_version=meta["kernel_version"],
        boot_files={name: final / "boot" / name for name in meta["boot_files"]},
    )


def _extract_debs(work: Path, specs: list[str]) -> dict[str, Path]:
    debs = work / "debs"
    debs.mkdir()
    _run("apt-get", "download", *specs, cwd=debs)
    trees = {}
    for deb in sorted(debs.glob("*.deb")):
        name = deb.name.split("_")[0]
        dest = work / "x" / name
        dest.mkdir(parents=True)
        _run("dpkg-deb", "-x", str(deb), str(dest))
        trees[name] = dest
    return trees


def _merged(rel: str) -> str:
    """Debian 12 packages still ship /bin, /sbin, /lib; the image is merged-/usr like Ubuntu's."""
    first, _, rest = rel.partition("/")
    return f"usr/{first}/{rest}" if first in ("bin", "sbin", "lib") and rest else rel


def _copy_tree(src: Path, dest_root: Path) -> None:
    for path in sorted(src.rglob("*")):
        rel = _merged(path.relative_to(src).as_posix())
        target = dest_root / rel
        if path.is_symlink():
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists() and not target.is_symlink():
                os.symlink(os.readlink(path), target)
        elif path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def _module_closure(modules_dir: Path, names: tuple[str, ...]) -> list[str]:
    table = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        target, _, deps = line.partition(":")
        table[Path(target).name.split(".")[0].replace("-", "_")] = (target, deps.split())
    builtin = {
        Path(x).name.split(".")[0].replace("-", "_")
        for x in (modules_dir / "modules.builtin").read_text().split()
    }
    out: list[str] = []
    for name in names:
        if name in builtin:
            continue
        target, deps = table[name]
        for rel in (*deps[::-1], target):
            if rel not in out:
                out.append(rel)
    return out


def _build(work: Path, specs: list[str]) -> None:
    trees = _extract_debs(work, specs)
    kpkg = next(name for name in trees if name.startswith("linux-image-"))
    ktree = trees[kpkg]
    version = next(p.name for p in (ktree / "lib" / "modules").iterdir())
    full_modules = ktree / "lib" / "modules" / version
    _run("depmod", "-b", str(ktree), version)

    # --- root file system -------------------------------------------------------------------------------
    root = work / "root"
    for d in (
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "etc",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "var/lib",
        "boot/firmware",
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
    for link in ("bin", "sbin", "lib"):
        os.symlink(f"usr/{link}", root / link)
    for name in ("open-iscsi", "libc6", "libssl3", "libkmod2", "libopeniscsiusr", "libzstd1", "liblzma5"):
        _copy_tree(trees[name], root)
    shutil.copy2(trees["busybox-static"] / "bin" / "busybox", root / "usr/bin/busybox")
    os.symlink("busybox", root / "usr/bin/sh")
    (root / "usr/sbin/init").write_text(ROOT_INIT)
    (root / "usr/sbin/init").chmod(0o755)
    (root / "etc/os-release").write_text(OS_RELEASE)
    # static nodes: without udev, initramfs-tools does not move its /dev onto the root
    os.mknod(root / "dev/console", 0o600 | stat.S_IFCHR, os.makedev(5, 1))
    os.mknod(root / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (root / "etc/fstab").write_text(f"LABEL={ROOT_LABEL} / ext4 defaults 0 1\n")
    root_mods = root / "usr/lib/modules" / version
    zstd = zstandard.ZstdCompressor(level=3)
    for rel in _module_closure(full_modules, ROOT_MODULES):  # .ko.zst on the root, as Ubuntu 24.04 has them
        (root_mods / rel).parent.mkdir(parents=True, exist_ok=True)
        (root_mods / f"{rel}.zst").write_bytes(zstd.compress((full_modules / rel).read_bytes()))
    for name in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
        shutil.copy2(full_modules / name, root_mods / name)
    _run("depmod", "-b", str(root), version)
    shutil.copy2(ktree / "boot" / f"vmlinuz-{version}", root / "boot" / f"vmlinuz-{version}")

    # --- initramfs without iSCSI --------------------------------------------------------------------------
    initrd = _initramfs(trees, root, full_modules, version)

    # --- boot partition -------------------------------------------------------------------------------------
    boot = work / "boot"
    (boot / "overlays").mkdir(parents=True)
    for name in FIRMWARE:
        (boot / name).write_bytes(f"placeholder {name} for the pypxe-homelab tests\n".encode() * 8)
    for name in OVERLAYS:
        (boot / "overlays" / name).write_bytes(f"placeholder overlay {name}\n".encode())
    (boot / "config.txt").write_text(CONFIG_TXT)
    (boot / "cmdline.txt").write_text(CMDLINE_TXT)
    shutil.copy2(ktree / "boot" / f"vmlinuz-{version}", boot / "vmlinuz")
    (boot / "initrd.img").write_bytes(initrd)
    names = sorted(p.relative_to(boot).as_posix() for p in boot.rglob("*") if p.is_file())

    # --- the disk --------------------------------------------------------------------------------------------
    fat = work / "boot.fat"
    with open(fat, "wb") as fh:
        fh.truncate(BOOT_MIB * MIB)
    _run("mkfs.vfat", "-F", "32", "-n", BOOT_LABEL.upper(), str(fat))
    _run("mcopy", "-s", "-i", str(fat), *(str(p) for p in sorted(boot.iterdir())), "::/")
    ext = work / "root.ext4"
    with open(ext, "wb") as fh:
        fh.truncate(ROOT_MIB * MIB)
    _run("mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-U", ROOT_UUID, "-d", str(root), str(ext))
    disk = work / "disk.img"
    with open(disk, "wb") as fh:
        fh.truncate((1 + BOOT_MIB + ROOT_MIB) * MIB)
    layout = f"label: dos\nstart=2048, size={BOOT_MIB * 2048}, type=c, bootable\nstart={(1 + BOOT_MIB) * 2048}, type=83\n"
    _run("sfdisk", "-q", str(disk), input=layout)
    with open(disk, "r+b") as out:
        for offset, part in ((MIB, fat), ((1 + BOOT_MIB) * MIB, ext)):
            out.seek(offset)
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, 4 * MIB)
    fat.unlink()
    ext.unlink()
    shutil.rmtree(work / "debs")
    shutil.rmtree(work / "x")
    shutil.rmtree(root)
    (work / "meta.json").write_text(json.dumps({"kernel_version": version, "boot_files": names}, indent=1))


def _initramfs(trees: dict[str, Path], root: Path, full_modules: Path, version: str) -> bytes:
    """An initramfs-tools initramfs (its /init and scripts) without iSCSI, zstd-compressed like Ubuntu's."""
    files: dict[str, tuple[int, bytes]] = {}

    def add(path: str, data: bytes, mode: int = 0o755) -> None:
        files[path] = (mode, data)

    itc = trees["initramfs-tools-core"] / "usr/share/initramfs-tools"
    add("init", (itc / "init").read_bytes())
    for script in sorted((itc / "scripts").rglob("*")):
        if script.is_file():
            add(f"scripts/{script.relative_to(itc / 'scripts').as_posix()}", script.read_bytes())
    for phase in (
        "init-top",
        "init-premount",
        "local-top",
        "local-block",
        "local-premount",
        "local-bottom",
        "init-bottom",
    ):
        add(f"scripts/{phase}/ORDER", b"", 0o644)
    add(
        "conf/initramfs.conf",
        (trees["initramfs-tools-core"] / "etc/initramfs-tools/initramfs.conf").read_bytes(),
        0o644,
    )
    add("conf/arch.conf", b"DPKG_ARCH=arm64\n", 0o644)
    add("conf/modules", "\n".join(INITRAMFS_MODULES).encode() + b"\n", 0o644)
    add("usr/bin/busybox", (trees["busybox-static"] / "bin/busybox").read_bytes())
    klibc = trees["klibc-utils"] / "usr/lib/klibc/bin"
    for tool in ("ipconfig", "run-init", "nfsmount", "resume"):
        add(f"usr/bin/{tool}", (klibc / tool).read_bytes())
    for lib in trees["libklibc"].rglob("klibc-*.so"):
        add(f"usr/lib/{lib.name}", lib.read_bytes())
    add("usr/sbin/blkid", (trees["util-linux"] / "sbin/blkid").read_bytes())
    libc = trees["libc6"]
    add("usr/lib/ld-linux-aarch64.so.1", (libc / "lib/ld-linux-aarch64.so.1").resolve().read_bytes())
    add(
        "usr/lib/aarch64-linux-gnu/libc.so.6",
        (libc / "lib/aarch64-linux-gnu/libc.so.6").resolve().read_bytes(),
    )
    blkid_lib = next((trees["libblkid1"]).rglob("libblkid.so.1*"))
    add("usr/lib/aarch64-linux-gnu/libblkid.so.1", blkid_lib.resolve().read_bytes())
    mods = f"usr/lib/modules/{version}"
    wanted = _module_closure(full_modules, INITRAMFS_MODULES)
    for rel in wanted:
        add(f"{mods}/{rel}", (full_modules / rel).read_bytes(), 0o644)
    dep_lines = [
        line
        for line in (full_modules / "modules.dep").read_text().splitlines()
        if line.split(":")[0] in wanted
    ]
    add(f"{mods}/modules.dep", ("\n".join(dep_lines) + "\n").encode(), 0o644)
    for name in ("modules.builtin", "modules.order"):
        add(f"{mods}/{name}", (full_modules / name).read_bytes(), 0o644)

    links = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib"}
    links |= {f"usr/bin/{applet}": "busybox" for applet in BUSYBOX_APPLETS}
    links |= {f"usr/sbin/{tool}": "../bin/busybox" for tool in ("modprobe", "insmod", "rmmod", "depmod")}
    stage = root.parent / "initramfs"
    for d in ("usr/bin", "usr/sbin", "usr/lib", "etc", "run", "var", "tmp", "root", "proc", "sys", "dev"):
        (stage / d).mkdir(parents=True, exist_ok=True)
    for path, target in links.items():
        os.symlink(target, stage / path)
    for path, (mode, data) in files.items():
        (stage / path).parent.mkdir(parents=True, exist_ok=True)
        (stage / path).write_bytes(data)
        (stage / path).chmod(mode)
    # built the way mkinitramfs builds one: cpio newc of the staged tree, zstd (Ubuntu's default COMPRESS)
    listing = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*"))
    body = _run_bytes(
        ["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=stage, data="\n".join(listing).encode()
    )
    shutil.rmtree(stage)
    return zstandard.ZstdCompressor(level=10).compress(body)


def _run_bytes(cmd: list[str], *, cwd: Path, data: bytes) -> bytes:
    return subprocess.run(cmd, cwd=cwd, input=data, capture_output=True, check=True).stdout
