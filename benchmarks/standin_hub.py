"""A local stand-in for the Hugging Face hub, for the tests and the load benchmark (no network).

:class:`StandInHub` serves the files of a folder as one repository at one revision on
127.0.0.1, answering the requests ``huggingface_hub`` makes for ``hf_hub_download``:
``HEAD``/``GET /{repo}/resolve/{revision}/{path}`` with ``ETag`` (the file's sha256, as the hub
gives for LFS files), ``X-Repo-Commit``, ``Content-Length`` and ranges (``206``). Anything else
(``/api/...``, another revision, a missing file) is a 404. Every request is recorded, and
:meth:`StandInHub.cut` makes the next ``GET`` of a file stop after some bytes and drop the
connection. Point ``HF_ENDPOINT`` at :attr:`StandInHub.url`.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Request:
    """One request the stand-in received: ``method``, repository ``path`` and ``Range`` header."""

    method: str
    path: str
    range: str | None


class StandInHub:
    """Serve every file under ``root`` as ``repo_id`` at ``revision`` (a context manager)."""

    def __init__(self, root: str | Path, repo_id: str, revision: str) -> None:
        self.root = Path(root)
        self.repo_id, self.revision = repo_id, revision
        self.files = {p.relative_to(self.root).as_posix(): p for p in sorted(self.root.rglob("*")) if p.is_file()}
        self.hashes = {name: _sha256(path) for name, path in self.files.items()}
        self.requests: list[Request] = []
        self._cuts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the stand-in hub is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def cut(self, path: str, after_bytes: int) -> None:
        """Make the next GET of ``path`` send ``after_bytes`` bytes of its body, then close the connection."""
        self._cuts[path] = after_bytes

    def __enter__(self) -> StandInHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                hub._answer(self, body=False)

            def do_GET(self) -> None:
                hub._answer(self, body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        prefix = f"/{self.repo_id}/resolve/{self.revision}/"
        url_path = unquote(handler.path.split("?", 1)[0])
        name = url_path[len(prefix):] if url_path.startswith(prefix) else None
        with self._lock:
            self.requests.append(Request(handler.command, name if name is not None else url_path, handler.headers.get("Range")))
        if name not in self.files:
            handler.send_response(404)
            handler.send_header("X-Error-Code", "EntryNotFound" if name is not None else "RepoNotFound")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        path, size = self.files[name], self.files[name].stat().st_size
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", handler.headers.get("Range") or "")
        if match and body:
            start = min(int(match.group(1)), size)
        handler.send_response(206 if start else 200)
        handler.send_header("ETag", f'"{self.hashes[name]}"')
        handler.send_header("X-Repo-Commit", self.revision)
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Length", str(size - start))
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        handler.end_headers()
        if not body:
            return
        limit = self._cuts.pop(name, None) if handler.command == "GET" else None
        with open(path, "rb") as file:
            file.seek(start)
            sent = 0
            while chunk := file.read(_CHUNK if limit is None else min(_CHUNK, limit - sent)):
                handler.wfile.write(chunk)
                sent += len(chunk)
        if limit is not None:
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
