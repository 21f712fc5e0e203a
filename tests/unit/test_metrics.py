"""Metrics: a thin mapping from each recorded event to counters, on a registry of the server's own, in the
Prometheus text format; /healthz says why the server is unhealthy."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from pypxe_homelab.events import (
    CloudInitDetail,
    DhcpDetail,
    HttpDetail,
    InstallDetail,
    Kind,
    TftpDetail,
    cloud_init_event,
    dhcp_event,
    http_event,
    install_event,
    tftp_event,
)
from pypxe_homelab.metrics import Metrics
from pypxe_homelab.web.monitoring import Health

PC = "01-52-54-00-a0-00-01"
MAC = "52:54:00:a0:00:01"


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_each_event_kind_moves_its_counters() -> None:
    metrics = Metrics()
    events = [
        dhcp_event(Kind.DHCP_OFFER, "0.0.0.0:68", PC, MAC, DhcpDetail({"class": "efi64"})),
        dhcp_event(Kind.DHCP_IGNORED, "0.0.0.0:68", PC, MAC, DhcpDetail({"class": "pi"})),
        tftp_event(Kind.TFTP_DONE, "10.0.0.5:2070", PC, MAC, TftpDetail(path="lpxelinux.0", bytes=42)),
        tftp_event(Kind.TFTP_ABORT, "10.0.0.5:2071", PC, MAC, TftpDetail(path="x.efi", bytes=0)),
        tftp_event(Kind.TFTP_ERROR, "10.0.0.5:2072", None, None, TftpDetail(path="nope", reason="not found")),
        http_event(Kind.HTTP_GET, "10.0.0.5:40000", PC, MAC, HttpDetail(path="/boot/linux", what="kernel")),
        http_event(Kind.HTTP_DONE, "10.0.0.5:40000", PC, MAC, HttpDetail(what="kernel", bytes=1000)),
        http_event(Kind.HTTP_ERROR, "10.0.0.5:40001", None, None, HttpDetail(path="/x", status=404)),
        cloud_init_event("10.0.0.5:40002", PC, MAC, CloudInitDetail(file="user-data", bytes=77)),
        install_event(
            "10.0.0.5:40003",
            PC,
            MAC,
            InstallDetail(name="subiquity/Install", event_type="finish", result="FAIL"),
        ),
        install_event("10.0.0.5:40003", PC, MAC, InstallDetail(name="x", event_type="start")),
    ]
    for event in events:
        metrics.recorded(event, 0.002)
    got = samples(metrics)
    assert got[("pypxe_homelab_dhcp_requests_total", (("client_class", "efi64"), ("outcome", "offer")))] == 1
    assert got[("pypxe_homelab_dhcp_requests_total", (("client_class", "pi"), ("outcome", "ignored")))] == 1
    assert got[("pypxe_homelab_tftp_transfers_total", (("result", "done"),))] == 1
    assert got[("pypxe_homelab_tftp_transfers_total", (("result", "aborted"),))] == 1
    assert got[("pypxe_homelab_tftp_sent_bytes_total", ())] == 42
    assert got[("pypxe_homelab_tftp_errors_total", ())] == 1
    assert got[("pypxe_homelab_http_boot_requests_total", (("kind", "kernel"),))] == 1
    assert got[("pypxe_homelab_http_sent_bytes_total", (("kind", "kernel"),))] == 1000
    assert got[("pypxe_homelab_http_boot_requests_total", (("kind", "cloud-init"),))] == 1
    assert got[("pypxe_homelab_http_sent_bytes_total", (("kind", "cloud-init"),))] == 77
    assert got[("pypxe_homelab_http_boot_errors_total", (("status", "404"),))] == 1
    assert got[("pypxe_homelab_installs_total", (("result", "failed"),))] == 1
    assert got[("pypxe_homelab_installs_total", (("result", "installed"),))] == 0
    assert got[("pypxe_homelab_event_record_seconds_count", ())] == len(events)
    assert got[("pypxe_homelab_events_total", (("kind", "tftp.done"),))] == 1


def test_reloads_and_scrape_time_gauges() -> None:
    metrics = Metrics()
    active = [3]
    metrics.read_at_scrape(
        active_transfers=lambda: active[0],
        nodes=lambda: 2,
        services={"tftp": lambda: True, "http": lambda: False},
    )
    metrics.reloaded(False)
    got = samples(metrics)
    assert got[("pypxe_homelab_config_reloads_total", (("result", "failed"),))] == 1
    assert got[("pypxe_homelab_config_last_reload_ok", ())] == 0
    assert got[("pypxe_homelab_tftp_active_transfers", ())] == 3
    assert got[("pypxe_homelab_nodes", ())] == 2
    assert got[("pypxe_homelab_service_up", (("service", "http"),))] == 0
    metrics.reloaded(True)
    active[0] = 0
    got = samples(metrics)
    assert got[("pypxe_homelab_config_last_reload_ok", ())] == 1
    assert got[("pypxe_homelab_tftp_active_transfers", ())] == 0


def test_two_servers_never_share_metrics() -> None:
    a, b = Metrics(), Metrics()
    a.reloaded(True)
    assert samples(b)[("pypxe_homelab_config_reloads_total", (("result", "ok"),))] == 0
    assert not any(name.startswith("pypxe_homelab") for name in REGISTRY._names_to_collectors)


def test_health_names_what_is_wrong() -> None:
    up = {"dhcp": True, "tftp": True}
    problem: list[str | None] = [None]
    health = Health({name: (lambda name=name: up[name]) for name in up}, lambda: problem[0])
    assert health.problems() == []
    up["tftp"] = False
    problem[0] = "config.yaml:3: server.http_port: 'x' is not a port number"
    assert health.problems() == [
        "tftp is not serving",
        "last config reload failed: config.yaml:3: server.http_port: 'x' is not a port number",
    ]
    assert Health().problems() == ["starting"]
