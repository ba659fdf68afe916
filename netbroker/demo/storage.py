"""The demo's storage: one local HTTP server standing in for every endpoint.

Each endpoint's base URL is ``http://127.0.0.1:PORT/<ENDPOINT>``; files live
under a directory at Rucio's deterministic paths, read with GET and written
with PUT (what WebDAV storage does for the pilot's copytools). The demo's
DDM stand-in copies a dataset from one endpoint to another with
:meth:`Storage.copy_dataset`.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from netbroker.registry.datasets import rucio_path

__all__ = ["Storage"]


class Storage:
    """A GET/PUT file server on 127.0.0.1 rooted at a directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        store = self

        class Handler(BaseHTTPRequestHandler):
            def _path(self) -> Path | None:
                path = (store.root / self.path.split("?")[0].lstrip("/")).resolve()
                return path if store.root.resolve() in path.parents else None

            def do_GET(self) -> None:
                path = self._path()
                if path is None or not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self) -> None:
                path = self._path()
                if path is None:
                    self.send_error(403)
                    return
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def endpoint_url(self, endpoint: str) -> str:
        return f"{self.url}/{endpoint}"

    def path(self, endpoint: str, scope: str, lfn: str) -> Path:
        """Where a file of an endpoint lives on disk."""
        return self.root / endpoint / rucio_path(scope, lfn)

    def read(self, endpoint: str, scope: str, lfn: str) -> bytes:
        return self.path(endpoint, scope, lfn).read_bytes()

    def put(self, endpoint: str, scope: str, lfn: str, data: bytes) -> None:
        path = self.path(endpoint, scope, lfn)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def copy_dataset(self, src: str, dst: str, scope: str, lfns: list[str]) -> int:
        """Copy files between endpoints (the transfer DDM would make); returns bytes."""
        moved = 0
        for lfn in lfns:
            data = self.path(src, scope, lfn).read_bytes()
            self.put(dst, scope, lfn, data)
            moved += len(data)
        return moved

    def written(self) -> list[Path]:
        """Every file under the root (outputs the pilots wrote included)."""
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
