"""Podman for the container tests: the Debian base image (mmdebstrap, imported as debian:bookworm-slim), the
product image built from the repository's Containerfile, and the options podman needs on these machines.

The base image is made from this machine's own Debian mirror configuration (the deb822 sources under
/etc/apt/sources.list.d and the apt.conf.d settings), so it builds wherever apt works, without any registry.
Both the root filesystem tarball and the product image are cached, keyed by a hash of their inputs.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path("/var/cache/pypxe-homelab-tests/container")
BASE_IMAGE = "debian:bookworm-slim"
PRODUCT_IMAGE = "localhost/pypxe-homelab:test"
SUITE = "bookworm"
VARIANT = "minbase"  # what Debian's own bookworm-slim images are made of
APT_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
APT_CONF_DIR = Path("/etc/apt/apt.conf.d")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# what the product image's build reads from the repository
IMAGE_INPUTS = ("Containerfile", "pyproject.toml", "README.md", "pypxe_homelab")


def podman_skip_reason() -> str | None:
    """Why podman cannot run containers here at all, or None."""
    if os.geteuid() != 0:
        return "the container test runs rootful podman: needs root"
    for tool in ("podman", "runc", "mmdebstrap", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (tests/run.sh installs it)"
    probe = subprocess.run(["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"], capture_output=True)
    if probe.returncode != 0:
        return f"podman cannot run here: {probe.stderr.decode(errors='replace').strip()[:200]}"
    return None


def run_options() -> list[str]:
    """The options every `podman run` needs here: runc (crun refuses the hybrid cgroup layout) and ulimits
    no higher than this process's hard limits (podman's default asks for more, which is refused)."""
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 65536)
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
    return [
        "--runtime",
        "runc",
        "--ulimit",
        f"nofile={nofile}:{nofile}",
        "--ulimit",
        f"nproc={nproc}:{nproc}",
    ]


def _apt_options() -> list[Path]:
    """This machine's apt settings (how apt reaches its mirror: proxy, date checks), given to mmdebstrap."""
    if not APT_CONF_DIR.is_dir():
        return []
    return sorted(p for p in APT_CONF_DIR.iterdir() if p.is_file() and not p.name.startswith("."))


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def _image_label(image: str, label: str) -> str | None:
    result = subprocess.run(
        ["podman", "image", "inspect", image, "--format", '{{index .Labels "' + label + '"}}'],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def _image_annotation(image: str) -> str | None:
    """The comment `podman import` stored on the base image (it cannot set labels)."""
    result = subprocess.run(
        ["podman", "image", "inspect", image, "--format", "{{.Comment}}"], capture_output=True, text=True
    )
    return result.stdout.strip() if result.returncode == 0 else None


def base_image() -> str:
    """debian:bookworm-slim made with mmdebstrap from this machine's Debian mirror; cached."""
    sources = APT_SOURCES.read_bytes() if APT_SOURCES.exists() else b""
    options = _apt_options()
    key = _digest(SUITE.encode(), VARIANT.encode(), sources, *(p.read_bytes() for p in options))
    if _image_annotation(BASE_IMAGE) == f"pypxe-homelab-tests {key}":
        return BASE_IMAGE
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"bookworm-{VARIANT}-{key}.tar"
    if not tarball.exists():
        mirror = [str(APT_SOURCES)] if APT_SOURCES.exists() else []
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            partial = Path(tmp) / "root.tar"
            cmd = [
                "mmdebstrap",
                f"--variant={VARIANT}",
                "--quiet",
                *(f"--aptopt={p}" for p in options),
                # keep images small, as Debian's slim images do
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                SUITE,
                str(partial),
                *mirror,
            ]
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
            if result.returncode != 0:
                raise RuntimeError(f"mmdebstrap failed:\n{result.stderr[-3000:]}")
            partial.rename(tarball)
    imported = subprocess.run(
        [
            "podman",
            "import",
            "--message",
            f"pypxe-homelab-tests {key}",
            "--change",
            'CMD ["/bin/bash"]',
            str(tarball),
            BASE_IMAGE,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if imported.returncode != 0:
        raise RuntimeError(f"podman import failed: {imported.stderr}")
    return BASE_IMAGE


def _tree_digest() -> str:
    """A hash of every file the product image is built from."""
    h = hashlib.sha256()
    for name in IMAGE_INPUTS:
        path = REPO / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if "__pycache__" in f.parts:
                continue
            h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _build_pip_conf(directory: Path) -> Path:
    """A pip configuration for the build: pip inside the image trusts this machine's CA bundle (the package
    registry may be reached through a proxy with its own CA), with the index settings pip uses here."""
    lines = ["[global]", "cert = /run/build-host/ca.crt"]
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT"):
        value = os.environ.get(key)
        if value and "file:" not in value:
            lines.append(f"{key[4:].lower().replace('_', '-')} = {value}")
    conf = directory / "pip.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def product_image() -> str:
    """The image built from the repository's Containerfile (on the cached base image); cached by content."""
    base_image()
    key = _tree_digest() + "-" + (_image_annotation(BASE_IMAGE) or "").rsplit(" ", 1)[-1]
    if _image_label(PRODUCT_IMAGE, "org.pypxe-homelab.test-key") == key:
        return PRODUCT_IMAGE
    with tempfile.TemporaryDirectory() as tmp:
        pip_conf = _build_pip_conf(Path(tmp))
        cmd = [
            "podman",
            "build",
            "--runtime",
            "runc",
            "--network",
            "host",
            "--pull=never",
            "--format",
            "docker",  # the OCI image format has no HEALTHCHECK
            "--label",
            f"org.pypxe-homelab.test-key={key}",
            "--volume",
            f"{HOST_CA_BUNDLE}:/run/build-host/ca.crt:ro",
            "--volume",
            f"{pip_conf}:/etc/pip.conf:ro",
            "--tag",
            PRODUCT_IMAGE,
            "--file",
            str(REPO / "Containerfile"),
            str(REPO),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"podman build failed:\n{result.stdout[-4000:]}\n{result.stderr[-3000:]}")
    return PRODUCT_IMAGE
