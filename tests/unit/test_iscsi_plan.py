"""IQN naming, desired targets from an inventory, parsing tgtadm output and reconcile planning."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from pypxe_homelab.config.model import Defaults, Inventory, Node, Paths
from pypxe_homelab.iscsi.desired import NodeTarget, desired_targets, disk_path, node_image_path
from pypxe_homelab.iscsi.naming import initiator_name, portal_address, serial_of_target, target_iqn
from pypxe_homelab.iscsi.plan import (
    Export,
    Session,
    TargetState,
    Withdraw,
    parse_targets,
    plan,
    session_changes,
    sessions_of,
    tgtadm_args,
)

IQN = re.compile(r"^iqn\.\d{4}-\d{2}\.[a-z0-9.-]+(:[a-z0-9.:-]+)?$")

SHOW = """\
Target 1: iqn.2024-01.arpa.home.pypxe-homelab:7092246e
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
        I_T nexus: 3
            Initiator: iqn.2024-01.arpa.home.pypxe-homelab:7092246e:initiator alias: none
            Connection: 0
                IP Address: 10.0.0.20
    LUN information:
        LUN: 0
            Type: controller
            Backing store type: null
            Backing store path: None
            Backing store flags:\x20
        LUN: 1
            Type: disk
            Size: 67 MB, Block size: 512
            Backing store type: rdwr
            Backing store path: /srv/iscsiroot/7092246e.img
            Backing store flags:\x20
    Account information:
    ACL information:
        iqn.2024-01.arpa.home.pypxe-homelab:7092246e:initiator
Target 3: iqn.2024-01.arpa.home.pypxe-homelab:0000beef
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
    LUN information:
        LUN: 0
            Type: controller
            Backing store path: None
    Account information:
    ACL information:
        ALL
        iqn.2024-01.arpa.home.pypxe-homelab:0000beef:initiator
