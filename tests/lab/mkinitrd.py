"""Build tiny initrds (gzip'd newc cpio) around a static busybox, in pure Python.

``build_initrd(init)`` gives an initrd whose /init is the caller's shell script;
``build_net_initrd(script, kernel)`` adds the NIC drivers of the installed kernel
and a prelude that loads them, runs udhcpc on eth0 and then runs *script*.
"""

from __future__ import annotations

import gzip
import io
import lzma
import stat
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tests.lab.kernel import Kernel

BUSYBOX = Path("/bin/busybox")
USERSPACE_MARKER = "PXH-USERSPACE-OK"
CMDLINE_MARKER = "PXH-CMDLINE:"

DEFAULT_INIT = f"""#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo
echo "{USERSPACE_MARKER}"
echo "{CMDLINE_MARKER} $(cat /proc/cmdline)"
sleep 1
poweroff -f
while :; do sleep 3600; done
"""

# udhcpc calls this with $1 = deconfig|bound|renew|leasefail and the lease in the environment.
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    echo "PXH-DHCP: $interface $ip/${subnet} router=${router} dns=${dns} server=${serverid}"
    ;;
esac
exit 0
"""

NET_MODULES = ("e1000", "virtio_net", "virtio_pci")
MODULE_LOAD_ORDER = "/lib/modules/load-order"

# Sourced before the caller's script in a networked initrd: loads drivers, DHCP on eth0.
NET_PRELUDE = f"""#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo
echo "{USERSPACE_MARKER}"
echo "{CMDLINE_MARKER} $(cat /proc/cmdline)"
for m in $(cat {MODULE_LOAD_ORDER}); do insmod "$m" || echo "PXH-INSMOD-FAILED: $m"; done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
ip link set lo up
if udhcpc -i eth0 -n -q -t 10 -T 2 -s /usr/share/udhcpc/default.script; then
  echo "PXH-NET-UP"
else
  echo "PXH-NET-FAILED"
fi
"""

NET_EPILOGUE = """
sleep 1
poweroff -f
while :; do sleep 3600; done
"""


@dataclass
class InitrdFile:
    """A regular file to put into the initrd."""

    data: bytes
    mode: int = 0o644


@dataclass
class _Cpio:
    """Writer for the SVR4 'newc' cpio format the kernel unpacks as initramfs."""

    out: io.BytesIO = field(default_factory=io.BytesIO)
    next_inode: int = 1
    seen: set[str] = field(default_factory=set)

    def _entry(
        self, name: str, mode: int, data: bytes = b"", nlink: int = 1, rdev: tuple[int, int] = (0, 0)
    ) -> None:
        encoded = name.encode() + b"\0"
        values = (self.next_inode, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        self.next_inode += 1
        self.out.write(b"070701" + b"".join(b"%08x" % v for v in values) + encoded)
        self._pad(4)
        self.out.write(data)
        self._pad(4)

    def _pad(self, align: int) -> None:
        self.out.write(b"\0" * (-self.out.tell() % align))

    def directory(self, name: str) -> None:
        if name in self.seen:
            return
        parent = str(PurePosixPath(name).parent)
        if parent not in (".", "/", ""):
            self.directory(parent)
        self.seen.add(name)
        self._entry(name, stat.S_IFDIR | 0o755, nlink=2)

    def _parents(self, name: str) -> None:
        parent = str(PurePosixPath(name).parent)
        if parent not in (".", "/", ""):
            self.directory(parent)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._parents(name)
        self.seen.add(name)
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._parents(name)
        self.seen.add(name)
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int) -> None:
        self._parents(name)
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        self._pad(512)
        return self.out.getvalue()


def busybox_applets(busybox: Path = BUSYBOX) -> list[str]:
    """Applet names the static busybox provides (asked from the binary itself)."""
    out = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout
    return [name for name in out.split() if name and "/" not in name]


def build_initrd(
    init: str = DEFAULT_INIT,
    *,
    extra_files: Mapping[str, bytes | InitrdFile] | None = None,
    busybox: Path = BUSYBOX,
    applets: Iterable[str] | None = None,
) -> bytes:
    """A gzip'd newc initrd: static busybox (+ applet links in /bin), /init = *init*, plus *extra_files*.

    *extra_files* maps absolute paths to bytes (mode 0644) or an :class:`InitrdFile`.
    """
    cpio = _Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys", "etc", "tmp", "root", "usr/bin", "usr/sbin"):
        cpio.directory(d)
    cpio.char_device("dev/console", 5, 1)
    cpio.char_device("dev/null", 1, 3)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in applets if applets is not None else busybox_applets(busybox):
        if applet != "busybox":
            cpio.symlink(f"bin/{applet}", "busybox")
    cpio.file("init", init.encode(), 0o755)
    for path, content in (extra_files or {}).items():
        item = content if isinstance(content, InitrdFile) else InitrdFile(content)
        cpio.file(path.lstrip("/"), item.data, item.mode)
    return gzip.compress(cpio.finish(), compresslevel=6, mtime=0)


def write_initrd(path: Path, init: str = DEFAULT_INIT, **kw) -> Path:
    """Build an initrd with :func:`build_initrd` and write it to *path*."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(build_initrd(init, **kw))
    return path


