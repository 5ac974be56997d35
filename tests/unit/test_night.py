"""A night followed through its values on FakeEngine: `run_build`, the executor's
records, the report and the exit code, with a real index of real sdists on disk.

No Docker: the fake engine answers the builder's probe and runs every container
for a set time with a set exit code, so jobs end the way a build's exit code and
log say (here: a missing header, classified, never retried).
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.build import exit_code, summary_line
from orchestrator.config.loader import load_matrix
from orchestrator.config.matrix import Platform, expand
from orchestrator.core.errors import EXIT_FAILED, EXIT_INTERNAL, InternalError
from orchestrator.core.layout import RunLayout
from orchestrator.engines.pool import EngineFactsCache, EnginePool
from orchestrator.jobs.graph import job_id
from orchestrator.jobs.records import WheelRecord, account_for, build_items, not_started
from orchestrator.model import Action, Arch, Category, JobKind, JobStatus
from orchestrator.plan.decide import Decision
from orchestrator.report.data import report_of
from orchestrator.run import BuildOptions, NightRequest, NightResult, run_build
from orchestrator.scheduler import Cancel
from tests.matrices import BASE_BLOCK, local_matrix_copy
from tests.unit.fakes import FakeEngine, Recorder
from tests.wheelfactory import make_sdist, simple_index

AMD = "debian-bookworm-amd64"
PROBE = json.dumps(
    {"tags": {"3.11": ["cp311-cp311-manylinux_2_36_x86_64", "py3-none-any"]}, "glibc": "2.36"}
).encode()
MISSING_HEADER = b"src/x.c:1:10: fatal error: foo.h: No such file or directory\n"
EXIT_BUILD = 20  # images/scripts/job.py: the build failed


@dataclass(frozen=True)
class Night:
    outcome: NightResult
    report: dict[str, Any]
    code: int
    events: list[tuple[str, str]]

    def statuses(self) -> dict[str, str]:
        return {j["job"]: j["status"] for j in self.report["jobs"]}

    def job(self, name: str) -> dict[str, Any]:
        return next(j for j in self.report["jobs"] if j["job"] == f"{AMD}/{name}==1.0")


def _index(tmp_path: Path, sdists: list[Path], *, tamper: str = "") -> str:
    """A file:// PEP 503 index of `sdists`; `tamper` names a project whose listed
    sha256 is made wrong (what a mirror serving other bytes looks like)."""
    index = simple_index(tmp_path / "simple", sdists)
    if tamper:
        page = tmp_path / "simple" / tamper / "index.html"
        page.write_text(re.sub(r"sha256=[0-9a-f]{64}", "sha256=" + "0" * 64, page.read_text()))
    return index


def _night(
    tmp_path: Path,
    index: str,
    pins: str,
    *,
    engine: FakeEngine,
    options: BuildOptions | None = None,
    cancel: Cancel | None = None,
) -> Night:
    matrix_path = local_matrix_copy(
        tmp_path / "matrix.yaml",
        tmp_path / "wheelhouse",
        {
            "upstream: https://pypi.org/simple/": f"upstream: {index}",
            BASE_BLOCK: "    base: debian:bookworm\n",
        },
    )
    matrix = load_matrix(matrix_path)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(pins)
    recorder = Recorder()
    request = NightRequest(
        matrix=matrix,
        platforms=tuple(p for p in expand(matrix) if p.name == AMD),
        requirements=(requirements,),
        layout=RunLayout(tmp_path / "work", cache=tmp_path / "cache"),
        options=options or BuildOptions(),
    )
    outcome = run_build(
        request,
        pool=EnginePool([engine], EngineFactsCache(None)),
        cancel=cancel or Cancel(),
        progress=recorder,
    )
    code = exit_code(outcome, allow_unavailable=False)
    return Night(outcome, report_of(outcome, str(matrix_path)), code, recorder.events)


def _engine(**kwargs: Any) -> FakeEngine:
    """One amd64 engine, one slot, whose every build fails on a missing header."""
    defaults: dict[str, Any] = {"exit_code": EXIT_BUILD, "output": MISSING_HEADER}
    return FakeEngine(
        "local",
        Arch.AMD64,
        files={"/etc/orchestrate": {"probe.json": PROBE}},
        **{**defaults, **kwargs},
    )


def _sdists(tmp_path: Path, *names: str, requires: tuple[str, ...] = ()) -> list[Path]:
    return [make_sdist(tmp_path / "sdists", n, "1.0", requires) for n in names]


PINS = "pkg-a==1.0\npkg-b==1.0\npkg-c==1.0\n"


def test_a_blocked_job_is_in_the_report_the_summary_and_the_exit_code(tmp_path: Path) -> None:
    """A hash mismatch blocks its job before it runs: the one failure that may mean
    an attack is listed with its category, counted, and fails the night."""
    index = _index(tmp_path, _sdists(tmp_path, "pkg-a", "pkg-b", "pkg-c"), tamper="pkg-b")
    night = _night(tmp_path, index, PINS, engine=_engine(exit_code=0, output=b""), options=None)
    blocked = night.job("pkg-b")
    assert (blocked["status"], blocked["category"]) == ("failed", "hash-mismatch")
    assert set(night.statuses()) == {f"{AMD}/pkg-{c}==1.0" for c in "abc"}
    assert night.report["summary"]["categories"]["hash-mismatch"] == 1
    assert night.code == EXIT_FAILED


def test_a_deadline_with_jobs_still_queued_lists_them_as_not_started(tmp_path: Path) -> None:
    index = _index(tmp_path, _sdists(tmp_path, "pkg-a", "pkg-b", "pkg-c"))
    options = BuildOptions(deadline=1.0)  # the first job starts well before it passes
    night = _night(tmp_path, index, PINS, engine=_engine(run_seconds=2.5), options=options)
    statuses = sorted(night.statuses().values())
    assert statuses == ["cancelled", "cancelled", "failed"], night.statuses()
    unstarted = [j for j in night.report["jobs"] if j["status"] == "cancelled"]
    assert all("the run deadline passed" in j["error"] for j in unstarted), unstarted
    summary = night.report["summary"]
    assert (summary["failed"], summary["cancelled"], summary["built"]) == (1, 2, 0)
    assert night.code == EXIT_FAILED
    assert "failed 1, not started 2," in summary_line(night.outcome)
    cancelled = [job for kind, job in night.events if kind == "cancelled"]
    assert sorted(cancelled) == sorted(j["job"] for j in unstarted)


def test_fail_fast_stops_the_night_after_the_first_failure(tmp_path: Path) -> None:
    index = _index(tmp_path, _sdists(tmp_path, "pkg-a", "pkg-b", "pkg-c"))
    options = BuildOptions(fail_fast=True)
    night = _night(tmp_path, index, PINS, engine=_engine(), options=options)
    failed = [j for j in night.report["jobs"] if j["status"] == "failed"]
    assert len(failed) == 1
    assert failed[0]["category"] == "missing-system-library"
    summary = night.report["summary"]
    assert (summary["failed"], summary["cancelled"]) == (1, 2)
    assert len(night.report["jobs"]) == 3
    assert night.code == EXIT_FAILED


def test_a_job_whose_build_dependency_failed_says_which(tmp_path: Path) -> None:
    """pkg-a needs helper-dep to build, which has no wheel: a build-dependency job
    runs first and fails; pkg-a is not built, and its record names the dependency."""
    sdists = [
        *_sdists(tmp_path, "pkg-a", requires=("helper-dep==1.0",)),
        *_sdists(tmp_path, "helper-dep"),
    ]
    night = _night(tmp_path, _index(tmp_path, sdists), "pkg-a==1.0\n", engine=_engine())
    jobs = {j["job"]: j for j in night.report["jobs"]}
    dep = jobs[f"{AMD}/build-dep:helper-dep==1.0"]
    assert (dep["status"], dep["category"]) == ("failed", "missing-system-library")
    item = jobs[f"{AMD}/pkg-a==1.0"]
    assert (item["status"], item["category"]) == ("failed", "build-dep-failed")
    assert "helper-dep==1.0" in item["error"]
    assert item["depends"] == [dep["job"]]
    assert night.report["summary"]["failed"] == 2
    assert night.code == EXIT_FAILED


def test_a_night_interrupted_before_its_jobs_lists_every_item_as_not_started(
    tmp_path: Path,
) -> None:
    index = _index(tmp_path, _sdists(tmp_path, "pkg-a", "pkg-b", "pkg-c"))
    cancel = Cancel()
    cancel.cancel()
    night = _night(tmp_path, index, PINS, engine=_engine(), cancel=cancel)
    assert sorted(night.statuses().values()) == ["cancelled"] * 3, night.statuses()
    assert all("interrupted" in j["error"] for j in night.report["jobs"])
    assert night.report["summary"]["cancelled"] == 3
    assert night.code == EXIT_FAILED


def test_every_job_of_a_finished_night_has_one_record_with_the_executors_values(
    tmp_path: Path,
) -> None:
    """The executor's returned records are the night's: attempts and dependencies
    filled, one per job, nothing read back from an attribute."""
    index = _index(tmp_path, _sdists(tmp_path, "pkg-a", "pkg-b", "pkg-c"))
    night = _night(tmp_path, index, PINS, engine=_engine())
    records = night.outcome.jobs
    assert len(records) == len({r.job for r in records}) == 3
    assert all(r.attempts == 1 and r.category is Category.MISSING_SYSTEM_LIBRARY for r in records)
    assert night.report["summary"]["failed"] == 3
    assert ("notice", f"{AMD}: 3 to build") in night.events  # said before the first job
    done = [job for kind, job in night.events if kind == "done" and job.startswith(f"{AMD}/")]
    assert sorted(done) == sorted(r.job for r in records)


def _decision(name: str, action: Action = Action.BUILD, platform: str = AMD) -> Decision:
    return Decision(
        platform=platform, python="3.11", name=name, version="1.0", action=action, reason=""
    )


def _record(name: str, status: JobStatus = JobStatus.BUILT) -> WheelRecord:
    return WheelRecord(
        job=f"{AMD}/{name}==1.0",
        platform=AMD,
        python="3.11",
        name=name,
        version="1.0",
        status=status,
    )


def test_build_items_are_the_builds_and_rebuilds_of_the_nights_platforms() -> None:
    decisions = [
        _decision("a"),
        _decision("b", Action.REBUILD),
        _decision("c", Action.UPSTREAM),
        _decision("d", platform="debian-bookworm-arm64"),
    ]
    assert [d.name for d in build_items(decisions, [AMD])] == ["a", "b"]


def _platforms(pythons: str = '["3.11"]') -> dict[str, Platform]:
    """examples/local.yaml's platforms, with these Pythons."""
    path = local_matrix_copy(
        Path(tempfile.mkdtemp()) / "m.yaml", Path("w"), {'python: ["3.11"]': f"python: {pythons}"}
    )
    return {p.name: p for p in expand(load_matrix(path))}


