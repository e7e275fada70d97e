"""A local HTTP server that speaks the part of the Hugging Face hub API ``hf_hub_download`` uses.

``HEAD``/``GET /{org}/{repo}/resolve/{revision}/{path}`` answer with ``X-Repo-Commit``, ``ETag``
(the file's sha256, as the hub gives for LFS files), ``Content-Length`` and ``Accept-Ranges``;
``GET`` honours ``Range: bytes=N-`` (206 + ``Content-Range``) so resumed downloads work; unknown
files get 404 with ``X-Error-Code: EntryNotFound``. ``fail=True`` answers 503 to everything;
a file name in ``drop_once`` gets its first full ``GET`` cut after half the body (the connection
closes), as a flaky network would.
Files are served from ``root/{org}/{repo}/{path}``. Every request is counted and logged.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


class HubState:
    def __init__(self, root: Path, fail: bool = False) -> None:
        self.root = root
        self.fail = fail
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.drop_once: set[str] = set()
        self.lock = threading.Lock()
        self._sha: dict[Path, str] = {}

    def sha256(self, path: Path) -> str:
        if path not in self._sha:
            self._sha[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        return self._sha[path]


def _handler(state: HubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def _reply(self, head_only: bool) -> None:
            with state.lock:
                state.requests.append((self.command, self.path, self.headers.get("Range")))
            if state.fail:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            match = _RESOLVE.match(unquote(self.path.split("?", 1)[0]))
            file = state.root / match["repo"] / match["path"] if match else None
            if file is None or ".." in Path(match["path"]).parts or not file.is_file():  # type: ignore[index]
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = file.read_bytes()
            start = 0
            rng = self.headers.get("Range")
            if rng and not head_only:
                m = re.match(r"bytes=(\d+)-(\d*)$", rng)
                if m:
                    start = int(m[1])
            body = data[start:]
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{state.sha256(file)}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body) if not head_only else len(data)))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not head_only:
                with state.lock:
                    drop = not start and file.name in state.drop_once
                    state.drop_once.discard(file.name)
                if drop:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self._reply(head_only=True)

        def do_GET(self) -> None:
            self._reply(head_only=False)

    return Handler


@contextmanager
def local_hub(root: Path, fail: bool = False) -> Iterator[tuple[str, HubState]]:
    """``(endpoint URL, state)`` of a hub serving ``root`` on 127.0.0.1 for the ``with`` block."""
    state = HubState(root, fail)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    """``python -m tests.zipvoice.hub_server ROOT PORTFILE``: serve until killed (for e2e tests)."""
    import sys
    import time

    root, portfile = Path(sys.argv[1]), Path(sys.argv[2])
    with local_hub(root) as (url, _):
        portfile.write_text(url)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
