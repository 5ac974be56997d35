"""`orchestrate doctor --index URL` against real HTTP servers on loopback: our own
(content negotiation) and Python's plain static one, on a published index that is
then broken the ways clients notice."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.publish.index import publish
from orchestrator.publish.serve import make_server
from orchestrator.store import Provenance, Store
from tests.conftest import CliRunner
from tests.wheelfactory import make_wheel

PLATFORM = "debian-bookworm-amd64"


@pytest.fixture
def index(tmp_path: Path) -> Path:
    root = tmp_path / "wheels"
    store = Store(root)
    with store.locked() as records:
        for name, version in (("demo", "1.0"), ("other-thing", "2.0")):
            store.add(records, make_wheel(tmp_path, name, version), [PLATFORM], Provenance())
    assert [r.status for r in publish(store, [PLATFORM])] == ["published"]
    return root


def _serve(server: http.server.HTTPServer) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def ours(index: Path) -> Iterator[str]:
    yield from _serve(make_server(index, "127.0.0.1", 0))


class Static(http.server.SimpleHTTPRequestHandler):
    """Python's http.server: no content negotiation, so clients get HTML only."""

    def log_message(self, *_a: object) -> None:
        pass


@pytest.fixture
def static(index: Path) -> Iterator[str]:
    handler = functools.partial(Static, directory=str(index))
    yield from _serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler))


def _page(index: Path, project: str, name: str) -> Path:
    return index / PLATFORM / "simple" / project / name


def _checks(cli: CliRunner, url: str) -> tuple[int, dict[str, dict[str, object]]]:
    result = cli("doctor", "--index", url, "--format", "json")
    assert "Traceback" not in result.err
    return result.code, {c["subject"].split()[0]: c for c in json.loads(result.out)}


def test_a_published_index_passes_over_json_and_html(cli: CliRunner, ours: str) -> None:
    code, checks = _checks(cli, ours)  # the root: every platform it links
    assert code == 0, checks
    assert set(checks) == {"pages", "files", "metadata", "clients"}
    assert "HTML and JSON" in str(checks["pages"]["detail"])
    assert "2 file(s)" in str(checks["files"]["detail"])
    assert "2 PEP 658" in str(checks["metadata"]["detail"])


def test_a_plain_static_server_serves_a_complete_html_index(cli: CliRunner, static: str) -> None:
    code, checks = _checks(cli, f"{static}{PLATFORM}/simple/")
    assert code == 0, checks
    assert "HTML only" in str(checks["pages"]["detail"])
    assert "2 PEP 658" in str(checks["metadata"]["detail"])  # metadata reachable from HTML


def test_the_key_that_crashes_debian_12s_pip_is_found(
    cli: CliRunner, ours: str, index: Path
) -> None:
    """PEP 714: pip 23.0.1 crashes on `dist-info-metadata` as a mapping in JSON."""
    page = _page(index, "demo", "index.json")
    data = json.loads(page.read_text())
    assert all("dist-info-metadata" not in f for f in data["files"])  # what we publish
    for entry in data["files"]:
        entry["dist-info-metadata"] = entry["core-metadata"]
    page.write_text(json.dumps(data))
    code, checks = _checks(cli, ours)
    assert code == 1
    assert checks["clients"]["ok"] is False
    assert "pip 23.0 and 23.0.1" in str(checks["clients"]["detail"])
    assert "demo-1.0-py3-none-any.whl" in str(checks["clients"]["detail"])


def test_a_changed_wheel_and_a_lying_metadata_file_are_named(
    cli: CliRunner, ours: str, index: Path
) -> None:
    wheel = _page(index, "demo", "demo-1.0-py3-none-any.whl")
    wheel.unlink()  # a hard link into the store: replace it rather than write through it
    wheel.write_bytes(b"not the published bytes")
    metadata = _page(index, "other-thing", "other_thing-2.0-py3-none-any.whl.metadata")
    text = metadata.read_text().replace("Version: 2.0", "Version: 3.0")
    metadata.unlink()
    metadata.write_text(text)
    code, checks = _checks(cli, ours)
    assert code == 1
    assert "demo-1.0-py3-none-any.whl: sha256" in str(checks["files"]["detail"])
    detail = str(checks["metadata"]["detail"])
    assert "other_thing-2.0-py3-none-any.whl.metadata: sha256" in detail
    assert "names version '3.0'" in detail


def test_json_with_the_wrong_content_type_is_a_client_problem(
    cli: CliRunner, index: Path, tmp_path: Path
) -> None:
    """A server that answers JSON as application/json: pip skips such pages."""

    class Plain(Static):
        def send_head(self):  # type: ignore[no-untyped-def]
            if "json" in self.headers.get("Accept", "") and self.path.endswith("/simple/"):
                self.path += "index.json"
            return super().send_head()

    handler = functools.partial(Plain, directory=str(index))
    for url in _serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)):
        code, checks = _checks(cli, f"{url}{PLATFORM}/simple/")
        assert code == 1
        assert "application/json" in str(checks["clients"]["detail"])


def test_an_unreachable_index_is_exit_3(cli: CliRunner) -> None:
    result = cli("doctor", "--index", "http://127.0.0.1:9/")
    assert result.code == 3
    assert "not readable" in result.out
    assert "Traceback" not in result.err


def test_a_hostile_page_is_a_finding_not_a_crash(cli: CliRunner, ours: str, index: Path) -> None:
    _page(index, "demo", "index.json").write_text('{"files": [{"filename": 7}]')
    _page(index, "demo", "index.html").write_text("<a href='x'>" * 1000)
    code, checks = _checks(cli, ours)
    assert code == 1
    assert "simple/demo/" in str(checks["pages"]["detail"])


def test_the_readme_shows_the_nginx_snippet_the_tests_run() -> None:
    from tests.conftest import REPO

    snippet = (REPO / "deploy" / "nginx" / "wheel-cache.conf").read_text().rstrip("\n")
    page = (REPO / "docs" / "how-to" / "serve-and-install.md").read_text()
    assert f"```nginx\n{snippet}\n```" in page
