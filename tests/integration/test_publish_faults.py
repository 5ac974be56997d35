"""Publishing under concurrency and faults, through the CLI: concurrent publishers,
`kill -9` at random moments, an unusable manifest, a tampered stored wheel, a stray
folder, a read-only root, and rollback. After each, every platform's served index
must be complete: every listed file exists and matches its #sha256."""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.store import Provenance, Store
from tests.conftest import CliRunner
from tests.matrices import local_matrix_copy
from tests.wheelfactory import make_wheel

PLATFORMS = ("debian-bookworm-amd64", "debian-bookworm-arm64")
HREF = re.compile(r'href="([^"#]+)#sha256=([0-9a-f]{64})"')


@pytest.fixture
def index(tmp_path: Path) -> tuple[Path, Path]:
    """A matrix whose index root holds a store with a few wheels, published once."""
    root = tmp_path / "wheels"
    matrix = local_matrix_copy(tmp_path / "m.yaml", root)
    for i in range(5):
        add(root, tmp_path, f"pkg{i}", "1.0")
    assert run_cli("publish", "-m", str(matrix)) == 0
    return matrix, root


def add(root: Path, tmp: Path, name: str, version: str, *, body: str = "VALUE = 1\n") -> None:
    wheel = make_wheel(tmp / "made", name, version, body=body)
    store = Store(root)
    with store.locked() as records:
        store.add(records, wheel, list(PLATFORMS), Provenance())


