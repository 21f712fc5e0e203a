"""The CLI's API client against real sockets on loopback: nothing listening, and a listener that is not HTTP."""

from __future__ import annotations

import socket
import threading

import pytest

from pypxe_homelab.web.client import ApiClient, ApiError, ServerNotRunning


def test_nothing_listening_is_a_server_not_running() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago, and is closed again
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ServerNotRunning):
        ApiClient(port, timeout=2.0).nodes()


def test_a_listener_that_is_not_http_is_named_with_the_fix() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        with pytest.raises(ApiError) as caught:
            ApiClient(port, timeout=2.0).nodes()
    finally:
        thread.join(5)
        listener.close()
    message = str(caught.value)
    assert f"did not answer HTTP: another program uses port {port}?" in message
    assert "server.http_port" in message
