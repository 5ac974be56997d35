"""The index client against real servers: cache, validators, retries, failures."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.config import load_matrix
from orchestrator.config.matrix import expand, select
from orchestrator.core.errors import EXIT_ENVIRONMENT, IndexUnavailable
from orchestrator.core.layout import RunLayout
from orchestrator.model import Action
from orchestrator.plan.gather import make_plan
from orchestrator.plan.upstream import Upstream
from tests.conftest import REPO, CliRunner


@pytest.fixture
def static_index(tmp_path: Path) -> Iterator[str]:
    """A PEP 503 index served by a plain static web server on loopback."""
    root = tmp_path / "simple"
    (root / "demo").mkdir(parents=True)
    (root / "demo" / "index.html").write_text(
        '<a href="demo-1.0.tar.gz#sha256=00">demo-1.0.tar.gz</a>\n'
        '<a href="demo-1.0-py3-none-any.whl#sha256=11">demo-1.0-py3-none-any.whl</a>\n'
    )
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_conditional_request_after_ttl(static_index: str, tmp_path: Path) -> None:
    first = Upstream(static_index, tmp_path / "cache", ttl=0)
    page = first.project("demo")
    assert page is not None
    assert [f.filename for f in page.files("1.0")] == [
        "demo-1.0.tar.gz",
        "demo-1.0-py3-none-any.whl",
    ]
    time.sleep(0.01)
    again = Upstream(static_index, tmp_path / "cache", ttl=0)
    assert again.project("demo") is not None
    # The static server sent Last-Modified; the second ask is answered 304.
    assert (again.stats.requests, again.stats.not_modified) == (1, 1)
    warm = Upstream(static_index, tmp_path / "cache", ttl=600)
    assert warm.project("demo") is not None
    assert (warm.stats.requests, warm.stats.fresh_hits) == (0, 1)


def test_missing_project_is_none(static_index: str, tmp_path: Path) -> None:
    assert Upstream(static_index, tmp_path / "cache").project("no-such-project") is None


def test_network_down_fails_after_bounded_retries(tmp_path: Path) -> None:
    client = Upstream("http://127.0.0.1:9/simple/", tmp_path / "cache", retries=2, backoff=0.05)
    started = time.monotonic()
    with pytest.raises(IndexUnavailable, match="not reachable after 3 tries"):
        client.project("six")
    assert client.stats.requests == 3
    assert time.monotonic() - started < 5


def test_plan_cli_network_down_writes_nothing(tmp_path: Path, cli: CliRunner) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        (REPO / "platforms.yaml")
        .read_text()
        .replace("upstream: https://pypi.org/simple/", "upstream: http://127.0.0.1:9/simple/")
    )
    reqs = tmp_path / "r.txt"
    reqs.write_text("six==1.16.0\n")
    out = tmp_path / "plan.json"
    result = cli("plan", "-m", str(matrix), "-r", str(reqs), "-o", str(out))
    assert result.code == EXIT_ENVIRONMENT
    assert "not reachable after" in result.err
    assert "Traceback" not in result.err
    assert not out.exists()


def test_real_index_warm_plan_makes_no_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATE_CACHE_DIR", str(tmp_path / "cache"))  # truly cold
    reqs = tmp_path / "r.txt"
    reqs.write_text("six==1.16.0\nno-such-project-orchestrate-test==1.0\nlibsass==0.23.0\n")
    matrix = load_matrix(REPO / "platforms.yaml")
    platforms = select(expand(matrix), ["debian-*"])
    upstream = Upstream.of(matrix.index.upstream_index, RunLayout(tmp_path).index_cache)
    cold = make_plan(matrix, platforms, [reqs], upstream=upstream)
    assert cold.stats.requests >= 3
    verdicts = {(d.platform, d.name): d for d in cold.decisions}
    missing = verdicts[("debian-bookworm-arm64", "no-such-project-orchestrate-test")]
    assert missing.action == Action.UNAVAILABLE
    assert verdicts[("debian-bookworm-arm64", "libsass")].action == Action.BUILD
    warm = make_plan(
        matrix,
        platforms,
        [reqs],
        upstream=Upstream.of(matrix.index.upstream_index, upstream.cache_dir.parent),
    )
    assert warm.stats.requests == 0
    assert [d.as_dict() for d in warm.decisions] == [d.as_dict() for d in cold.decisions]


def test_pep691_json_from_our_own_index(tmp_path: Path) -> None:
    """Our `serve` negotiates PEP 691 JSON: the planner's client takes that path."""
    from orchestrator.publish.index import publish
    from orchestrator.publish.serve import make_server
    from orchestrator.store import Provenance, Store
    from tests.wheelfactory import make_wheel

    store = Store(tmp_path / "root")
    with store.locked() as records:
        store.add(records, make_wheel(tmp_path / "w", "demo", "1.0"), ["p"], Provenance())
    publish(store, ["p"])
    server = make_server(store.root, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/p/simple/"
        import requests

        answer = requests.get(
            base + "demo/", timeout=10, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        )
        assert answer.headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
        page = Upstream(base, tmp_path / "cache").project("demo")
        assert page is not None
        [wheel] = page.files("1.0")
        assert wheel.filename == "demo-1.0-py3-none-any.whl"
        assert wheel.requires_python == ">=3.8"
        html = requests.get(base + "demo/", timeout=10).text
        assert "<a href=" in html  # plain clients still get PEP 503 HTML
    finally:
        server.shutdown()


def test_hyphenated_sdist_versions_are_planned_from_the_real_index(
    cli: CliRunner, tmp_path: Path
) -> None:
    """Pins whose sdist spells its version with a hyphen (a legacy .zip, a .tar.gz):
    pip downloads and builds both, so the plan must build them, not call them
    unavailable."""
    from tests.matrices import local_matrix_copy

    matrix = local_matrix_copy(tmp_path / "m.yaml", tmp_path / "w")
    reqs = tmp_path / "r.txt"
    reqs.write_text("pybbox==0.0.5-alpha\npyyeelight==1.0-beta\n")
    result = cli("plan", "-m", str(matrix), "-r", str(reqs), "--format", "json")
    assert result.code == 0, result.err
    import json

    rows = json.loads(result.out)
    assert rows, result.out
    by_name = {(r["name"], r["platform"]): r for r in rows}
    for name in ("pybbox", "pyyeelight"):
        row = by_name[(name, "debian-bookworm-amd64")]
        assert row["action"] == "build", row
        assert row["sdist"].endswith((".zip", ".tar.gz"))
