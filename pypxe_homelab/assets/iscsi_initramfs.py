"""The archive that lets a Pi image's own initramfs log into its iSCSI root disk.

A preinstalled Ubuntu image builds its initramfs without open-iscsi's parts (they are added only when
``/etc/iscsi/iscsi.initramfs`` exists). The server appends one more cpio archive holding, all read out of the
image's root file system:

* ``/sbin/iscsistart`` and the shared libraries it needs (ELF ``DT_NEEDED``, read with pyelftools);
* the ``iscsi_tcp`` kernel modules of the image's kernel with their dependencies, uncompressed, and
  ``modules.*`` index files that ``depmod`` makes for the stock modules plus these (so ``modprobe`` resolves
  both);
* open-iscsi's initramfs-tools scripts ``local-top/iscsi`` and ``local-bottom/iscsi``, and the ``ORDER``
  files initramfs-tools runs them from (the stock ones, with the iSCSI lines added).

The login itself takes ``ISCSI_INITIATOR``, ``ISCSI_TARGET_NAME``, ``ISCSI_TARGET_IP`` and
``ISCSI_TARGET_PORT`` from the kernel command line: the kernel hands unknown ``NAME=value`` words to init as
environment variables, and the script reads them from there.
"""

from __future__ import annotations

import gzip
import io
import lzma
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import zstandard

from pypxe_homelab.assets.disk_image import RootFs
from pypxe_homelab.assets.initramfs import InitramfsError, Member, Tree, append_archive, newc_archive

ISCSISTART = ("/usr/sbin/iscsistart", "/sbin/iscsistart")
SCRIPT_DIR = "/usr/share/initramfs-tools/scripts"
SCRIPTS = ("local-top/iscsi", "local-bottom/iscsi")
ISCSI_MODULES = ("iscsi_tcp", "libiscsi_tcp", "libiscsi", "scsi_transport_iscsi")
OPTIONAL_MODULES = ("crc32c", "libcrc32c", "crc32c_generic")
MODULE_SUFFIXES = (".ko", ".ko.zst", ".ko.xz", ".ko.gz")
LIB_DIRS = ("/lib/{triplet}", "/usr/lib/{triplet}", "/lib", "/usr/lib")
TRIPLETS = {
    "EM_AARCH64": "aarch64-linux-gnu",
    "EM_ARM": "arm-linux-gnueabihf",
    "EM_X86_64": "x86_64-linux-gnu",
}
ARCHES = {"EM_AARCH64": "arm64", "EM_ARM": "armhf", "EM_X86_64": "amd64"}

DEPMOD_PATHS = ("/usr/sbin/depmod", "/sbin/depmod")

_EXEC = stat.S_IFREG | 0o755
_FILE = stat.S_IFREG | 0o644
_DIR = stat.S_IFDIR | 0o755


@dataclass(frozen=True)
class IscsiAddon:
    """What was added, for ``render`` and the tests."""

    kernel_version: str
    archive: bytes
    binaries: tuple[str, ...]  # paths in the initramfs
    modules: tuple[str, ...]
    scripts: tuple[str, ...]


def elf_machine(data: bytes) -> str | None:
    """pyelftools' ``e_machine`` name (``EM_AARCH64``…) of an ELF file, or None if it is not one."""
    from elftools.common.exceptions import ELFError  # on use: the server starts without pyelftools
    from elftools.elf.elffile import ELFFile

    try:
        return str(ELFFile(io.BytesIO(data)).header["e_machine"])
    except ELFError:
        return None


def elf_arch(data: bytes) -> str | None:
    """Debian architecture name of an ELF file (``arm64``, ``armhf``, ``amd64``), or None."""
    machine = elf_machine(data)
    return ARCHES.get(machine or "")


def _dynamic(data: bytes) -> tuple[str | None, list[str], list[str]]:
    """(interpreter, DT_NEEDED names, DT_RUNPATH/DT_RPATH directories) of an ELF file."""
    from elftools.elf.dynamic import DynamicSegment
    from elftools.elf.elffile import ELFFile
    from elftools.elf.segments import InterpSegment

    elf = ELFFile(io.BytesIO(data))
    interp, needed, runpath = None, [], []
    for segment in elf.iter_segments():
        if isinstance(segment, InterpSegment):
            interp = segment.get_interp_name()
        elif isinstance(segment, DynamicSegment):
            for tag in segment.iter_tags():
                if tag.entry.d_tag == "DT_NEEDED":
                    needed.append(str(tag.needed))  # type: ignore[attr-defined]
                elif tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
                    runpath += [
                        p for p in str(getattr(tag, "runpath", getattr(tag, "rpath", ""))).split(":") if p
                    ]
    return interp, needed, runpath


