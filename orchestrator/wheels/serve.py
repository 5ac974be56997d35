"""A static file server for the published index, with PEP 691 content negotiation.

Any static web server can serve the tree (it holds index.html and
index.json side by side); this one also answers `Accept:
application/vnd.pypi.simple.v1+json` with the JSON page.
"""

from __future__ import annotations

import functools
import http.server
from collections.abc import Callable
from pathlib import Path

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


class IndexHandler(http.server.SimpleHTTPRequestHandler):
    def send_head(self):  # type: ignore[no-untyped-def]
        path = Path(self.translate_path(self.path))
        if (
            path.is_dir()
            and JSON_TYPE in self.headers.get("Accept", "")
            and (path / "index.json").is_file()
        ):
            self.path = self.path.rstrip("/") + "/index.json"
            self.extensions_map = {**self.extensions_map, ".json": JSON_TYPE}
        return super().send_head()

    def log_message(self, format: str, *args: object) -> None:  # quiet by default
        pass


def make_server(root: Path, host: str, port: int) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(IndexHandler, directory=str(root))
    return http.server.ThreadingHTTPServer((host, port), handler)


def serve_index(root: Path, host: str, port: int, announce: Callable[[str], None]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    server = make_server(root, host, port)
    announce(f"http://{host}:{server.server_address[1]}/")
    try:
        server.serve_forever()
    finally:
        server.server_close()
