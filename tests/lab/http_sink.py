"""A tiny HTTP server for lab tests: serves a directory and records POST bodies.

    python -m tests.lab.http_sink BIND_IP PORT DIRECTORY POST_LOG

Every POST is answered 200 ``ok`` and appended to POST_LOG as one line:
``<path> <body>`` (body decoded as UTF-8, newlines escaped).
"""

from __future__ import annotations

import functools
import http.server
import sys
from pathlib import Path


class _Handler(http.server.SimpleHTTPRequestHandler):
    post_log: Path

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        line = body.decode("utf-8", "replace").replace("\n", "\\n")
        with self.post_log.open("a") as f:
            f.write(f"{self.path} {line}\n")
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")


def serve(bind: str, port: int, directory: Path, post_log: Path) -> None:
    """Serve *directory* on bind:port forever, logging POSTs to *post_log*."""
    handler = type("Handler", (_Handler,), {"post_log": post_log})
    server = http.server.ThreadingHTTPServer(
        (bind, port), functools.partial(handler, directory=str(directory))
    )
    server.serve_forever()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
