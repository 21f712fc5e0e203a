"""Files served from a root directory (tftproot, httproot): never anything outside it."""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path

from pypxe_homelab.protocol.tftp_paths import PathRefused, normalise

# The kernel names the file an open descriptor refers to here, symlinks resolved (Linux procfs).
_FD_LINKS = "/proc/self/fd/"
_OPEN_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_CLOEXEC


@functools.lru_cache(maxsize=32)
def _real_root(root: str) -> str:
    """The root with its symlinks resolved and a trailing separator (once per root: asked on every request)."""
    return os.path.realpath(root).rstrip(os.sep) + os.sep


def _real_path(fd: int, name: str) -> str:
    """Where ``name``, open as ``fd``, really is: the kernel's own answer, or ``realpath`` without procfs."""
    try:
        return os.readlink(f"{_FD_LINKS}{fd}")
    except OSError:
        return os.path.realpath(name, strict=True)


def static_file(root: Path, path: str) -> Path | None:
    """The real file under ``root`` that ``path`` names, or None if there is none.

    Raises PathRefused when the name is unsafe or when it (through symlinks) leads outside ``root``.
    """
    found = static_entry(root, path)
    return found[0] if found is not None else None


def static_entry(root: Path, path: str) -> tuple[Path, os.stat_result] | None:
    """``static_file``, and what ``stat`` says of the file found (for the caller not to ask again).

    The name is opened once (``O_PATH``: no read access needed, nothing read) and the kernel says where the
    descriptor points, which costs a few system calls where ``realpath`` stats every component in turn.
    """
    clean = normalise(path)
    real_root = _real_root(str(root))
    name = real_root + clean
    try:
        fd = os.open(name, _OPEN_FLAGS)
    except (OSError, ValueError):  # missing, a file used as a directory, a symlink loop
        return None
    try:
        real = _real_path(fd, name)
        st = os.fstat(fd)
    except (OSError, RuntimeError):
        return None
    finally:
        os.close(fd)
    if not real.startswith(real_root):
        raise PathRefused("the name leads outside the served root")
    return (_path(real), st) if stat.S_ISREG(st.st_mode) else None


@functools.lru_cache(maxsize=1024)
def _path(real: str) -> Path:
    """``Path(real)``, the same object for the same name (building a Path costs more than finding the file)."""
    return Path(real)
