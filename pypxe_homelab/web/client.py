"""A small client of the running server's JSON API, for the CLI (``probe``, ``status``, ``reinstall``)."""

from __future__ import annotations

import json
import socket
from typing import Any

# The header mutating API calls carry (browsers cannot add it cross-site); the API checks it.
LOCAL_HEADER = "X-Pypxe-Homelab"


class ServerNotRunning(Exception):
    """Nothing answers on the API address."""


class ApiError(Exception):
    """The server answered with an error; the message is the server's."""


class ApiClient:
    """Talks to ``http://127.0.0.1:<http_port>`` with http.client (urllib's extra imports would be most of a
    quick command's start). It connects first and loads http.client (with ``ssl`` and ``email``) only when
    something listens: a command run with no server started reads the state database at once."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 3.0) -> None:
        self.base = f"http://{host}:{port}"
        self.host, self.port = host, port
        self.timeout = timeout

    def _call(self, method: str, path: str) -> Any:
        headers = {LOCAL_HEADER: "1"} if method == "POST" else {}
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as err:  # refused, unreachable, timed out
            raise ServerNotRunning(self.base) from err
        import http.client

        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        conn.sock = sock
        try:
            conn.request(method, path, body=b"" if method == "POST" else None, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        except OSError as err:  # reset or timed out
            raise ServerNotRunning(self.base) from err
        except http.client.HTTPException as err:  # something listens there, but does not speak HTTP
            raise ApiError(
                f"{self.base}{path} did not answer HTTP: another program uses port {self.port}? "
                "stop it, or set server.http_port to the port pypxe-homelab serves on"
            ) from err
        finally:
            conn.close()
        if resp.status >= 400:
            try:
                message = json.loads(body).get("error", resp.reason)
            except (ValueError, AttributeError):
                message = resp.reason
            raise ApiError(str(message))
        try:
            return json.loads(body)
        except ValueError as err:
            raise ApiError(f"{self.base}{path} did not answer JSON: is it pypxe-homelab?") from err

    def nodes(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/nodes")["nodes"]

    def nodes_page(self, unregistered: int) -> tuple[list[dict[str, Any]], int | None]:
        """The registered nodes and the ``unregistered`` most recent others, and how many others there are
        (None from a server that sends every node)."""
        data = self._call("GET", f"/api/nodes?unregistered={int(unregistered)}")
        return data["nodes"], data.get("unregistered_total")

    def node(self, device_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/nodes/{device_id}")

    def events(self, device_id: str, limit: int = 200) -> list[dict[str, Any]]:
        return self._call("GET", f"/api/nodes/{device_id}/events?limit={limit}")["events"]

    def devices(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/devices")["devices"]

    def reinstall(self, device_id: str) -> int:
        return int(self._call("POST", f"/api/nodes/{device_id}/reinstall")["generation"])
