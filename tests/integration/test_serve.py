"""`orchestrate serve` as a user runs it: inside its root, odd paths refused with 400,
200 concurrent clients answered, and system folders refused as an index root."""

from __future__ import annotations

import http.client
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from orchestrator.store import Provenance, Store
from tests.conftest import CliRunner
from tests.matrices import local_matrix_copy
from tests.wheelfactory import make_wheel

AMD = "debian-bookworm-amd64"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    root = tmp_path / "wheels"
    matrix = local_matrix_copy(tmp_path / "m.yaml", root)
    store = Store(root)
    with store.locked() as records:
        store.add(records, make_wheel(tmp_path, "demo", "1.0"), [AMD], Provenance())
    assert (
        subprocess.run(["orchestrate", "publish", "-m", str(matrix)], check=False).returncode == 0
    )
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the root")
    (root / "escape").symlink_to(secret)
    (root / "escape-dir").symlink_to(tmp_path)
    server = subprocess.Popen(
        ["orchestrate", "serve", "-m", str(matrix), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    port = int(line.strip().rstrip("/").rsplit(":", 1)[1])
    try:
        yield "127.0.0.1", port, root
    finally:
        server.terminate()
        _, err = server.communicate(timeout=10)
        assert "Traceback" not in err


def get(host: str, port: int, path: str) -> int:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_serves_the_index_and_nothing_outside_its_root(served: tuple[str, int, Path]) -> None:
    host, port, _root = served
    assert get(host, port, f"/{AMD}/simple/demo/") == 200
    assert get(host, port, "/escape") == 404  # a symlink out of the root
    assert get(host, port, "/escape-dir/secret.txt") == 404
    assert get(host, port, "/../../etc/passwd") in (400, 404)
    assert get(host, port, "/%2e%2e/%2e%2e/etc/passwd") in (400, 404)


def test_odd_paths_are_400(served: tuple[str, int, Path]) -> None:
    host, port, _root = served
    assert get(host, port, "/a%00b") == 400
    assert get(host, port, "/" + "a" * 5000) == 400
    assert get(host, port, "/" + "a/" * 200) == 400


def test_two_hundred_concurrent_clients(served: tuple[str, int, Path]) -> None:
    host, port, _root = served
    with ThreadPoolExecutor(max_workers=200) as pool:
        codes = list(pool.map(lambda _i: get(host, port, f"/{AMD}/simple/demo/"), range(200)))
    assert codes == [200] * 200


@pytest.mark.parametrize("root", ["/", "/etc", "/usr", str(Path.home())])
def test_system_folders_are_refused_as_the_index_root(
    tmp_path: Path, cli: CliRunner, root: str
) -> None:
    matrix = local_matrix_copy(tmp_path / "m.yaml", Path(root))
    result = cli("serve", "-m", str(matrix), "--port", "0")
    assert result.code == 2
    assert "system folder" in result.err
    assert not (Path(root) / "store").exists()  # nothing was created there
