"""A static file server for the published index, with PEP 691 content negotiation.

Any static web server can serve the tree (it holds index.html and
index.json side by side); this one also answers `Accept:
application/vnd.pypi.simple.v1+json` with the JSON page.
"""

from __future__ import annotations

import errno
import functools
import http.server
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from orchestrator.core.errors import EnvironmentProblem, InputError

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


MAX_PATH = 2048  # bytes of a request path; a wheel cache's longest is far below
MAX_DEPTH = 16  # path segments: <platform>/simple/<project>/<file> is 4


class IndexHandler(http.server.SimpleHTTPRequestHandler):
    def send_head(self):  # type: ignore[no-untyped-def]
        problem = self._refused(self.path)
        if problem is not None:
            self.send_error(problem[0], problem[1])
            return None
        path = Path(self.translate_path(self.path))
        if (
            path.is_dir()
            and JSON_TYPE in self.headers.get("Accept", "")
            and (path / "index.json").is_file()
        ):
            self.path = self.path.rstrip("/") + "/index.json"
            self.extensions_map = {**self.extensions_map, ".json": JSON_TYPE}
        return super().send_head()

    def _refused(self, raw: str) -> tuple[int, str] | None:
        """400 for paths no index has; 404 for anything that leaves the root, e.g.
        through a symlink (the platform links point inside it)."""
        path = urllib.parse.unquote(raw.split("?", 1)[0].split("#", 1)[0])
        if "\0" in path or len(raw) > MAX_PATH or path.count("/") > MAX_DEPTH:
            return 400, "Bad request path"
        try:
            real = Path(self.translate_path(raw)).resolve()
        except (OSError, ValueError, RuntimeError):
            return 400, "Bad request path"
        root = Path(self.directory).resolve()
        if real != root and root not in real.parents:
            return 404, "File not found"
        return None

    def log_message(self, format: str, *args: object) -> None:  # quiet by default
        pass


class IndexServer(http.server.ThreadingHTTPServer):
    """A thread per client, and a listen backlog for many at once (pip, CI fleets)."""

    daemon_threads = True
    request_queue_size = 1024


def make_server(
    root: Path, host: str, port: int, handler: type[IndexHandler] = IndexHandler
) -> IndexServer:
    return IndexServer((host, port), functools.partial(handler, directory=str(root)))


def serve_index(root: Path, host: str, port: int, announce: Callable[[str], None]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    try:
        server = make_server(root, host, port)
    except OSError as exc:  # in use (the host's state: 3), or an address it lacks (2)
        kind = EnvironmentProblem if exc.errno == errno.EADDRINUSE else InputError
        raise kind(
            f"cannot serve on {host}:{port}: {exc.strerror or exc}",
            hint="choose another --port (0 picks a free one) or a --host this machine has",
        ) from None
    except (UnicodeError, ValueError, OverflowError) as exc:
        raise InputError(f"cannot serve on {host!r}:{port}: {exc}") from None
    announce(f"http://{host}:{server.server_address[1]}/")
    try:
        server.serve_forever()
    finally:
        server.server_close()