def test_an_item_with_no_record_after_the_jobs_ran_is_an_internal_error() -> None:
    items = [_decision("a"), _decision("b")]
    platforms = _platforms()
    with pytest.raises(InternalError) as raised:
        account_for(items, [_record("a")], platforms=platforms, unreached=None)
    assert raised.value.exit_code == EXIT_INTERNAL
    assert f"{AMD}/b==1.0 (python 3.11)" in raised.value.message
    with pytest.raises(InternalError, match="with several"):
        account_for(
            items,
            [_record("a"), _record("a"), _record("b")],
            platforms=platforms,
            unreached=None,
        )


def test_items_the_jobs_stage_never_reached_are_not_started_with_the_reason() -> None:
    items = [_decision("a"), _decision("Some_Project")]
    platforms = _platforms()
    out = account_for(
        items, [_record("a")], platforms=platforms, unreached="not started: the images failed"
    )
    assert [r.status for r in out] == [JobStatus.BUILT, JobStatus.CANCELLED]
    added = out[1]
    assert added.job == f"{AMD}/Some_Project==1.0"
    assert added.category is Category.CANCELLED
    assert added.error == "not started: the images failed"
    # a record under the project's normalized name accounts for the item
    account_for(
        [_decision("Some_Project")],
        [_record("some-project")],
        platforms=platforms,
        unreached=None,
    )
    assert not_started(items[0], platforms[AMD], "why").detail == "cancelled: why"


def test_a_platform_with_two_pythons_gives_each_its_own_job() -> None:
    """Two Pythons on one platform are two build items: their IDs say which Python
    (one ID would let one job's record stand for both), and a single-Python
    platform's IDs stay as they were."""
    two = _platforms('["3.11", "3.12"]')[AMD]
    assert job_id(two, "3.11", "crcmod", "1.7") == f"{AMD}/crcmod==1.7@py3.11"
    assert job_id(two, "3.12", "crcmod", "1.7", kind=JobKind.BUILD_DEP) == (
        f"{AMD}/build-dep:crcmod==1.7@py3.12"
    )
    assert job_id(_platforms()[AMD], "3.11", "crcmod", "1.7") == f"{AMD}/crcmod==1.7"
    items = [_decision("a"), replace(_decision("a"), python="3.12")]
    out = account_for(items, [], platforms={AMD: two}, unreached="not started: x")
    assert [r.job for r in out] == [f"{AMD}/a==1.0@py3.11", f"{AMD}/a==1.0@py3.12"]
