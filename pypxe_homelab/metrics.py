"""Prometheus metrics of one `serve` process (prometheus-client, on a registry of its own).

Counters are a consumer of the event stream: ``recorded(event, seconds)`` is a listener of the background
recorder, called once per recorded event; it maps the event's kind to counters and the recording time to a
histogram, and nothing else in the server counts. Gauges (active TFTP transfers, nodes,
services bound) are read when Prometheus scrapes. Exposed at ``/metrics`` by ``web.monitoring``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from pypxe_homelab.events import DHCP_KINDS, Event, Kind
from pypxe_homelab.state.lifecycle import installer_outcome

NAMESPACE = "pypxe_homelab"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# seconds; recording is a SQLite transaction, normally well under a millisecond
RECORD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def http_kind(event: Event) -> str:
    """What an HTTP transfer fetched, as a metric label: loader, config, kernel, initrd, iso, cloud-init or
    file (the Booter's ``FileAnswer.what``)."""
    if event.kind is Kind.CLOUDINIT_FETCH:
        return "cloud-init"
    return str(event.detail.get("what") or "file")


class Metrics:
    """The counters, gauges and histogram of the server, and their text exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r, ns = self.registry, NAMESPACE
        self.dhcp = Counter(
            "dhcp_requests",
            "PXE requests seen, by outcome (offer, ack, ignored) and client class (bios, efi64, ipxe, pi, ...)",
            ["outcome", "client_class"],
            namespace=ns,
            registry=r,
        )
        self.tftp_transfers = Counter(
            "tftp_transfers",
            "TFTP transfers ended, by result (done, aborted)",
            ["result"],
            namespace=ns,
            registry=r,
        )
        self.tftp_errors = Counter(
            "tftp_errors", "TFTP requests refused or transfers failed", namespace=ns, registry=r
        )
        self.tftp_bytes = Counter("tftp_sent_bytes", "Bytes sent by TFTP", namespace=ns, registry=r)
        self.tftp_active = Gauge(
            "tftp_active_transfers", "TFTP transfers under way", namespace=ns, registry=r
        )
        self.http_requests = Counter(
            "http_boot_requests",
            "HTTP boot requests by kind (loader, kernel, initrd, iso, cloud-init, config, file)",
            ["kind"],
            namespace=ns,
            registry=r,
        )
        self.http_bytes = Counter(
            "http_sent_bytes",
            "Bytes sent for HTTP boot requests, by kind",
            ["kind"],
            namespace=ns,
            registry=r,
        )
        self.http_errors = Counter(
            "http_boot_errors", "HTTP boot requests answered with an error, by status", ["status"],
            namespace=ns, registry=r,
        )  # fmt: skip
        self.installs = Counter(
            "installs", "Installs ended, by result (installed, failed)", ["result"], namespace=ns, registry=r
        )
        self.reloads = Counter(
            "config_reloads",
            "config.yaml reloads, by result (ok, failed)",
            ["result"],
            namespace=ns,
            registry=r,
        )
        self.reload_ok = Gauge(
            "config_last_reload_ok", "1 when the last reload of config.yaml applied", namespace=ns, registry=r
        )
        self.reload_time = Gauge(
            "config_last_reload_timestamp_seconds", "When config.yaml was last read", namespace=ns, registry=r
        )
        self.record_seconds = Histogram(
            "event_record_seconds",
            "Time to record one event in the state database",
            namespace=ns,
            registry=r,
            buckets=RECORD_BUCKETS,
        )
        self.events = Counter("events", "Events recorded, by kind", ["kind"], namespace=ns, registry=r)
        self.nodes = Gauge("nodes", "Nodes in the inventory", namespace=ns, registry=r)
        self.up = Gauge(
            "service_up", "1 while a service is bound and serving", ["service"], namespace=ns, registry=r
        )
        self.reload_ok.set(1)
        self.reload_time.set(time.time())
        for outcome in ("offer", "ack", "ignored"):  # so rates start from zero, not from the first event
            self.dhcp.labels(outcome, "bios")
        for result in ("done", "aborted"):
            self.tftp_transfers.labels(result)
        for result in ("installed", "failed"):
            self.installs.labels(result)
        for result in ("ok", "failed"):
            self.reloads.labels(result)

    # -- the event consumer ------------------------------------------------------------------------

    def recorded(self, event: Event, seconds: float) -> None:
        """The recorder's listener: one event was recorded in ``seconds``."""
        self.record_seconds.observe(seconds)
        self.observe(event)

    def observe(self, event: Event) -> None:
        """Count one recorded event."""
        d, kind = event.detail, event.kind
        self.events.labels(kind.value).inc()
        if kind in DHCP_KINDS:
            self.dhcp.labels(kind.value.split(".", 1)[1], str(d.get("class") or "unknown")).inc()
        elif kind is Kind.TFTP_DONE:
            self.tftp_transfers.labels("done").inc()
            self.tftp_bytes.inc(_number(d.get("bytes")))
        elif kind is Kind.TFTP_ABORT:
            self.tftp_transfers.labels("aborted").inc()
            self.tftp_bytes.inc(_number(d.get("bytes")))
        elif kind is Kind.TFTP_ERROR:
            self.tftp_errors.inc()
        elif kind is Kind.HTTP_GET:
            self.http_requests.labels(http_kind(event)).inc()
        elif kind is Kind.CLOUDINIT_FETCH:
            self.http_requests.labels("cloud-init").inc()
            self.http_bytes.labels("cloud-init").inc(_number(d.get("bytes")))
        elif kind is Kind.HTTP_DONE:
            self.http_bytes.labels(http_kind(event)).inc(_number(d.get("bytes")))
        elif kind is Kind.HTTP_ERROR:
            self.http_errors.labels(str(d.get("status", ""))).inc()
        elif kind is Kind.INSTALL_CALLBACK:
            self.installs.labels("installed").inc()
        elif kind is Kind.INSTALL_EVENT:
            outcome = installer_outcome(d)
            if outcome is not None:
                self.installs.labels(outcome).inc()

    def reloaded(self, ok: bool) -> None:
        """A reload of config.yaml was tried."""
        self.reloads.labels("ok" if ok else "failed").inc()
        self.reload_ok.set(1 if ok else 0)
        self.reload_time.set(time.time())

    # -- gauges read at scrape time ----------------------------------------------------------------

    def read_at_scrape(
        self,
        *,
        active_transfers: Callable[[], float],
        nodes: Callable[[], float],
        services: dict[str, Callable[[], bool]],
    ) -> None:
        self.tftp_active.set_function(active_transfers)
        self.nodes.set_function(nodes)
        for name, up in services.items():
            self.up.labels(name).set_function(_as_number(up))

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _as_number(check: Callable[[], bool]) -> Callable[[], float]:
    return lambda: 1.0 if check() else 0.0
