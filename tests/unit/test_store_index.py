"""The wheel store and the static index, on synthetic wheels (no Docker)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from orchestrator.core.errors import UnsafeName
from orchestrator.core.tars import extract_wheels
from orchestrator.core.wheelnames import safe_wheel_name
from orchestrator.plan.upstream import parse_html, parse_json
from orchestrator.publish.index import current_release, publish, releases_of, rollback
from orchestrator.store import Provenance, Store
from tests.wheelfactory import make_wheel

AMD, ARM = "debian-bookworm-amd64", "debian-bookworm-arm64"


def _add(store: Store, wheel: Path, platforms: list[str], *, replace: bool = False) -> str:
    with store.locked() as records:
        return store.add(records, wheel, platforms, Provenance(job="t"), replace=replace).outcome


def test_identical_mismatch_replace(tmp_path: Path) -> None:
    store = Store(tmp_path / "root")
    first = make_wheel(tmp_path / "a", "demo", "1.0")
    assert _add(store, first, [AMD]) == "added"
    assert _add(store, first, [AMD]) == "identical"
    changed = make_wheel(tmp_path / "b", "demo", "1.0", body="VALUE = 2\n")
    assert _add(store, changed, [AMD]) == "mismatch"
    stored = store.dir / "any" / first.name
    assert stored.read_bytes() == first.read_bytes()  # the published one stays
    assert _add(store, changed, [AMD], replace=True) == "replaced"
    assert stored.read_bytes() == changed.read_bytes()


def test_pure_wheel_stored_once_listed_everywhere(tmp_path: Path) -> None:
    store = Store(tmp_path / "root")
    wheel = make_wheel(tmp_path / "w", "demo", "1.0")
    _add(store, wheel, [AMD, ARM])
    assert [p.name for p in (store.dir / "any").glob("*.whl")] == [wheel.name]
    assert {r.filename for r in store.for_platform(ARM)} == {wheel.name}
    native = make_wheel(tmp_path / "n", "fast", "2.0", tag="cp311-cp311-linux_aarch64")
    _add(store, native, [ARM])
    assert (store.dir / ARM / native.name).is_file()
    assert store.contents([AMD, ARM])[ARM] == {
        ("demo", "1"): wheel.name,
        ("fast", "2"): native.name,
    }


@pytest.mark.parametrize(
    "name",
    [
        "../../x-1-py3-none-any.whl",
        "/etc/x-1-py3-none-any.whl",
        "not-a-wheel.whl",
        ".hidden-1-py3-none-any.whl",
    ],
)
def test_crafted_names_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(UnsafeName):
        safe_wheel_name(name)


def test_crafted_name_in_container_output_writes_nothing(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"x"
        info = tarfile.TarInfo("out/..\\..\\x-1-py3-none-any.whl")
        info.size = 1
        tar.addfile(info, io.BytesIO(data))
    out = tmp_path / "job" / "out"
    with pytest.raises(UnsafeName):
        extract_wheels(buf.getvalue(), out)
    assert list(tmp_path.rglob("*.whl")) == []


def test_publish_writes_pep503_pep691_pep658(tmp_path: Path) -> None:
    store = Store(tmp_path / "root")
    wheel = make_wheel(tmp_path / "w", "Demo_Pkg", "1.0")
    _add(store, wheel, [AMD])
    [result] = publish(store, [AMD])
    assert result.status == "published"
    simple = store.root / AMD / "simple"
    html = (simple / "demo-pkg" / "index.html").read_text()
    files = parse_html(html, "http://x/simple/demo-pkg/")
    assert files[0].filename == wheel.name
    assert files[0].requires_python == ">=3.8"
    assert 'data-core-metadata="sha256=' in html
    data = json.loads((simple / "demo-pkg" / "index.json").read_text())
    assert data["meta"]["api-version"] == "1.1"
    assert parse_json(data, "http://x/")[0].sha256 == files[0].sha256
    metadata = (simple / "demo-pkg" / f"{wheel.name}.metadata").read_bytes()
    assert metadata.startswith(b"Metadata-Version: 2.1")
    assert (simple / "demo-pkg" / wheel.name).read_bytes() == wheel.read_bytes()
    assert "demo-pkg" in (simple / "index.html").read_text()
    assert AMD in (store.root / "index.html").read_text()


def test_unchanged_platform_is_not_republished_and_rollback(tmp_path: Path) -> None:
    store = Store(tmp_path / "root")
    _add(store, make_wheel(tmp_path / "1", "demo", "1.0"), [AMD])
    first = publish(store, [AMD])[0].release
    assert publish(store, [AMD])[0].status == "unchanged"
    _add(store, make_wheel(tmp_path / "2", "demo", "2.0"), [AMD])
    second = publish(store, [AMD], keep=3)[0].release
    assert second != first
    assert current_release(store.root, AMD) == second
    assert rollback(store.root, AMD) == first
    assert (store.root / AMD / "simple" / "demo").is_dir()
    assert not list((store.root / AMD / "simple" / "demo").glob("demo-2.0*"))


def test_old_releases_pruned_but_previous_files_survive_one_release(tmp_path: Path) -> None:
    store = Store(tmp_path / "root")
    releases = []
    for i in range(4):
        _add(store, make_wheel(tmp_path / str(i), "demo", f"{i}.0"), [AMD])
        releases.append(publish(store, [AMD], keep=2)[0].release)
    assert releases_of(store.root, AMD) == releases[-2:]


def test_a_failing_platform_does_not_hold_back_the_others(tmp_path: Path) -> None:
    store = Store(tmp_path / "root")
    _add(store, make_wheel(tmp_path / "a", "demo", "1.0", tag="cp311-cp311-linux_x86_64"), [AMD])
    _add(store, make_wheel(tmp_path / "b", "demo", "1.0", tag="cp311-cp311-linux_aarch64"), [ARM])
    before = {r.platform: r.release for r in publish(store, [AMD, ARM])}
    _add(store, make_wheel(tmp_path / "c", "demo", "2.0", tag="cp311-cp311-linux_x86_64"), [AMD])
    _add(store, make_wheel(tmp_path / "d", "demo", "2.0", tag="cp311-cp311-linux_aarch64"), [ARM])
    (store.dir / AMD / "demo-2.0-cp311-cp311-linux_x86_64.whl").unlink()  # amd64 breaks
    results = {r.platform: r for r in publish(store, [AMD, ARM])}
    assert results[AMD].status == "failed"
    assert "demo-2.0" in results[AMD].error
    assert results[ARM].status == "published"
    assert current_release(store.root, AMD) == before[AMD]  # still serving the old one
    assert current_release(store.root, ARM) == results[ARM].release


def test_json_pages_follow_pep_714(tmp_path: Path) -> None:
    """Only `core-metadata`: Debian 12's pip (23.0) crashes on `dist-info-metadata`."""
    from orchestrator.publish.pages import project_json
    from orchestrator.store import Provenance, Store
    from tests.wheelfactory import make_wheel

    store = Store(tmp_path)
    with store.locked() as records:
        store.add(records, make_wheel(tmp_path / "w", "demo", "1.0"), ["p"], Provenance())
    page = json.loads(project_json("demo", list(store.records().values())))
    (entry,) = page["files"]
    assert entry["core-metadata"] == {"sha256": entry["core-metadata"]["sha256"]}
    assert "dist-info-metadata" not in entry
