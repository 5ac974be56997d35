"""Branches x platforms through the CLI, on OpenStack's real constraints (575 pins)
against the real index: master on both arches, a stable branch of our making (eight
pins moved back, one dropped) on amd64 only, and a short list of "packages we care
about", unpinned, resolved against the stable constraints, on arm64 only. One `plan`
run takes them all: every shared pin is one item per platform naming its branches,
and the per-branch table equals what planning each branch alone gives."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from orchestrator.store import Provenance, Store
from tests.conftest import CONSTRAINTS
from tests.matrices import local_matrix_copy
from tests.wheelfactory import make_wheel

UPPER = CONSTRAINTS  # ../shared/data/openstack-upper-constraints.txt, committed
MOVED = {  # name -> (master's pin, the stable branch's)
    "PyYAML": ("6.0.3", "6.0.1"),
    "lxml": ("6.1.1", "5.3.0"),
    "psutil": ("7.2.2", "6.1.1"),
    "msgpack": ("1.2.1", "1.1.0"),
    "wrapt": ("2.3.0", "1.17.2"),
    "cffi": ("2.1.1", "1.17.1"),
    "greenlet": ("3.5.5", "3.1.1"),
    "simplejson": ("4.1.1", "3.19.3"),
}
CARED = "PyYAML\npsutil\nnetifaces\npython-ldap\n"  # unpinned on purpose
AMD, ARM = "debian-bookworm-amd64", "debian-bookworm-arm64"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("branches")
    text = UPPER.read_text()
    for name, (old, new) in MOVED.items():
        assert f"\n{name}==={old}\n" in text, name
        text = text.replace(f"\n{name}==={old}\n", f"\n{name}==={new}\n")
    assert "\nujson===5.13.0\n" in text
    (folder / "stable.txt").write_text(text.replace("\nujson===5.13.0\n", "\n"))
    (folder / "cared.txt").write_text(CARED)
    matrix = local_matrix_copy(folder / "m.yaml", folder / "wheels")
    matrix.write_text(
        matrix.read_text()
        + f"""
branches:
  - name: master
    constraints: {UPPER}
  - name: stable/2025.2
    constraints: stable.txt
    platforms: ["*-amd64"]
  - name: cared
    constraints: stable.txt
    packages: cared.txt
    platforms: ["*-arm64"]
"""
    )
    return folder


def _plan(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["orchestrate", "plan", "-m", str(folder / "m.yaml"), "--allow-unavailable", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=folder,  # its .orchestrate/ cache
    )


def _decisions(folder: Path, *args: str) -> list[dict[str, Any]]:
    done = _plan(folder, "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


@pytest.fixture(scope="module")
def merged(folder: Path) -> list[dict[str, Any]]:
    return _decisions(folder)


def _key(d: dict[str, Any]) -> tuple[str, str, str, str]:
    return d["platform"], d["python"], d["name"].lower(), d["version"]


def test_shared_pins_are_one_item_per_platform(merged: list[dict[str, Any]]) -> None:
    keys = Counter(_key(d) for d in merged)
    assert max(keys.values()) == 1
    amd = [d for d in merged if d["platform"] == AMD]
    arm = [d for d in merged if d["platform"] == ARM]
    # amd64: master's 575 pins, plus the eight stable versions that differ; ujson is
    # master's only. arm64: master's, plus what the short list resolved differently.
    assert len(amd) == 575 + len(MOVED)
    both = [d for d in amd if d["branches"] == ["master", "stable/2025.2"]]
    assert len(both) == 575 - len(MOVED) - 1
    ujson = [d for d in amd if d["name"] == "ujson"]
    assert [d["branches"] for d in ujson] == [["master"]]
    cared = {d["name"].lower(): d for d in arm if "cared" in d["branches"]}
    assert {n: d["version"] for n, d in cared.items()} == {
        "pyyaml": "6.0.1",
        "psutil": "6.1.1",
        "netifaces": "0.11.0",
        "python-ldap": "3.4.7",
    }
    assert cared["netifaces"]["branches"] == ["master", "cared"]  # same pin in both
    assert cared["pyyaml"]["branches"] == ["cared"]  # stable's version, not master's
    assert len(arm) == 575 + 2


def _counts(decisions: list[dict[str, Any]], branch: str | None = None) -> Counter[tuple[str, ...]]:
    return Counter(
        (d["platform"], d["python"], d["action"])
        for d in decisions
        if branch is None or branch in d["branches"]
    )


def test_the_per_branch_table_equals_each_branch_planned_alone(
    folder: Path, merged: list[dict[str, Any]]
) -> None:
    alone = {
        "master": _decisions(folder, "-r", str(UPPER)),
        "stable/2025.2": _decisions(folder, "-r", str(folder / "stable.txt"), "-p", "*-amd64"),
    }
    cared = ("-r", str(folder / "cared.txt"), "-c", str(folder / "stable.txt"), "-p", "*-arm64")
    alone["cared"] = _decisions(folder, *cared)
    for branch, decisions in alone.items():
        assert _counts(merged, branch) == _counts(decisions), branch
    table = _plan(folder, "--format", "table")
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    header = next(r for r in rows if r[:2] == ["branch", "platform"])
    by_branch = {
        (r[0], r[1]): dict(zip(header[3:], r[3:], strict=True))
        for r in rows
        if len(r) == len(header) and r[0] in alone
    }
    for branch, decisions in alone.items():
        for (platform, _python, action), n in _counts(decisions).items():
            assert by_branch[(branch, platform)][action] == str(n), (branch, platform, action)


def test_prune_unwanted_removes_what_no_branch_wants_any_more(tmp_path: Path) -> None:
    """A platform that drops a branch keeps its wheels published until this prune."""
    (tmp_path / "upper.txt").write_text("crcmod===1.7\n")
    matrix = local_matrix_copy(tmp_path / "m.yaml", tmp_path / "wheels")
    base = matrix.read_text()
    matrix.write_text(base + "branches:\n  - {name: master, constraints: upper.txt}\n")
    store = Store(tmp_path / "wheels")
    with store.locked() as records:
        for name, version in (("crcmod", "1.7"), ("dropped", "1.0")):
            wheel = make_wheel(tmp_path / "w", name, version)
            store.add(records, wheel, [AMD], Provenance())

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["orchestrate", *args, "-m", str(matrix), "-p", AMD],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
        )

    assert cli("publish").returncode == 0
    dry = cli("prune", "--unwanted", "--dry-run", "--format", "json")
    assert dry.returncode == 0, dry.stderr
    listed = json.loads(dry.stdout)["wheels"]
    assert [(w["filename"], w["reason"]) for w in listed] == [
        ("dropped-1.0-py3-none-any.whl", "no branch wants it on this platform")
    ]
    assert "dropped" in (tmp_path / "wheels" / AMD / "simple" / "index.html").read_text()
    done = cli("prune", "--unwanted")
    assert done.returncode == 0, done.stderr
    served = (tmp_path / "wheels" / AMD / "simple" / "index.html").read_text()
    assert "dropped" not in served
    assert "crcmod" in served
    matrix.write_text(base)  # no branches: nothing says what is wanted
    refused = cli("prune", "--unwanted")
    assert refused.returncode == 2
    assert "--unwanted needs branches" in refused.stderr
