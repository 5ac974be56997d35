"""Branches x platforms: the schema and its checks, which files each branch plans
on which platforms, and the dedup of pins that several branches share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.cli.plan import branch_rows
from orchestrator.config import load_matrix
from orchestrator.config.matrix import expand
from orchestrator.core.errors import ConfigError, RequirementsError
from orchestrator.model import Action
from orchestrator.plan.decide import Decision, merge_branches
from orchestrator.plan.gather import branch_inputs
from orchestrator.publish.prune import UNWANTED, unwanted_candidates
from orchestrator.store import StoredWheel
from tests.conftest import REPO, CliRunner

from .test_config import VALID

Write = Callable[[str, str], Path]
AMD, ARM = "debian-bookworm-amd64", "debian-bookworm-arm64"


def decision(platform: str, name: str, version: str, action: Action) -> Decision:
    return Decision(
        platform=platform, python="3.11", name=name, version=version, action=action, reason="why"
    )


def test_a_pin_several_branches_share_is_one_decision_naming_them_all() -> None:
    master = [
        decision(AMD, "crcmod", "1.7", Action.BUILD),
        decision(AMD, "PyYAML", "6.0.2", Action.UPSTREAM),
        decision(ARM, "crcmod", "1.7", Action.BUILD),
    ]
    stable = [
        decision(AMD, "crcmod", "1.7", Action.BUILD),  # shared with master
        decision(AMD, "pyyaml", "6.0.1", Action.BUILD),  # another version: its own item
        decision(AMD, "CRCMOD", "1.7.0", Action.BUILD),  # the same pin, spelled otherwise
    ]
    merged = merge_branches([("master", master), ("stable/2025.1", stable)])
    keyed = {(d.platform, d.name, d.version): d.branches for d in merged}
    assert keyed == {
        (AMD, "crcmod", "1.7"): ("master", "stable/2025.1"),
        (AMD, "PyYAML", "6.0.2"): ("master",),
        (ARM, "crcmod", "1.7"): ("master",),
        (AMD, "pyyaml", "6.0.1"): ("stable/2025.1",),
    }
    assert sum(1 for d in merged if d.action is Action.BUILD) == 3  # not 5
    # The command line's unnamed branch: no names, nothing merged away.
    assert merge_branches([("", master)]) == master


def test_per_branch_rows_count_shared_pins_in_each_branch() -> None:
    shared = decision(AMD, "a", "1", Action.BUILD)
    merged = merge_branches(
        [
            ("master", [shared, decision(AMD, "b", "1", Action.UPSTREAM)]),
            ("stable", [shared, decision(AMD, "c", "1", Action.CACHED)]),
        ]
    )
    rows = {
        r[:3]: dict(zip([a.value for a in Action], r[3:], strict=True)) for r in branch_rows(merged)
    }
    assert rows[("master", AMD, "3.11")] == {**_zeros(), "build": "1", "upstream": "1"}
    assert rows[("stable", AMD, "3.11")] == {**_zeros(), "build": "1", "cached": "1"}
    assert list(rows) == [("master", AMD, "3.11"), ("stable", AMD, "3.11")]  # file order


def _zeros() -> dict[str, str]:
    return {a.value: "0" for a in Action}


BRANCHES = """
branches:
  - name: master
    constraints: upper.txt
  - name: stable/2025.1
    constraints: stable.txt
    packages: packages.txt
    platforms: ["*-amd64"]