def _read_modules_dep(kernel: Kernel) -> dict[str, list[str]]:
    deps = {}
    for line in (kernel.modules_dir / "modules.dep").read_text().splitlines():
        if ":" in line:
            module, rest = line.split(":", 1)
            deps[module] = rest.split()
    return deps


def _module_name(rel_path: str) -> str:
    base = PurePosixPath(rel_path).name
    return base.split(".ko", 1)[0].replace("-", "_")


def module_load_order(kernel: Kernel, names: Iterable[str] = NET_MODULES) -> list[str]:
    """Relative paths (as in modules.dep) of *names* and their dependencies, dependencies first.

    Names that are built into the kernel (absent from modules.dep) are skipped.
    """
    deps = _read_modules_dep(kernel)
    by_name = {_module_name(path): path for path in deps}
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        # modules.dep lists every (transitive) dependency; load the deepest ones first.
        for dep in reversed(deps.get(path, [])):
            visit(dep)
        order.append(path)

    for name in names:
        path = by_name.get(name.replace("-", "_"))
        if path is not None:
            visit(path)
    return order


def _module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".zst":
        raise RuntimeError(f"{path}: zstd-compressed modules are not supported, use an xz/gzip/plain kernel")
    return data


def network_modules(kernel: Kernel, names: Iterable[str] = NET_MODULES) -> dict[str, InitrdFile]:
    """Initrd files for the NIC drivers *names*: /lib/modules/<name>.ko (decompressed) + the load-order list."""
    files: dict[str, InitrdFile] = {}
    order = []
    for rel in module_load_order(kernel, names):
        target = f"/lib/modules/{_module_name(rel)}.ko"
        files[target] = InitrdFile(_module_bytes(kernel.modules_dir / rel))
        order.append(target)
    files[MODULE_LOAD_ORDER] = InitrdFile(("\n".join(order) + "\n").encode())
    return files


def build_net_initrd(script: str, kernel: Kernel, *, modules: Iterable[str] = NET_MODULES) -> bytes:
    """An initrd that prints the markers, brings eth0 up with DHCP, runs *script* (sh) and powers off.

    After the prelude, eth0 has its address (``PXH-NET-UP`` or ``PXH-NET-FAILED`` is printed) and
    busybox ``wget`` / ``wget --post-data`` work.
    """
    files: dict[str, bytes | InitrdFile] = dict(network_modules(kernel, modules))
    files["/usr/share/udhcpc/default.script"] = InitrdFile(UDHCPC_SCRIPT.encode(), 0o755)
    return build_initrd(NET_PRELUDE + script + NET_EPILOGUE, extra_files=files)


SECURE_BOOT_MARKER = "PXH-SECUREBOOT:"
# The SecureBoot variable: 4 attribute bytes, then one byte (1 = enforced).
SECURE_BOOT_VAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"

SECURE_BOOT_INIT = f"""#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for m in $(cat {MODULE_LOAD_ORDER}); do insmod "$m" || echo "PXH-INSMOD-FAILED: $m"; done
mount -t efivarfs efivarfs /sys/firmware/efi/efivars || echo "PXH-EFIVARFS-FAILED"
mount -t securityfs securityfs /sys/kernel/security
echo
set -- $(od -An -tu1 {SECURE_BOOT_VAR})
echo "PXH-SECUREBOOT-VAR: $*"
echo "{SECURE_BOOT_MARKER} $5"
echo "PXH-LOCKDOWN: $(cat /sys/kernel/security/lockdown 2>/dev/null || echo unknown)"
echo "{USERSPACE_MARKER}"
echo "{CMDLINE_MARKER} $(cat /proc/cmdline)"
sleep 1
poweroff -f
while :; do sleep 3600; done
"""


def build_secure_boot_initrd(kernel: Kernel) -> bytes:
    """An initrd that mounts efivarfs (its signed module from *kernel*) and prints the SecureBoot variable."""
    return build_initrd(SECURE_BOOT_INIT, extra_files=dict(network_modules(kernel, ["efivarfs"])))
