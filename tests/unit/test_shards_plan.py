"""Shards and the plan file: pure, no engine, no index."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.config import load_matrix
from orchestrator.config.matrix import Platform, expand
from orchestrator.core.errors import ConfigError, InputError, StoreConflict
from orchestrator.model import Action
from orchestrator.plan.decide import Decision
from orchestrator.plan.planfile import (
    PlanFile,
    differences,
    joined,
    load_plan,
    make_plan_file,
    save_plan,
)
from orchestrator.plan.shards import github_matrix, item_of, shards_of
from tests.conftest import REPO, CliRunner
from tests.matrices import local_matrix_copy

Write = Callable[[str, str], Path]
MULTI = REPO / "examples" / "multiarch.yaml"


def _platforms(matrix: Path = MULTI) -> tuple[Platform, ...]:
    return expand(load_matrix(matrix))


def _decision(platform: str, name: str, action: Action = Action.BUILD) -> Decision:
    return Decision(
        platform=platform,
        python="3.11",
        name=name,
        version="1.0",
        action=action,
        reason="no wheel",
        sdist=f"{name}-1.0.tar.gz",
    )


def _flat(_name: str, _arch: str, *, emulated: bool) -> float:
    return 100.0 if emulated else 10.0


def test_by_default_one_shard_per_arch_on_its_native_hosted_runner() -> None:
    platforms = _platforms()
    shards = {s.name: s for s in shards_of([], platforms, (), _flat)}
    assert set(shards) == {p.arch.value for p in platforms}
    assert shards["arm64"].labels == ("ubuntu-24.04-arm",)
    assert shards["arm64"].native
    assert shards["amd64"].labels == ("ubuntu-24.04",)
    # No hosted runner is native for these: an amd64 runner emulates them.
    assert shards["riscv64"].labels == ("ubuntu-24.04",)
    assert not shards["riscv64"].native
    assert all(s.jobs == 0 for s in shards.values())


def test_jobs_and_expected_time_count_builds_only_and_emulation_costs_more() -> None:
    platforms = _platforms()
    by_arch = {p.arch.value: p.name for p in platforms}
    decisions = [
        _decision(by_arch["amd64"], "a"),
        _decision(by_arch["amd64"], "b", Action.REBUILD),
        _decision(by_arch["amd64"], "c", Action.UPSTREAM),
        _decision(by_arch["amd64"], "d", Action.CACHED),
        _decision(by_arch["riscv64"], "a"),
    ]
    shards = {s.name: s for s in shards_of(decisions, platforms, (), _flat)}
    assert (shards["amd64"].jobs, shards["amd64"].expected_seconds) == (2, 20.0)
    assert (shards["riscv64"].jobs, shards["riscv64"].expected_seconds) == (1, 100.0)
    entries = github_matrix(list(shards.values()))["include"]
    assert [e["shard"] for e in entries] == ["riscv64", "amd64"]  # longest first
    assert set(entries[0]) == {"shard", "platforms", "labels", "native", "jobs", "expected_seconds"}


def test_a_night_with_nothing_to_build_starts_no_runner() -> None:
    platforms = _platforms()
    cached = [_decision(p.name, "a", Action.CACHED) for p in platforms]
    assert github_matrix(shards_of(cached, platforms, (), _flat)) == {"include": []}


def _with_runners(write: Write, runners: str) -> Path:
    text = MULTI.read_text() + runners
    return write("m.yaml", text)


def test_runner_rules_map_platforms_to_labels_and_shards(write: Write) -> None:
    path = _with_runners(
        write,
        (
            "runners:\n"
            "  - {platforms: '*-arm64', labels: [self-hosted, linux, ARM64], shard: arm}\n"
            "  - {platforms: '*-s390x', labels: [ubuntu-24.04-s390x], shard: ibm}\n"
            "  - {platforms: '*-ppc64le', labels: [ubuntu-24.04-s390x], shard: ibm,\n"
            "     native: false}\n"
        ),
    )
    matrix = load_matrix(path)
    shards = {s.name: s for s in shards_of([], expand(matrix), matrix.runners, _flat)}
    assert shards["arm"].labels == ("self-hosted", "linux", "ARM64")
    ibm = shards["ibm"]
    assert ibm.labels == ("ubuntu-24.04-s390x",)
    assert not ibm.native  # one of its platforms is emulated
    assert len(ibm.platforms) == 2
    assert "amd64" in shards  # unmatched: the default


@pytest.mark.parametrize(
    "runners",
    [
        "runners:\n  - {platforms: '*', labels: []}\n",
        "runners:\n  - {platforms: '*', labels: [\"a\\nb\"]}\n",
        "runners:\n  - {platforms: '*', labels: [x], shard: 'A B'}\n",
        "runners:\n  - {platforms: '*', labels: [x], cores: 4}\n",
        "runners:\n  - {platforms: 'a*', labels: [x], shard: s}\n"
        "  - {platforms: 'b*', labels: [y], shard: s}\n",
    ],
)
def test_bad_runner_rules_are_refused_by_line(write: Write, runners: str) -> None:
    path = _with_runners(write, runners)
    with pytest.raises(ConfigError) as caught:
        load_matrix(path)
    assert str(path) in caught.value.message
    assert "runners" in caught.value.message


def _plan_file(decisions: list[Decision], created: str = "2026-12-01T00:00:00+00:00") -> object:
    return make_plan_file(
        matrix="a" * 64,
        inputs={"reqs.txt": "b" * 64},
        platforms=["p1", "p2"],
        decisions=decisions,
        created=created,
    )


def test_a_plan_file_round_trips_and_its_identity_ignores_order_and_time(tmp_path: Path) -> None:
    decisions = [_decision("p1", "a"), _decision("p2", "b", Action.UPSTREAM)]
    made = make_plan_file(
        matrix="a" * 64, inputs={}, platforms=["p1", "p2"], decisions=decisions, created="t1"
    )
    again = make_plan_file(
        matrix="a" * 64, inputs={}, platforms=["p2", "p1"], decisions=decisions[::-1], created="t2"
    )
    assert made.identity == again.identity
    save_plan(made, tmp_path / "plan.json")
    loaded = load_plan(tmp_path / "plan.json")
    assert loaded == made


def test_an_edited_plan_file_is_refused(tmp_path: Path) -> None:
    made = make_plan_file(
        matrix="a" * 64, inputs={}, platforms=["p1"], decisions=[_decision("p1", "a")], created="t"
    )
    path = tmp_path / "plan.json"
    save_plan(made, path)
    data = json.loads(path.read_text())
    data["decisions"][0]["action"] = "cached"
    path.write_text(json.dumps(data))
    with pytest.raises(StoreConflict, match="edited"):
        load_plan(path)


@pytest.mark.parametrize(
    "content",
    [b"", b'{"format": "orchestrate-plan-1", ', b"[]", b'{"format": "other"}', b"[" * 100000],
)
def test_a_plan_file_that_is_not_one_is_exit_2(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "plan.json"
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        load_plan(path)
    assert str(path) in caught.value.message


def test_differences_name_the_decisions_that_differ() -> None:
    old = make_plan_file(
        matrix="a" * 64, inputs={}, platforms=["p1"], decisions=[_decision("p1", "a")], created="t"
    )
    new = make_plan_file(
        matrix="a" * 64,
        inputs={},
        platforms=["p1"],
        decisions=[_decision("p1", "a", Action.CACHED)],
        created="t",
    )
    found = differences(old, new)
    assert found == ["1 decision(s) (p1 a==1.0 (py3.11) build vs cached)"]


def test_a_durations_cache_keeps_only_finite_non_negative_seconds(tmp_path: Path) -> None:
    """NaN, Infinity, a string or a negative number in the cache (anyone's file) would
    reach the shards' JSON (`NaN` is not JSON) and the plan file: they are forgotten."""
    from orchestrator.jobs.durations import Durations

    path = tmp_path / "durations.json"
    path.write_text(
        '{"a|amd64|native": NaN, "b|amd64|native": Infinity, "c|amd64|native": "12",'
        ' "d|amd64|native": -5, "e|amd64|native": true, "f|amd64|native": 42,'
        ' "factor|local|arm64": 7.5}'
    )
    durations = Durations(path)
    assert durations.data == {"f|amd64|native": 42.0}
    assert durations.factors == {"local|arm64": 7.5}
    assert durations.expected("a", "amd64", emulated=False, guess=60.0) == 60.0
    path.write_text("[1, 2]")
    assert Durations(path).data == {}


def test_a_plan_file_carries_no_credentials_and_a_runner_puts_its_own_back(
    tmp_path: Path,
) -> None:
    """The plan file travels as a CI artifact in every bundle: the index password the
    plan job's pages gave its sdist URLs stays out; the shard's runner, with the same
    index URL, adds it again for the download."""
    from orchestrator.model import Action
    from orchestrator.plan.decide import Decision
    from orchestrator.plan.planfile import (
        load_plan,
        make_plan_file,
        save_plan,
        with_credentials,
    )

    secret = "https://ci:S3cr3t@pypi.example/packages/x-1.0.tar.gz"
    decision = Decision(
        platform="debian-bookworm-amd64",
        python="3.11",
        name="x",
        version="1.0",
        action=Action.BUILD,
        reason="no wheel on https://ci:S3cr3t@pypi.example/simple/",
        sdist="x-1.0.tar.gz",
        sdist_url=secret,
    )
    plan = make_plan_file(
        matrix="0" * 64,
        inputs={},
        platforms=["debian-bookworm-amd64"],
        decisions=[decision],
        created="now",
    )
    save_plan(plan, tmp_path / "plan.json")
    assert "S3cr3t" not in (tmp_path / "plan.json").read_text()
    loaded = load_plan(tmp_path / "plan.json")  # its identity holds as written
    (public,) = loaded.decisions
    assert public.sdist_url == "https://pypi.example/packages/x-1.0.tar.gz"
    index = "https://ci:S3cr3t@pypi.example/simple/"
    assert with_credentials(public, index).sdist_url == secret
    other = "https://ci:S3cr3t@mirror.example/simple/"
    assert with_credentials(public, other).sdist_url == public.sdist_url


def test_a_shard_name_with_a_final_newline_is_refused(tmp_path: Path) -> None:
    from orchestrator.core.errors import InputError
    from orchestrator.plan.planfile import load_plan, make_plan_file, save_plan
    from orchestrator.plan.shards import Shard

    shard = Shard(name="amd64\n", platforms=("debian-bookworm-amd64",), labels=(), native=True)
    plan = make_plan_file(
        matrix="0" * 64,
        inputs={},
        platforms=["debian-bookworm-amd64"],
        decisions=[],
        shards=[shard],
        created="now",
    )
    save_plan(plan, tmp_path / "plan.json")
    with pytest.raises(InputError, match="not an orchestrate plan file"):
        load_plan(tmp_path / "plan.json")


def test_a_rule_naming_a_default_arch_shard_with_other_labels_is_refused(write: Write) -> None:
    """arm64 platforms sent to the `amd64` shard on an arm runner: the amd64 platforms
    (no rule) are in that shard on the default runner; one of the two would lose."""
    from orchestrator.core.errors import InputError

    path = _with_runners(
        write, "runners:\n  - {platforms: '*-arm64', labels: [self-hosted, ARM64], shard: amd64}\n"
    )
    matrix = load_matrix(path)
    with pytest.raises(InputError, match="shard 'amd64' gets") as caught:
        shards_of([], expand(matrix), matrix.runners, _flat)
    assert "ARM64" in caught.value.message


def test_merge_refuses_a_plan_of_another_matrix_or_of_platforms_it_lacks(
    cli: CliRunner, tmp_path: Path
) -> None:
    """Not "MISSING" (exit 1) for a plan that is not this night's: refused (exit 2)
    before anything is written, and nothing named like the root's own folders."""
    from orchestrator.config import load_matrix
    from orchestrator.plan.planfile import make_plan_file, save_plan

    matrix = local_matrix_copy(tmp_path / "m.yaml", tmp_path / "index")
    digest = load_matrix(matrix).digest
    for name, (owner, platforms) in {
        "other": ("a" * 64, ["debian-bookworm-amd64"]),
        "strangers": (digest, ["debian-bookworm-amd64", "store", "index.html"]),
    }.items():
        plan = make_plan_file(
            matrix=owner, inputs={}, platforms=platforms, decisions=[], created="now"
        )
        save_plan(plan, tmp_path / f"{name}.json")
        result = cli("merge", "-m", str(matrix), "--plan", str(tmp_path / f"{name}.json"))
        assert result.code == 2, (name, result.err)
        assert "MISSING" not in result.err
        assert not (tmp_path / "index").exists()


def _apart(platforms: list[str], created: str = "t", reqs: str = "b" * 64) -> PlanFile:
    return make_plan_file(
        matrix="a" * 64,
        inputs={"r.txt": reqs},
        platforms=platforms,
        decisions=[_decision(p, "crcmod") for p in platforms],
        created=created,
    )


def test_plans_made_apart_for_other_platforms_join_into_one_night() -> None:
    amd = _apart(["p-amd64"], "2026-12-01T02:00")
    night = joined([amd, _apart(["p-arm64"], "2026-12-01T02:03")])
    assert night is not None
    assert night.platforms == ("p-amd64", "p-arm64")
    assert night.created == "2026-12-01T02:03"
    assert {d.platform for d in night.decisions} == {"p-amd64", "p-arm64"}
    assert night.identity == _apart(["p-amd64", "p-arm64"]).identity  # as one shared plan
    assert joined([amd, amd]) is None  # overlapping platforms: not apart
    assert joined([amd, _apart(["p-arm64"], reqs="c" * 64)]) is None  # other requirements


def _timed(name: str, _arch: str, *, emulated: bool) -> float:
    return {"big": 300.0, "mid": 200.0}.get(name, 100.0)


def test_a_shard_over_its_budget_is_split_into_parts_of_about_the_budget(write: Write) -> None:
    path = _with_runners(write, "runners:\n  - {platforms: '*', labels: [x], budget_minutes: 5}\n")
    matrix = load_matrix(path)
    platforms = [p for p in expand(matrix) if p.arch.value == "amd64"][:1]
    names = ["big", "mid", "a", "b", "c", "d"]  # 300 + 200 + 4 x 100 = 900 s: 3 parts
    decisions = [_decision(p.name, n) for p in platforms for n in names]
    decisions.append(_decision(platforms[0].name, "wheel", Action.UPSTREAM))
    parts = [s for s in shards_of(decisions, platforms, matrix.runners, _timed) if s.jobs]
    assert [(s.name, s.part) for s in parts] == [("amd64-1", 1), ("amd64-2", 2), ("amd64-3", 3)]
    assert [s.expected_seconds for s in parts] == [300.0, 300.0, 300.0]  # big; mid+a; b+c+d
    items = [i for s in parts for i in s.items]
    assert sorted(items) == sorted(item_of(d) for d in decisions if d.action is Action.BUILD)
    for part in parts:
        mine = part.decisions(decisions)
        assert {item_of(d) for d in mine if d.action is Action.BUILD} == set(part.items)
        assert any(d.action is Action.UPSTREAM for d in mine) == (part.part == 1)
    assert all("items" not in e for e in github_matrix(parts)["include"])
    plan = make_plan_file(
        matrix="a" * 64,
        inputs={},
        platforms=[p.name for p in platforms],
        decisions=decisions,
        shards=parts,
        created="t",
    )
    again = load_plan(_saved(write, plan))
    assert again.shards == plan.shards
    unsplit = shards_of(decisions, platforms, (), _timed)
    assert [s.part for s in unsplit if s.jobs] == [0]  # no budget: one shard


def _saved(write: Write, plan: PlanFile) -> Path:
    path = write("plan.json", "")
    save_plan(plan, path)
    return path