"""


def _files(write: Write) -> None:
    write("upper.txt", "crcmod===1.7\n")
    write("stable.txt", "crcmod===1.6\n")
    write("packages.txt", "crcmod\n")


def test_each_branch_plans_its_files_on_its_platforms(write: Write, tmp_path: Path) -> None:
    _files(write)
    matrix = load_matrix(write("m.yaml", VALID + BRANCHES))
    inputs = branch_inputs(matrix, expand(matrix), (), (), cache=tmp_path)
    master, stable = inputs
    assert master.requirements == (tmp_path / "upper.txt",)
    assert master.constraints == ()
    assert [p.name for p in master.platforms] == [AMD, ARM]
    assert stable.requirements == (tmp_path / "packages.txt",)
    assert stable.constraints == (tmp_path / "stable.txt",)
    assert [p.name for p in stable.platforms] == [AMD]
    # Selecting arm64 only leaves out the branch no arm64 platform builds.
    arm = [p for p in expand(matrix) if p.name == ARM]
    assert [b.name for b in branch_inputs(matrix, arm, (), (), cache=tmp_path)] == ["master"]
    # -r on the command line plans those files instead, on every selected platform.
    cli = branch_inputs(matrix, expand(matrix), (Path("r.txt"),), (), cache=tmp_path)
    assert [(b.name, b.requirements) for b in cli] == [("", (Path("r.txt"),))]


def test_no_requirements_and_no_branches_is_a_clear_error(write: Write, tmp_path: Path) -> None:
    matrix = load_matrix(write("m.yaml", VALID))
    with pytest.raises(RequirementsError, match="no requirements file and no branches"):
        branch_inputs(matrix, expand(matrix), (), (), cache=tmp_path)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('platforms: ["*-amd64"]', 'platforms: ["*-s390x"]'), "matches no platform"),
        (("constraints: stable.txt", "constraints: nowhere.txt"), "constraints file"),
        (("packages: packages.txt", "packages: nowhere.txt"), "packages file"),
        (("name: stable/2025.1", "name: master"), "duplicate branch name 'master'"),
        (("name: stable/2025.1", "name: 'stable 2025'"), "branches[1].name"),
        (("    constraints: upper.txt", "    constraint: upper.txt"), "did you mean 'constraints'"),
    ],
)
def test_bad_branches_name_the_line(write: Write, change: tuple[str, str], expected: str) -> None:
    _files(write)
    text = VALID + BRANCHES
    assert change[0] in text
    path = write("m.yaml", text.replace(change[0], change[1], 1))
    with pytest.raises(ConfigError) as caught:
        load_matrix(path)
    assert expected in str(caught.value)
    assert caught.value.line is not None
    assert caught.value.line > VALID.count("\n")


def test_unwanted_wheels_are_those_no_branch_plans_on_their_platform() -> None:
    platforms = list(expand(load_matrix(REPO / "examples" / "local.yaml")))

    def stored(filename: str, *on: str) -> StoredWheel:
        return StoredWheel(
            filename=filename,
            folder="any",
            sha256="0" * 64,
            size=1,
            metadata_sha256="",
            requires_python=None,
            platforms=tuple(on),
        )

    records = {
        "a": stored("crcmod-1.7-cp311-cp311-linux_x86_64.whl", AMD),
        "b": stored("Old_Pkg-1.0.0-py3-none-any.whl", AMD, ARM),
    }
    wanted = {(AMD, "crcmod", "1.7"), (ARM, "old-pkg", "1")}  # versions canonical
    found = unwanted_candidates(records, platforms, wanted)
    assert [(c.platform, c.key, c.reason) for c in found] == [(AMD, "b", UNWANTED)]


@pytest.mark.parametrize("command", ["plan", "build"])
def test_without_r_or_branches_plan_and_build_stop_before_anything(
    write: Write, cli: CliRunner, command: str
) -> None:
    result = cli(command, "-m", str(write("m.yaml", VALID)))
    assert result.code == 2
    assert "no requirements file and no branches in the matrix" in result.err
    assert "Traceback" not in result.err


def test_the_branches_example_loads_with_its_two_branches(tmp_path: Path) -> None:
    """examples/openstack-branches.yaml: master on both arches, core (a package list
    resolved against the same constraints) on amd64."""
    from orchestrator.config import load_matrix
    from orchestrator.config.matrix import expand
    from orchestrator.plan.gather import branch_inputs
    from orchestrator.plan.requirements import read
    from tests.conftest import REPO

    matrix = load_matrix(REPO / "examples" / "openstack-branches.yaml")
    inputs = branch_inputs(matrix, expand(matrix), [], [], cache=tmp_path)
    assert [b.name for b in inputs] == ["master", "core"]
    assert [p.name for p in inputs[0].platforms] == [
        "debian-bookworm-amd64",
        "debian-bookworm-arm64",
    ]
    assert [p.name for p in inputs[1].platforms] == ["debian-bookworm-amd64"]
    core = read(list(inputs[1].requirements), list(inputs[1].constraints))
    assert {u.name for u in core.unpinned} == {
        "oslo-db",
        "psycopg2",
        "python-ldap",
        "netifaces",
        "pyyaml",
    }
    assert len(core.constraints) > 500