def executable_closure(root: RootFs, path: str) -> dict[str, bytes]:
    """``path`` and every library it loads (transitively), by the path the dynamic loader looks them up at."""
    data = root.read(path)
    machine = elf_machine(data)
    if machine is None:
        raise InitramfsError(f"{path} in the image is not an ELF executable")
    triplet = TRIPLETS.get(machine, "")
    out: dict[str, bytes] = {path: data}
    queue = [path]
    while queue:
        current = queue.pop()
        interp, needed, runpath = _dynamic(out[current])
        if interp and interp not in out:
            out[interp] = root.read(interp)
        dirs = [*runpath, *(d.format(triplet=triplet) for d in LIB_DIRS)]
        for soname in needed:
            if any(PurePosixPath(p).name == soname for p in out):
                continue
            found = next((f"{d}/{soname}" for d in dirs if root.is_file(f"{d}/{soname}")), None)
            if found is None:
                raise InitramfsError(f"library {soname} needed by {current} is not in the image")
            out[found] = root.read(found)
            queue.append(found)
    return out


def kernel_version(root: RootFs, stock: Tree, kernel: bytes | None) -> str:
    """The version of the kernel the initramfs belongs to: its own ``lib/modules/<v>``, else the
    ``/boot/vmlinuz-<v>`` equal to the boot partition's kernel, else the only ``/lib/modules/<v>``."""
    if stock.get("lib/modules") is not None:
        versions = [v for v in stock.listdir("lib/modules") if root.exists(f"/lib/modules/{v}/modules.dep")]
        if len(versions) == 1:
            return versions[0]
    installed = root.listdir("/lib/modules") if root.exists("/lib/modules") else []
    if kernel is not None and root.exists("/boot"):
        for name in root.listdir("/boot"):
            if (
                name.startswith("vmlinuz-")
                and root.is_file(f"/boot/{name}")
                and root.read(f"/boot/{name}") == kernel
            ):
                return name.removeprefix("vmlinuz-")
    with_dep = [v for v in installed if root.exists(f"/lib/modules/{v}/modules.dep")]
    if len(with_dep) == 1:
        return with_dep[0]
    raise InitramfsError(
        f"cannot tell which kernel of the image the initramfs belongs to (modules for: {', '.join(installed) or 'none'})"
    )


def _module_deps(dep_text: str) -> dict[str, tuple[str, list[str]]]:
    """modules.dep → {module name: (relative path, [relative paths of its dependencies])}."""
    table: dict[str, tuple[str, list[str]]] = {}
    for line in dep_text.splitlines():
        target, sep, rest = line.partition(":")
        if not sep:
            continue
        name = PurePosixPath(target).name
        for suffix in MODULE_SUFFIXES:
            if name.endswith(suffix):
                name = name.removesuffix(suffix)
                break
        table[name.replace("-", "_")] = (target, rest.split())
    return table


def module_files(root: RootFs, version: str) -> list[str]:
    """Relative paths (under ``lib/modules/<v>``) of the iSCSI modules and everything they depend on."""
    base = f"/lib/modules/{version}"
    table = _module_deps(root.read(f"{base}/modules.dep").decode("utf-8", "replace"))
    builtin_text = (
        root.read(f"{base}/modules.builtin").decode() if root.exists(f"{base}/modules.builtin") else ""
    )
    builtin = {PurePosixPath(x).name.split(".")[0].replace("-", "_") for x in builtin_text.split()}
    wanted: list[str] = []
    for name in ISCSI_MODULES:
        if name in table:
            wanted.append(name)
        elif name not in builtin:
            raise InitramfsError(
                f"the image's kernel {version} has no {name} module; install its linux-modules-extra package "
                "in the image"
            )
    wanted += [name for name in OPTIONAL_MODULES if name in table]
    files: list[str] = []
    for name in wanted:
        target, deps = table[name]
        for rel in [target, *deps]:
            if rel not in files:
                files.append(rel)
    return files


def _plain_ko(rel: str) -> str:
    for suffix in MODULE_SUFFIXES[1:]:
        if rel.endswith(suffix):
            return rel.removesuffix(suffix) + ".ko"
    return rel


def decompress_module(rel: str, data: bytes) -> bytes:
    """A module as the initramfs holds it: uncompressed ``.ko`` (as mkinitramfs does it)."""
    try:
        if rel.endswith(".ko.zst"):
            return zstandard.ZstdDecompressor().decompressobj().decompress(data)
        if rel.endswith(".ko.xz"):
            return lzma.decompress(data)
        if rel.endswith(".ko.gz"):
            return gzip.decompress(data)
    except (zstandard.ZstdError, lzma.LZMAError, OSError, EOFError) as exc:
        raise InitramfsError(f"module {rel} of the image is damaged ({exc})") from None
    return data


