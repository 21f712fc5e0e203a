"""`bootfiles` and `images`: put the boot loaders into the TFTP root and Ubuntu images into the HTTP root."""

from __future__ import annotations

import re
from pathlib import Path

import click

from pypxe_homelab.assets import bootloaders, images, pi_images
from pypxe_homelab.boot.booter import loaders_in_use
from pypxe_homelab.config.model import Inventory


def _inventory(obj) -> Inventory:
    from pypxe_homelab.config.loader import load_or_default

    inventory, _used_default = load_or_default(obj.config_path)
    return inventory


@click.group()
def bootfiles() -> None:
    """Boot loaders (SYSLINUX lpxelinux.0 and syslinux.efi, iPXE when installed) in the TFTP root."""


@bootfiles.command("install")
@click.option(
    "--source",
    type=click.Choice(["auto", "packages", "upstream"]),
    default="auto",
    show_default=True,
    help="packages: pxelinux/syslinux-efi/syslinux-common; upstream: the pinned SYSLINUX tarball; "
    "auto: packages when installed.",
)
@click.option(
    "--arm64",
    is_flag=True,
    help="Also install the arm64 Secure Boot chain (shimaa64.efi, grubaa64.efi) from the :arm64 packages "
    "(apt-get download; needs `dpkg --add-architecture arm64`).",
)
@click.option(
    "--ipxe-secure-boot",
    is_flag=True,
    help="Also fetch iPXE's signed shim and iPXE (pinned release in bootfiles/manifest.yaml) into ipxe-sb/.",
)
@click.pass_obj
def bootfiles_install(obj, source: str, arm64: bool, ipxe_secure_boot: bool) -> None:
    """Copy the boot loaders into the TFTP root."""
    inventory = _inventory(obj)
    root, cache = inventory.paths.tftproot, inventory.paths.cache
    report = bootloaders.install_bootloaders(
        root,
        source=source,  # type: ignore[arg-type]  # click.Choice limits it to the Literal's values
        cache=cache,
    )
    click.echo(f"{report.summary()} into {root}")
    in_use = loaders_in_use(inventory).values()
    if arm64:
        files = bootloaders.install_arm64_signed(root, cache)
        click.echo(f"installed the arm64 Secure Boot chain ({', '.join(p.name for p in files)}) into {root}")
    if ipxe_secure_boot or any(loader.startswith("ipxe-sb/") for loader in in_use):
        files = bootloaders.install_ipxe_secure_boot(root, cache)
        click.echo(f"installed iPXE's signed shim and iPXE ({len(files)} files) into {root / 'ipxe-sb'}")


@bootfiles.command("status")
@click.pass_obj
def bootfiles_status(obj) -> None:
    """Show which boot files the configured loaders need and whether they are in place."""
    inventory = _inventory(obj)
    root = inventory.paths.tftproot
    needed = bootloaders.required_files(loaders_in_use(inventory))
    for rel in needed:
        path = root / rel
        state = f"{path.stat().st_size} bytes" if path.is_file() else "MISSING"
        click.echo(f"{rel:24} {state}")
    missing = bootloaders.missing_bootloaders(root, loaders_in_use(inventory))
    packages = "installed" if bootloaders.packages_available() else "not installed"
    click.echo(f"packages {', '.join(bootloaders.PACKAGES)}: {packages}")
    ipxe = "installed" if any(p.is_file() for p in bootloaders.IPXE_FILES.values()) else "not installed"
    click.echo(f"package {bootloaders.IPXE_PACKAGE} (optional, iPXE loaders): {ipxe}")
    if missing:
        advice = bootloaders.install_advice(missing, "`pypxe-homelab bootfiles install`")
        click.echo(f"run {advice} to add the missing files")
        raise SystemExit(1)


@click.group("images")
def images_group() -> None:
    """Ubuntu installer images served over HTTP."""


@images_group.command("fetch")
@click.argument("name")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_obj
def images_fetch(obj, name: str, quiet: bool) -> None:
    """Download catalogue image NAME (resumes an interrupted download), check it, extract kernel and initrd."""
    inventory = _inventory(obj)
    entry = images.load_catalogue().get(name)
    if entry is not None and entry.is_pi:
        pi = pi_images.fetch_pi_image(entry, inventory.paths.httproot, progress=not quiet)
        _prepare_pi(inventory, pi)
        return
    info = images.fetch_image(name, inventory.paths.httproot, progress=not quiet)
    click.echo(f"{info.name}: ready ({info.iso}, sha256 {info.sha256})")


def _prepare_pi(inventory: Inventory, info: pi_images.PiImageInfo) -> None:
    """Extract the boot tree and build the served initramfs now, so the first Pi boot does not wait for it."""
    tree = pi_images.boot_tree(inventory.paths.httproot, inventory.paths.cache, info.name)
    login = "iSCSI initramfs ready" if tree.served_initramfs else "config.txt names no initramfs"
    click.echo(
        f"{info.name}: ready (Pi image {info.image}, {info.arch}, {info.description}; {len(tree.files)} boot files, "
        f"{login}; sha256 {info.sha256})"
    )


@images_group.command("add")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", help="Image name nodes use as os: (default: the file name without .iso/.img.xz).")
@click.pass_obj
def images_add(obj, path: Path, name: str | None) -> None:
    """Install a local Ubuntu live-server ISO, or a Raspberry Pi image (.img or .img.xz), as an image."""
    inventory = _inventory(obj)
    if pi_images.is_pi_image_file(path):
        stem = path.name.removesuffix(".xz").removesuffix(".img").lower()
        chosen_pi = name or re.sub(r"[^a-z0-9._-]+", "-", stem).strip("-._")
        pi = pi_images.add_pi_image(path, chosen_pi, inventory.paths.httproot)
        _prepare_pi(inventory, pi)
        return
    chosen = name or path.name.removesuffix(".iso").lower()
    info = images.add_image(path, chosen, inventory.paths.httproot)
    release = f", Ubuntu {info.release}" if info.release else ""
    click.echo(f"{info.name}: ready ({info.iso}{release}, sha256 {info.sha256})")


@images_group.command("list")
@click.pass_obj
def images_list(obj) -> None:
    """Catalogue images and installed ones, with their state."""
    inventory = _inventory(obj)
    root = inventory.paths.httproot
    ready = {info.name: info for info in images.list_images(root)}
    ready_pi = {info.name: info for info in pi_images.list_pi_images(root)}
    catalogue = images.load_catalogue()
    for name, entry in catalogue.items():
        state = "ready" if name in ready or name in ready_pi else "not fetched"
        click.echo(f"{name:20} {_kind(entry.is_pi):13} {entry.arch:6} {state:12} {entry.description}")
    for name, info in ready.items():
        if name not in catalogue:
            what = f"{info.label or info.iso} (added from {info.source})"
            click.echo(f"{name:20} {_kind(False):13} {'amd64':6} {'ready':12} {what}")
    for name, pi in ready_pi.items():
        if name not in catalogue:
            what = f"{pi.description} (added from {pi.source})"
            click.echo(f"{name:20} {_kind(True):13} {pi.arch:6} {'ready':12} {what}")


def _kind(pi: bool) -> str:
    return "Pi image" if pi else "installer ISO"


COMMANDS = [bootfiles, images_group]