"""


def target(serial: str, root: Path = Path("/srv")) -> NodeTarget:
    return NodeTarget(
        serial,
        target_iqn(serial),
        initiator_name(serial),
        root / "iscsiroot" / f"{serial}.img",
        root / "x.img",
    )


def test_names_are_valid_iqns_derived_from_the_serial() -> None:
    assert target_iqn("7092246e") == "iqn.2024-01.arpa.home.pypxe-homelab:7092246e"
    assert initiator_name("7092246e") == "iqn.2024-01.arpa.home.pypxe-homelab:7092246e:initiator"
    for name in (target_iqn("7092246e"), initiator_name("7092246e")):
        assert IQN.match(name), name
    assert target_iqn("0000beef") != target_iqn("7092246e")
    assert initiator_name("7092246e") != target_iqn("7092246e")


def test_serial_of_target_inverts_target_iqn() -> None:
    assert serial_of_target(target_iqn("7092246e")) == "7092246e"
    assert serial_of_target("iqn.2024-01.org.example:7092246e") is None
    assert serial_of_target(target_iqn("7092246e") + ":x") is None


def test_session_changes_are_logins_and_logouts() -> None:
    before = sessions_of(parse_targets(SHOW))
    assert before == {
        (target_iqn("7092246e"), Session(initiator_name("7092246e"), "10.0.0.20")),
    }
    logins, logouts = session_changes(set(), before)
    assert logins == sorted(before, key=str) and logouts == []
    assert session_changes(before, set()) == ([], sorted(before, key=str))
    assert session_changes(before, before) == ([], [])


def test_portal_is_the_served_address_on_the_nodes_subnet() -> None:
    served = (ipaddress.IPv4Interface("10.1.0.3/24"), ipaddress.IPv4Interface("10.2.0.3/24"))
    assert portal_address(served, ipaddress.IPv4Address("10.2.0.40")) == ipaddress.IPv4Address("10.2.0.3")
    assert portal_address(served, ipaddress.IPv4Address("10.9.0.40")) == ipaddress.IPv4Address("10.1.0.3")
    assert portal_address(served, None) == ipaddress.IPv4Address("10.1.0.3")
    assert portal_address((), None) is None


def test_parse_targets_reads_lun1_backing_and_every_acl() -> None:
    assert parse_targets(SHOW) == [
        TargetState(
            1,
            "iqn.2024-01.arpa.home.pypxe-homelab:7092246e",
            "/srv/iscsiroot/7092246e.img",
            ("iqn.2024-01.arpa.home.pypxe-homelab:7092246e:initiator",),
            (Session("iqn.2024-01.arpa.home.pypxe-homelab:7092246e:initiator", "10.0.0.20"),),
        ),
        TargetState(
            3,
            "iqn.2024-01.arpa.home.pypxe-homelab:0000beef",
            None,
            ("ALL", "iqn.2024-01.arpa.home.pypxe-homelab:0000beef:initiator"),
        ),
    ]
    assert parse_targets("") == []


def test_plan_keeps_what_matches_and_exports_what_is_missing_on_free_tids() -> None:
    current = parse_targets(SHOW)[:1]
    steps = plan(current, [target("7092246e"), target("0000beef"), target("11112222")])
    assert steps == [Export(2, target("0000beef")), Export(3, target("11112222"))]
    assert plan(current, [target("7092246e")]) == []


def test_plan_withdraws_removed_changed_and_widened_targets() -> None:
    current = parse_targets(SHOW)
    # 0000beef has no LUN 1 and an address ACL "ALL" that would let anyone in: made again
    steps = plan(current, [target("0000beef")])
    assert steps == [
        Withdraw(1, target_iqn("7092246e")),
        Withdraw(3, target_iqn("0000beef")),
        Export(1, target("0000beef")),
    ]
    # another disk path (paths.root moved): made again on the same tid
    moved = target("7092246e", Path("/data"))
    assert plan(current[:1], [moved]) == [Withdraw(1, moved.iqn), Export(1, moved)]


def test_plan_refresh_reopens_a_replaced_disk() -> None:
    current = parse_targets(SHOW)[:1]
    assert plan(current, [target("7092246e")], refresh=["7092246e"]) == [
        Withdraw(1, target_iqn("7092246e")),
        Export(1, target("7092246e")),
    ]
    assert plan(current, [target("7092246e")], refresh=["0000beef"]) == []


def test_tgtadm_steps_bind_the_initiator_name_and_never_an_address() -> None:
    t = target("7092246e")
    args = tgtadm_args(Export(4, t))
    assert args == [
        ["--op", "new", "--mode", "target", "--tid", "4", "--targetname", t.iqn],
        ["--op", "new", "--mode", "logicalunit", "--tid", "4", "--lun", "1", "--backing-store", str(t.disk)],
        ["--op", "bind", "--mode", "target", "--tid", "4", "--initiator-name", t.initiator],
    ]
    assert not any("--initiator-address" in a for a in args)
    assert tgtadm_args(Withdraw(4, t.iqn)) == [
        ["--op", "delete", "--mode", "target", "--tid", "4", "--force"]
    ]


def _inventory(root: Path, nodes: dict[str, Node], os_name: str | None = None) -> Inventory:
    return Inventory(paths=Paths(root), defaults=Defaults(pi_os=os_name), nodes=nodes)


def test_desired_targets_are_the_pi_nodes_with_a_pi_image(tmp_path: Path) -> None:
    image = tmp_path / "httproot" / "images" / "ubuntu-24.04-raspi" / "ubuntu-raspi.img"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"\0" * 512)
    nodes = {
        "7092246e": Node("7092246e"),
        "0000beef": Node("0000beef", os="no-such-image"),
        "01-52-54-00-a0-00-01": Node("01-52-54-00-a0-00-01"),
    }
    inventory = _inventory(tmp_path, nodes, "ubuntu-24.04-raspi")
    assert node_image_path(inventory, nodes["7092246e"]) == image
    targets, skipped = desired_targets(inventory)
    assert targets == [
        NodeTarget(
            "7092246e",
            target_iqn("7092246e"),
            initiator_name("7092246e"),
            tmp_path / "iscsiroot" / "7092246e.img",
            image,
        )
    ]
    assert disk_path(inventory.paths, "7092246e") == tmp_path / "iscsiroot" / "7092246e.img"
    assert len(skipped) == 1 and skipped[0].startswith("0000beef: no iSCSI disk: its os 'no-such-image'")


def test_no_pi_node_means_no_target(tmp_path: Path) -> None:
    inventory = _inventory(tmp_path, {"01-52-54-00-a0-00-01": Node("01-52-54-00-a0-00-01")})
    assert desired_targets(inventory) == ([], [])