def module_indexes(root: RootFs, stock: Tree, version: str, added: dict[str, bytes]) -> dict[str, bytes]:
    """``modules.dep``, ``modules.dep.bin``, ``modules.alias``… for the modules the served initramfs holds (the
    stock ones and the added ones), made by kmod's ``depmod`` over a scratch copy of that module tree, as
    mkinitramfs makes them. The stock indexes would not know the added modules; the root's would name every
    module by the file name it has on the root (``.ko.zst``), not the one in the initramfs."""
    depmod = shutil.which("depmod") or next((p for p in DEPMOD_PATHS if Path(p).is_file()), None)
    if depmod is None:
        raise InitramfsError("depmod is not installed; install kmod (it builds the initramfs module indexes)")
    base = f"lib/modules/{version}"
    with tempfile.TemporaryDirectory(prefix="pypxe-depmod-") as scratch:
        tree = Path(scratch) / base
        tree.mkdir(parents=True)
        stock_base = stock.resolve(base)
        prefix = stock_base + "/"
        for name, node in stock.nodes.items():
            if node.is_file and name.startswith(prefix) and name.endswith(MODULE_SUFFIXES):
                dest = tree / name[len(prefix) :]
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(node.data)
        for rel, data in added.items():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).write_bytes(data)
        for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
            if root.is_file(f"/{base}/{name}"):
                (tree / name).write_bytes(root.read(f"/{base}/{name}"))
        result = subprocess.run([depmod, "-b", scratch, version], capture_output=True, text=True)
        if result.returncode != 0:
            raise InitramfsError(
                f"depmod failed for kernel {version}: {result.stderr.strip().splitlines()[-1:]}"
            )
        return {p.name: p.read_bytes() for p in sorted(tree.glob("modules.*")) if p.is_file()}


def _order(stock: Tree, phase: str) -> bytes:
    """``scripts/<phase>/ORDER``: the stock lines, then the iSCSI script (initramfs-tools' own format)."""
    current = stock.get(f"scripts/{phase}/ORDER")
    text = current.data.decode("utf-8", "replace") if current is not None and current.is_file else ""
    line = f'/scripts/{phase}/iscsi "$@"'
    if line not in text:
        if text and not text.endswith("\n"):
            text += "\n"
        text += f"{line}\n[ -e /conf/param.conf ] && . /conf/param.conf\n"
    return text.encode()


def build_addon(root: RootFs, stock_initramfs: bytes, kernel: bytes | None = None) -> IscsiAddon:
    """The archive to append to ``stock_initramfs`` (which must not log in by itself) for image ``root``."""
    stock = Tree.of(stock_initramfs)
    source = next((p for p in ISCSISTART if root.is_file(p)), None)
    if source is None:
        raise InitramfsError("the image has no iscsistart; install open-iscsi in the image")
    version = kernel_version(root, stock, kernel)
    files: dict[str, tuple[int, bytes]] = {}
    binaries = []
    for path, data in executable_closure(root, source).items():
        files[path] = (_EXEC, data)
        binaries.append(path)
        if path == source:
            files["/sbin/iscsistart"] = (_EXEC, data)  # where open-iscsi's script looks for it
    base = f"/lib/modules/{version}"
    added: dict[str, bytes] = {}
    for rel in module_files(root, version):
        added[_plain_ko(rel)] = decompress_module(rel, root.read(f"{base}/{rel}"))
    modules = [f"{base}/{rel}" for rel in added]
    for rel, data in added.items():
        files[f"{base}/{rel}"] = (_FILE, data)
    for name, data in module_indexes(root, stock, version, added).items():
        files[f"{base}/{name}"] = (_FILE, data)
    scripts = []
    for rel in SCRIPTS:
        src = f"{SCRIPT_DIR}/{rel}"
        if not root.is_file(src):
            if rel.startswith("local-top"):
                raise InitramfsError(f"the image has no {src}; install open-iscsi in the image")
            continue
        files[f"/scripts/{rel}"] = (_EXEC, root.read(src))
        files[f"/scripts/{PurePosixPath(rel).parent}/ORDER"] = (
            _FILE,
            _order(stock, str(PurePosixPath(rel).parent)),
        )
        scripts.append(f"/scripts/{rel}")
    members = _with_parents(stock, files)
    archive = newc_archive(members)
    _check(stock, members, ["/sbin/iscsistart", *binaries, *modules, *scripts])
    return IscsiAddon(version, archive, tuple(binaries), tuple(modules), tuple(scripts))


def _with_parents(stock: Tree, files: dict[str, tuple[int, bytes]]) -> list[Member]:
    """Members for ``files``, each preceded by the directories the stock initramfs does not have yet."""
    members: list[Member] = []
    made: set[str] = set()
    for path in sorted(files):
        rel = path.lstrip("/")
        parts = PurePosixPath(rel).parts[:-1]
        for depth in range(1, len(parts) + 1):
            parent = "/".join(parts[:depth])
            if parent in made or stock.get(parent) is not None:
                continue
            made.add(parent)
            members.append(Member(parent, _DIR))
        mode, data = files[path]
        members.append(Member(rel, mode, data))
    return members


def _check(stock: Tree, members: list[Member], needed: list[str]) -> None:
    """Every file the login needs resolves in the tree the kernel will build (stock + addition)."""
    tree = Tree(dict(stock.nodes))
    tree.apply(members)
    for path in needed:
        found = tree.get(path)
        if found is None or not found.is_file:
            raise InitramfsError(f"{path} would not be reachable in the served initramfs")


def served_initramfs(stock_initramfs: bytes, addon: IscsiAddon) -> bytes:
    """The initramfs a Pi node is served: the image's own, then the iSCSI archive."""
    return append_archive(stock_initramfs, addon.archive)
