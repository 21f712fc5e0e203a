"""A raw GPT disk image holding one EFI system partition with the given files: an installed machine's disk
for the local-boot tests (sfdisk, mkfs.vfat and mtools from Debian's fdisk, dosfstools and mtools)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
START_SECTOR = 2048  # 1 MiB


def build_esp_disk(path: Path, files: dict[str, bytes], size_mb: int = 64) -> Path:
    """Write ``path``: a GPT disk whose one partition is a FAT EFI system partition holding ``files``
    (``EFI/BOOT/BOOTX64.EFI`` → bytes, …)."""
    esp_mb = size_mb - 2
    with open(path, "wb") as disk:
        disk.truncate(size_mb << 20)
    layout = f"label: gpt\nstart={START_SECTOR}, size={esp_mb << 11}, type={ESP_TYPE}\n"
    subprocess.run(["sfdisk", "-q", str(path)], input=layout, text=True, check=True, capture_output=True)
    with tempfile.TemporaryDirectory() as tmp:
        esp = Path(tmp) / "esp.img"
        with open(esp, "wb") as part:
            part.truncate(esp_mb << 20)
        subprocess.run(["mkfs.vfat", "-F", "32", "-n", "ESP", str(esp)], check=True, capture_output=True)
        folders = sorted({str(Path(name).parent) for name in files} - {"."}, key=lambda f: f.count("/"))
        made: set[str] = set()
        for folder in folders:
            parts = Path(folder).parts
            for depth in range(1, len(parts) + 1):
                sub = "/".join(parts[:depth])
                if sub not in made:
                    subprocess.run(["mmd", "-i", str(esp), f"::/{sub}"], check=True, capture_output=True)
                    made.add(sub)
        for name, data in files.items():
            src = Path(tmp) / "file"
            src.write_bytes(data)
            subprocess.run(
                ["mcopy", "-o", "-i", str(esp), str(src), f"::/{name}"], check=True, capture_output=True
            )
        with open(path, "r+b") as disk, open(esp, "rb") as part:
            disk.seek(START_SECTOR * 512)
            while chunk := part.read(1 << 20):
                disk.write(chunk)
    return path
