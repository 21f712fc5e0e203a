"""The iSCSI service's failures are one line and never fatal; without Pi nodes it does nothing."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from pathlib import Path

import pytest

from pypxe_homelab.config.model import Defaults, Inventory, Node, Paths
from pypxe_homelab.iscsi.target import TargetError, TgtDaemon, portals_of
from pypxe_homelab.services.iscsi import IscsiService

ADDRESS = ipaddress.IPv4Address("127.0.0.1")


def service_without_tgtd(root: Path) -> IscsiService:
    service = IscsiService(Paths(root), [ADDRESS])
    service.daemon = TgtDaemon(root / "tgtd", [ADDRESS], tgtd="no-such-tgtd", tgtadm="no-such-tgtadm")
    return service


def pi_inventory(root: Path) -> Inventory:
    image = root / "httproot" / "images" / "pi" / "pi.img"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"\0" * 4096)
    return Inventory(paths=Paths(root), defaults=Defaults(pi_os="pi"), nodes={"7092246e": Node("7092246e")})


def test_missing_tgtd_is_one_line_naming_the_package(tmp_path: Path) -> None:
    with pytest.raises(TargetError) as info:
        TgtDaemon(tmp_path, [ADDRESS], tgtd="no-such-tgtd").spawn()
    message = str(info.value)
    assert "\n" not in message and "tgtd is not installed" in message and "apt install tgt" in message


def test_missing_tgtd_with_a_pi_node_is_reported_not_raised(tmp_path: Path, caplog) -> None:
    service = service_without_tgtd(tmp_path)
    with caplog.at_level(logging.INFO, logger="pypxe_homelab.iscsi"):
        inventory = pi_inventory(tmp_path)
        asyncio.run(service.apply(inventory))
        asyncio.run(service.apply(inventory))  # a reload
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "tgtd is not installed" in errors[0]  # once, not at every reload
    assert not (tmp_path / "iscsiroot").exists()  # no disk made for nothing


def test_missing_tgtd_without_pi_nodes_does_not_matter(tmp_path: Path, caplog) -> None:
    service = service_without_tgtd(tmp_path)
    pc = Inventory(paths=Paths(tmp_path), nodes={"01-52-54-00-a0-00-01": Node("01-52-54-00-a0-00-01")})
    with caplog.at_level(logging.DEBUG, logger="pypxe_homelab.iscsi"):
        asyncio.run(service.apply(pc))
        service.stop()
    assert caplog.records == []
    assert not (tmp_path / "tgtd").exists()


def test_portals_of_reads_tgtadm_portal_lines() -> None:
    text = "Portal: 10.0.0.3:3260,1\nPortal: [::]:3260,1\n"
    assert portals_of(text) == {"10.0.0.3:3260", "[::]:3260"}
