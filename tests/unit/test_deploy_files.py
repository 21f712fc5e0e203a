"""The shipped deployment examples are well-formed: the k3s manifest's objects and its config.yaml, and the
compose file's service."""

from __future__ import annotations

from pathlib import Path

import yaml

from pypxe_homelab.config.loader import parse_inventory

REPO = Path(__file__).resolve().parents[2]


def test_the_k3s_manifest_pins_one_host_network_instance_per_segment() -> None:
    docs = list(yaml.safe_load_all((REPO / "deploy" / "k3s" / "pypxe-homelab.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Namespace", "ConfigMap", "PersistentVolumeClaim", "Deployment"}
    inventory = parse_inventory(kinds["ConfigMap"]["data"]["config.yaml"], None, detect_host=False)
    assert inventory.server.interfaces == ("eth0",) and len(inventory.nodes) == 1
    deployment = kinds["Deployment"]["spec"]
    assert deployment["replicas"] == 1 and deployment["strategy"]["type"] == "Recreate"
    pod = deployment["template"]["spec"]
    assert pod["hostNetwork"] is True and "pypxe-homelab/segment" in pod["nodeSelector"]
    [container] = pod["containers"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/etc/pypxe-homelab": "config", "/var/lib/pypxe-homelab": "data"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"]
    assert (
        volumes["data"]["persistentVolumeClaim"]["claimName"]
        == kinds["PersistentVolumeClaim"]["metadata"]["name"]
    )


def test_the_compose_file_uses_host_networking_and_only_net_bind_service() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    service = compose["services"]["pypxe-homelab"]
    assert service["network_mode"] == "host"
    assert service["cap_drop"] == ["ALL"] and service["cap_add"] == ["NET_BIND_SERVICE"]
    targets = {v.split(":")[1] for v in service["volumes"]}
    assert targets == {"/etc/pypxe-homelab", "/var/lib/pypxe-homelab"}
