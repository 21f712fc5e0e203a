#!/usr/bin/env bash
# Set up everything the test suite needs on a Debian/Ubuntu machine, then run it.
#   sudo bash tests/run.sh            # the whole suite: unit, namespace integration, browser, QEMU boots
#   sudo bash tests/run.sh -m "not e2e"   # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "tests/run.sh: run as root (sudo bash tests/run.sh): the tests create network namespaces and boot VMs" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
packages=(
  python3 python3-venv python3-pip iproute2 procps
  qemu-system-x86 ovmf ipxe-qemu seabios            # the firmware the end-to-end boots use
  pxelinux syslinux-common syslinux-efi             # the boot loaders served
  ipxe                                              # iPXE binaries, served as boot loaders in one test
  busybox-static cpio linux-image-amd64             # kernel + tiny initrds the test machines boot
  dnsmasq-base                                      # the "home router" DHCP server of the test LAN
  chromium chromium-driver                          # the status page test
  tgt util-linux coreutils                          # the iSCSI target the server runs (tgtd, setpriv, cp)
  libiscsi-bin qemu-utils qemu-block-extra          # real iSCSI initiators for the Pi disk tests
  podman runc uidmap mmdebstrap                     # the container image test (base image from Debian)
  systemd                                           # systemd-analyze verify/security of the unit
  passwd                                            # useradd (the service user); util-linux: unshare, nsenter
  fdisk dosfstools mtools e2fsprogs xz-utils        # the Raspberry Pi image fixture (sfdisk, mkfs.vfat, mcopy, mkfs.ext4)
  libarchive13                                      # libarchive-c writes the iSCSI initramfs archive
  kmod                                              # depmod: module indexes of the served Pi initramfs and the fixture
  qemu-system-arm                                   # the Pi's diskless arm64 boot (QEMU virt)
  shim-signed grub-efi-amd64-signed                 # the Secure Boot chain served (Microsoft-signed shim, signed GRUB)
  qemu-efi-aarch64                                  # the arm64 UEFI boot (AAVMF)
)
# the arm64 boot test downloads Debian's arm64 kernel, busybox, shim and GRUB with `apt-get download`
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
  apt-get update -qq
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Raspberry Pi fixture is built from Debian's arm64 packages (tests/lab/pi_image.py downloads them with
# `apt-get download`): the arm64 package lists must be known.
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
  apt-get update -qq
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

.venv/bin/ruff check pypxe_homelab tests bench
.venv/bin/ruff format --check pypxe_homelab tests bench
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
exec .venv/bin/python -m pytest "$@"
