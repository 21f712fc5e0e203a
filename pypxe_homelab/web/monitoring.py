"""``/metrics`` (Prometheus text format) and ``/healthz`` (200 when every service is bound and the last
config reload applied, else 503 with the reasons), for Prometheus, container health checks and systemd."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from pypxe_homelab.metrics import CONTENT_TYPE, Metrics


@dataclass
class Health:
    """What makes the server healthy: each service's "is it serving" and the last reload's problem."""

    services: dict[str, Callable[[], bool]] = field(default_factory=dict)
    reload_problem: Callable[[], str | None] = lambda: None

    def problems(self) -> list[str]:
        """Why the server is not healthy; empty when it is."""
        found = [f"{name} is not serving" for name, up in self.services.items() if not up()]
        if not self.services:
            found.append("starting")
        problem = self.reload_problem()
        if problem:
            found.append(f"last config reload failed: {problem}")
        return found


def routes(metrics: Metrics, health: Health) -> Callable[[web.Application], None]:
    """A function that adds ``/metrics`` and ``/healthz`` to an aiohttp application."""

    async def metrics_page(request: web.Request) -> web.Response:
        response = web.Response(body=metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def healthz(request: web.Request) -> web.Response:
        problems = health.problems()
        status = 503 if problems else 200
        return web.json_response({"ok": not problems, "problems": problems}, status=status)

    def add(app: web.Application) -> None:
        app.router.add_get("/metrics", metrics_page)
        app.router.add_get("/healthz", healthz)

    return add