def run_cli(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def served_complete(root: Path) -> int:
    """Check every platform's served index; return how many files it lists."""
    listed = 0
    for platform in PLATFORMS:
        simple = root / platform / "simple"
        projects = [p for p in simple.iterdir() if p.is_dir()]
        assert projects, f"{platform} serves no project"
        for project in projects:
            page = (project / "index.html").read_text()
            for href, digest in HREF.findall(page):
                data = (project / href).read_bytes()
                assert hashlib.sha256(data).hexdigest() == digest, f"{project / href}"
                listed += 1
    return listed


def _publish_child(matrix: str) -> None:
    os._exit(run_cli("publish", "-m", matrix))


def test_concurrent_publishers_never_break_the_index(
    index: tuple[Path, Path], tmp_path: Path
) -> None:
    matrix, root = index
    fork = multiprocessing.get_context("fork")
    for round_ in range(50):
        add(root, tmp_path, f"new{round_}", "1.0")  # something to publish each round
        children = [fork.Process(target=_publish_child, args=(str(matrix),)) for _ in range(2)]
        for child in children:
            child.start()
        for child in children:
            child.join(60)
            assert child.exitcode == 0
        assert served_complete(root) == 2 * (5 + round_ + 1)
    names = [p.name for p in (root / "releases" / PLATFORMS[0]).iterdir()]
    assert not [n for n in names if n.startswith(".staging")]


def test_kill_9_at_random_moments_leaves_a_complete_index(
    index: tuple[Path, Path], tmp_path: Path
) -> None:
    matrix, root = index
    fork = multiprocessing.get_context("fork")
    rng = random.Random(1)
    for round_ in range(100):
        add(root, tmp_path, f"k{round_}", "1.0")
        child = fork.Process(target=_publish_child, args=(str(matrix),))
        child.start()
        time.sleep(rng.uniform(0, 0.06))
        if child.pid is not None and child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        served_complete(root)
    assert run_cli("publish", "-m", str(matrix)) == 0
    assert served_complete(root) == 2 * (5 + 100)


@pytest.mark.parametrize("content", [None, b"", b'{"format": 1, "wheels": {', b"[]", b"{}"])
def test_an_unusable_manifest_is_never_published(
    index: tuple[Path, Path], tmp_path: Path, cli: CliRunner, content: bytes | None
) -> None:
    matrix, root = index
    add(root, tmp_path, "later", "1.0")  # so that a publish would change something
    before = {p: (root / p).readlink() for p in PLATFORMS}
    manifest = root / "store" / "manifest.json"
    if content is None:
        manifest.unlink()
    else:
        manifest.write_bytes(content)
    result = cli("publish", "-m", str(matrix))
    assert result.code == 4, result.err
    assert "manifest.json" in result.err
    assert "Traceback" not in result.err
    assert {p: (root / p).readlink() for p in PLATFORMS} == before
    assert served_complete(root) == 2 * 5


def test_a_stored_wheel_that_differs_from_its_record_is_not_published(
    index: tuple[Path, Path], tmp_path: Path, cli: CliRunner
) -> None:
    matrix, root = index
    add(root, tmp_path, "later", "1.0")
    stored = next((root / "store" / "any").glob("later-*.whl"))
    stored.unlink()  # published releases hold their own links: only the store's copy changes
    stored.write_bytes(b"half-written by a crash")
    result = cli("publish", "-m", str(matrix))
    assert result.code == 1
    assert "does not match its manifest record" in result.err
    assert served_complete(root) == 2 * 5  # the previous release is still served


def test_a_stray_folder_under_releases_stops_nothing(
    index: tuple[Path, Path], tmp_path: Path, cli: CliRunner
) -> None:
    matrix, root = index
    (root / "releases" / PLATFORMS[0] / "junk").mkdir()
    (root / "releases" / "not-a-platform").mkdir()
    add(root, tmp_path, "later", "1.0")
    result = cli("publish", "-m", str(matrix))
    assert result.code == 0, result.err
    assert served_complete(root) == 2 * 6


def test_rollback_works_from_the_command_line(
    index: tuple[Path, Path], tmp_path: Path, cli: CliRunner
) -> None:
    matrix, root = index
    first = (root / PLATFORMS[0]).readlink().name
    add(root, tmp_path, "later", "1.0")
    assert cli("publish", "-m", str(matrix)).code == 0
    result = cli("rollback", PLATFORMS[0], "-m", str(matrix))
    assert result.code == 0, result.err
    assert (root / PLATFORMS[0]).readlink().name == first
    assert f"now serves release {first}" in result.out
    unknown = cli("rollback", "debian-nope-amd64", "-m", str(matrix))
    assert unknown.code == 2
    assert "not a platform" in unknown.err


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True, check=False).returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "disk"
    folder.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)):
        pytest.skip("mounting a tmpfs is not permitted here")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_is_exit_3_and_keeps_the_served_release(
    small_disk: Path, tmp_path: Path, cli: CliRunner
) -> None:
    root = small_disk / "wheels"
    matrix = local_matrix_copy(tmp_path / "m.yaml", root)
    for i in range(3):
        add(root, tmp_path, f"pkg{i}", "1.0")
    assert cli("publish", "-m", str(matrix)).code == 0
    served = {p: (root / p).readlink() for p in PLATFORMS}
    add(root, tmp_path, "later", "1.0")
    filler = small_disk / "filler"
    with contextlib.suppress(OSError), filler.open("wb", buffering=0) as out:
        while True:
            out.write(b"\0" * 4096)
    result = cli("publish", "-m", str(matrix))
    assert result.code == 3, result.out + result.err
    assert "full, read-only or not permitted" in result.err
    assert "failed" in result.out  # the per-platform table
    assert {p: (root / p).readlink() for p in PLATFORMS} == served
    assert not list((root / "releases").rglob(".staging-*"))
    page = (root / "index.html").read_text()
    assert all(f"release {served[p].name}" in page for p in PLATFORMS)
    filler.unlink()
    assert cli("publish", "-m", str(matrix)).code == 0
    assert served_complete(root) == 2 * 4


def test_a_read_only_root_is_exit_3_with_a_table(tmp_path: Path, cli: CliRunner) -> None:
    root = tmp_path / "wheels"
    matrix = local_matrix_copy(tmp_path / "m.yaml", root)
    add(root, tmp_path, "pkg", "1.0")
    assert cli("publish", "-m", str(matrix)).code == 0
    add(root, tmp_path, "later", "1.0")
    if not _mount("--bind", str(root), str(root)):
        pytest.skip("bind mounts are not permitted here")
    try:
        assert _mount("-o", "remount,ro,bind", str(root))
        result = cli("publish", "-m", str(matrix))
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)
    assert result.code == 3, result.out + result.err
    assert "Traceback" not in result.err
    assert served_complete(root) == 2


# -- a store changed behind our back ----------------------------------------------------


def _edit_manifest(root: Path, change: object) -> None:
    import json

    path = root / "store" / "manifest.json"
    data = json.loads(path.read_text())
    key = sorted(data["wheels"])[0]
    change(data["wheels"], key)  # type: ignore[operator]
    path.write_text(json.dumps(data))


