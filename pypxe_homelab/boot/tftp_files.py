"""What a TFTP path serves: a PXELINUX config generated for the requesting machine, or a file from tftproot."""

from __future__ import annotations

import re
from collections.abc import Callable

from pypxe_homelab.boot.autoinstall_boot import boot_choice
from pypxe_homelab.boot.loader_config import render_loader_config
from pypxe_homelab.protocol.tftp_paths import loader_config_request
from pypxe_homelab.runtime import Runtime
from pypxe_homelab.services.tftp import TftpFile, static_file

_MAC_CONFIG = re.compile(r"^01-([0-9a-f]{2}(?:-[0-9a-f]{2}){5})$")


def config_device_id(name: str, client_ip: str, runtime: Runtime) -> tuple[bool, str | None]:
    """(serve it?, device id) for ``pxelinux.cfg/<name>``.

    ``01-<mac>`` is always answered, so PXELINUX never needs its later candidates; UUID and hex-IP names
    get "not found" (PXELINUX moves on to ``01-<mac>``); ``default`` is answered for the machine its IP
    maps to, for loaders that skip the MAC name.
    """
    lowered = name.lower()
    if _MAC_CONFIG.match(lowered):
        return True, lowered
    if lowered == "default":
        mac = runtime.store.mac_for_ip(client_ip)
        return True, ("01-" + mac.replace(":", "-")) if mac else None
    return False, None


class TftpResolver:
    """The policy hook of the TFTP service: ``resolve(path, client) -> TftpFile | None``."""

    def __init__(self, runtime_getter: Callable[[], Runtime]) -> None:
        self._runtime = runtime_getter

    def __call__(self, path: str, client: tuple[str, int]) -> TftpFile | None:
        runtime = self._runtime()
        request = loader_config_request(path)
        if request is not None:
            tree, name = request
            serve, device_id = config_device_id(name, client[0], runtime)
            if not serve:
                return None
            state = runtime.store.node_state(device_id).state if device_id else None
            choice = boot_choice(runtime.inventory, device_id, state)
            text = render_loader_config(
                choice,
                tree=tree,
                base_url=runtime.base_url_for(client[0]),
                inventory=runtime.inventory,
                config_name=name,
                client_ip=client[0],
            )
            return TftpFile(data=text.encode())
        found = static_file(runtime.inventory.paths.tftproot, path)
        return TftpFile(path=found) if found is not None else None
