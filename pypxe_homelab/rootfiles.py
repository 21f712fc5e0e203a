"""Files served from a root directory (tftproot, httproot): never anything outside it."""

from __future__ import annotations

from pathlib import Path

from pypxe_homelab.protocol.tftp_paths import PathRefused, normalise


def static_file(root: Path, path: str) -> Path | None:
    """The real file under ``root`` that ``path`` names, or None if there is none.

    Raises PathRefused when the name is unsafe or when it (through symlinks) leads outside ``root``.
    """
    clean = normalise(path)
    real_root = root.resolve()
    try:
        real = (real_root / clean).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, a file used as a directory, a symlink loop
        return None
    if real_root not in real.parents:
        raise PathRefused("the name leads outside the served root")
    return real if real.is_file() else None