def _rename(wheels: dict[str, dict[str, object]], key: str, name: str) -> None:
    record = wheels.pop(key)
    record["filename"] = name
    wheels[f"{record['folder']}/{name}"] = record


@pytest.mark.parametrize(
    "change",
    [
        lambda w, k: _rename(w, k, "../../../../etc/passwd"),
        lambda w, k: _rename(w, k, "not-a-wheel.whl"),
        lambda w, k: w[k].update(folder="../../outside"),
        lambda w, k: w[k].update(attestation="../../../etc/shadow"),
        lambda w, k: w[k].update(attestation=["not", "a", "string"]),
        lambda w, k: w[k].update(sha256=None),
    ],
    ids=[
        "path-name",
        "not-a-wheel",
        "folder-outside",
        "attestation-outside",
        "attestation-list",
        "no-sha256",
    ],
)
@pytest.mark.parametrize("command", ["publish", "plan", "prune"])
def test_a_tampered_manifest_record_is_refused_by_name(
    index: tuple[Path, Path], tmp_path: Path, cli: CliRunner, change: object, *, command: str
) -> None:
    matrix, root = index
    before = {p: (root / p).readlink() for p in PLATFORMS}
    outside = tmp_path / "outside"
    outside.mkdir()
    _edit_manifest(root, change)
    args = {
        "publish": ("publish", "-m", str(matrix)),
        "plan": ("plan", "-m", str(matrix), "-r", str(_reqs(tmp_path))),
        "prune": ("prune", "--unwanted", "--dry-run", "-m", str(_with_branch(matrix, tmp_path))),
    }[command]
    result = cli(*args)
    assert result.code == 4, result.err
    assert "manifest.json has a record" in result.err
    assert "Traceback" not in result.err
    assert {p: (root / p).readlink() for p in PLATFORMS} == before
    assert served_complete(root) == 2 * 5


def _with_branch(matrix: Path, tmp_path: Path) -> Path:
    text = f"branches:\n  - name: master\n    constraints: {_reqs(tmp_path)}\n"
    matrix.write_text(matrix.read_text() + text)
    return matrix


def _reqs(tmp_path: Path) -> Path:
    path = tmp_path / "r.txt"
    path.write_text("pkg0==1.0\n")
    return path


@pytest.mark.parametrize("suffix", ["", ".metadata"])
def test_a_store_file_edited_in_place_never_reaches_the_served_index(
    index: tuple[Path, Path], tmp_path: Path, cli: CliRunner, suffix: str
) -> None:
    """Edited in place (same inode): the served release holds its own copy, so it still
    matches its #sha256 (and pip's metadata hash), and the next publish refuses the file."""
    matrix, root = index
    stored = next((root / "store" / "any").glob("pkg0-*.whl"))
    target = stored.with_name(stored.name + suffix)
    with target.open("r+b") as handle:
        handle.seek(10)
        handle.write(b"TAMPERED")
    assert served_complete(root) == 2 * 5
    served = root / PLATFORMS[0] / "simple" / "pkg0" / (stored.name + suffix)
    assert b"TAMPERED" not in served.read_bytes()
    add(root, tmp_path, "later", "1.0")  # something new to publish
    result = cli("publish", "-m", str(matrix))
    assert result.code == 1
    assert f"{target}" in result.err
    assert "does not match its manifest record" in result.err
    assert served_complete(root) == 2 * 5


def test_a_root_holding_a_web_site_is_not_overwritten(tmp_path: Path, cli: CliRunner) -> None:
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text("<h1>our project's home page</h1>")
    (root / "about.html").write_text("about")
    matrix = local_matrix_copy(tmp_path / "m.yaml", root)
    add(root, tmp_path, "pkg0", "1.0")
    result = cli("publish", "-m", str(matrix))
    assert result.code == 2
    assert "holds files orchestrate did not write (index.html, about.html)" in result.err
    assert (root / "index.html").read_text() == "<h1>our project's home page</h1>"
    assert not (root / PLATFORMS[0]).exists()
    adopted = cli("publish", "-m", str(matrix), "--adopt-root")
    assert adopted.code == 0, adopted.err
    assert (root / ".orchestrate-index").exists()
    assert served_complete(root) == 2
    assert cli("publish", "-m", str(matrix)).code == 0  # adopted once, ours from then on
