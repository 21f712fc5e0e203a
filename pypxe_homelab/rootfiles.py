"""Files served from a root directory (tftproot, httproot): never anything outside it."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from pypxe_homelab.protocol.tftp_paths import PathRefused, normalise


@functools.lru_cache(maxsize=32)
def _real_root(root: str) -> str:
    """The root with its symlinks resolved (once per root: asked on every request)."""
    return os.path.realpath(root)


def static_file(root: Path, path: str) -> Path | None:
    """The real file under ``root`` that ``path`` names, or None if there is none.

    Raises PathRefused when the name is unsafe or when it (through symlinks) leads outside ``root``.
    """
    clean = normalise(path)
    real_root = _real_root(str(root))
    try:
        real = os.path.realpath(os.path.join(real_root, clean), strict=True)
    except (OSError, RuntimeError, ValueError):  # missing, a file used as a directory, a symlink loop
        return None
    if not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise PathRefused("the name leads outside the served root")
    return Path(real) if os.path.isfile(real) else None
