"""A night across runners: OpenStack's constraints as two shards on one machine, and
a projection of OpenDev's scale.

`two_runners`: `plan --shards`, then two `build --bundle` processes at once (own
workdir and cache each; they share only the engine and the registry, as two CI
runners would), then one `merge`, side by side with a single-host build of the same
night. The merged index must equal the single host's: same files, sha256s, pages.

`opendev_scale`: 15 platforms (5 arches x 3 distros) and 4 branches of OpenStack's
constraints through the real planner; the jobs it plans run through the real
scheduler over fake engines that sleep each job's duration (scaled down), durations
measured in this run's shards (native amd64; arm64 emulated with the native
compiler). One host that emulates every foreign arch against N native runners.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import CONSTRAINTS, OUT, REPO, Row, orchestrate_build, sh
from orchestrator.config import IndexSpec, load_matrix
from orchestrator.config.matrix import Platform, expand
from orchestrator.config.schema import RunnerSpec
from orchestrator.engines.pool import EngineFactsCache, EnginePool
from orchestrator.model import Action, Arch
from orchestrator.plan.decide import Decision
from orchestrator.plan.gather import make_plan
from orchestrator.plan.shards import Shard, item_of, shards_of
from orchestrator.plan.upstream import ProjectPage, Upstream
from orchestrator.scheduler import Cancel, Job, JobResult, Placement, Scheduler
from tests.unit.fakes import FakeEngine

MATRIX = REPO / "examples" / "openstack.yaml"
ROOT = OUT / "shards"
TIMEOUT_S = 2.5 * 3600  # OpenDev's wheel jobs: a 2.5-hour timeout per job
RUNNER_SLOTS = 4  # a hosted runner's cores (GitHub's ubuntu-24.04: 4 vCPUs)
RUNNER_SETUP_S = 300.0  # a runner's start, host set-up and builder image, per shard
SCALE = 1 / 4000  # simulated seconds per real second


def _matrix(root: Path, name: str) -> Path:
    text = MATRIX.read_text()
    old = "root: .orchestrate/openstack-wheelhouse"
    assert old in text, f"{old!r} is not in {MATRIX}"
    path = ROOT / f"{name}.yaml"
    path.write_text(text.replace(old, f"root: {root}"))
    return path


def _runner(matrix: Path, shard: str) -> subprocess.Popen[str]:
    env = {**os.environ, "ORCHESTRATE_CACHE_DIR": str(ROOT / f"cache-{shard}")}
    return subprocess.Popen(
        [
            "orchestrate",
            "-q",
            "build",
            "-m",
            str(matrix),
            "--plan",
            str(ROOT / "plan.json"),
            "--shard",
            shard,
            "--bundle",
            str(ROOT / f"bundle-{shard}"),
            "--workdir",
            str(ROOT / f"work-{shard}"),
            "--report",
            str(ROOT / f"{shard}.json"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def served(root: Path) -> dict[str, dict[str, str]]:
    """Per platform, every served file's sha256 (provenance statements by name only:
    they name their run)."""
    out = {}
    for link in sorted(p for p in root.iterdir() if p.is_symlink()):
        simple = link / "simple"
        out[link.name] = {
            f.relative_to(simple).as_posix(): (
                "statement"
                if f.name.endswith(".intoto.json")
                else hashlib.sha256(f.read_bytes()).hexdigest()
            )
            for f in sorted(simple.rglob("*"))
            if f.is_file()
        }
    return out


def two_runners(single_root: Path | None = None) -> tuple[list[Row], list[dict[str, Any]]]:
    """The rows, and the shards' reports (their job durations feed `opendev_scale`).
    `single_root`: the index of a single-host build of the same night, when the run
    already made one; else one is built here, after the shards."""
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir(parents=True)
    matrix = _matrix(ROOT / "index", "sharded")
    planned = sh(
        "orchestrate",
        "plan",
        "-m",
        str(matrix),
        "-r",
        str(CONSTRAINTS),
        "--allow-unavailable",
        "--shards",
        "--save-plan",
        str(ROOT / "plan.json"),
    )
    shards = [e["shard"] for e in json.loads(planned.stdout)["include"]]
    started = time.perf_counter()
    runners = {s: _runner(matrix, s) for s in shards}
    walls: dict[str, float] = {}
    while len(walls) < len(runners):  # each shard's own wall time, as it ends
        for shard, runner in runners.items():
            if shard not in walls and runner.poll() is not None:
                walls[shard] = time.perf_counter() - started
        time.sleep(0.5)
    merge_started = time.perf_counter()
    merged = sh(
        "orchestrate",
        "-q",
        "merge",
        "-m",
        str(matrix),
        "--workdir",
        str(ROOT / "work-merge"),
        *(str(ROOT / f"bundle-{s}") for s in shards),
        check=False,
    )
    merge_s = time.perf_counter() - merge_started
    if single_root is None:
        single_root = ROOT / "single-index"
        env = {**os.environ, "ORCHESTRATE_CACHE_DIR": str(ROOT / "cache-single")}
        orchestrate_build(
            _matrix(single_root, "single"),
            CONSTRAINTS,
            ROOT / "work-single",
            ROOT / "single.json",
            env=env,
        )
    same = served(ROOT / "index") == served(single_root)
    reports = [json.loads((ROOT / f"{s}.json").read_text()) for s in shards]
    return _rows(walls, merge_s=merge_s, code=merged.returncode, same=same), reports


def _rows(walls: Mapping[str, float], *, merge_s: float, code: int, same: bool) -> list[Row]:
    shards = list(walls)
    each = ", ".join(f"{s} {walls[s]:.0f} s" for s in shards)
    return [
        Row(
            "two runners: OpenStack, 2 shards built at once, wall time (slowest shard)",
            max(walls.values()),
            None,
            "s",
            None,
            "2 shards",
            len(shards) == 2,
            f"each shard's wall time: {each}; own workdir and cache each, one engine",
        ),
        Row(
            "two runners: merge of both bundles (verify, store, publish)",
            merge_s,
            None,
            "s",
            None,
            "< 10 s",
            merge_s < 10 and code in (0, 1),
            f"exit {code} (1: some pins of these old constraints fail to build)",
        ),
        Row(
            "two runners: merged index = single-host index",
            1.0 if same else 0.0,
            None,
            "",
            None,
            "identical",
            same,
            "every platform: the same file names, sha256s and pages",
        ),
    ]


# -- OpenDev's scale, projected ---------------------------------------------------

DISTROS = (
    ("centos", "stream9", "rpm", "2.34"),
    ("debian", "bookworm", "deb", "2.36"),
    ("ubuntu", "noble", "deb", "2.39"),
)
ARCHES = ("amd64", "arm64", "ppc64le", "s390x", "riscv64")


def _scale_matrix(root: Path) -> Path:
    """15 platforms and 4 branches of the committed constraints: `master` as it is,
    three older branches that pin every second, third and fourth project one
    release back (what stable branches do), through the real planner."""
    distros = "".join(
        f"  - name: {n}\n    release: {r}\n    family: {f}\n    base: {n}:{r}\n"
        f"    python: ['3.11']\n    glibc: '{g}'\n    arches: [{', '.join(ARCHES)}]\n"
        for n, r, f, g in DISTROS
    )
    branches = "".join(
        f"  - name: {b}\n    constraints: {root / (b + '.txt')}\n"
        for b in ("master", "stable-1", "stable-2", "stable-3")
    )
    path = root / "opendev.yaml"
    path.write_text(
        "version: 1\nregistry: {url: 127.0.0.1:5000, repository: orchestrate/opendev}\n"
        f"index: {{root: {root / 'index'}}}\ndistros:\n{distros}branches:\n{branches}"
    )
    return path


def _branches(root: Path, upstream: Upstream) -> None:
    lines = [ln for ln in CONSTRAINTS.read_text().splitlines() if "===" in ln]
    pins = [(ln.split("===")[0], ln.split("===")[1].split(";")[0]) for ln in lines]
    pages = upstream.projects(name for name, _ in pins)
    (root / "master.txt").write_text("\n".join(lines) + "\n")
    for step, branch in ((2, "stable-1"), (3, "stable-2"), (4, "stable-3")):
        out = []
        for i, (name, version) in enumerate(pins):
            older = _previous(pages.get(name), version) if i % step == 0 else None
            out.append(f"{name}==={older or version}")
        (root / f"{branch}.txt").write_text("\n".join(out) + "\n")


def _previous(page: ProjectPage | None, version: str) -> str | None:
    """The release before `version` that has an sdist, as a stable branch pins."""
    if page is None:
        return None
    earlier = sorted((v for v in page.versions() if _key(v) < _key(version)), key=_key)
    for candidate in reversed(earlier[-5:]):
        if any(f.filename.endswith((".tar.gz", ".zip")) for f in page.files(candidate)):
            return candidate
    return None


def _key(version: str) -> Any:
    from packaging.version import InvalidVersion, Version

    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def measured(reports: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float], float]:
    """Native seconds per project (amd64 jobs; an arm64-only one from its emulated
    time), and the emulation factor: the median of emulated / native over projects
    built both ways in this run."""
    native: dict[str, float] = {}
    emulated: dict[str, float] = {}
    for report in reports:
        for job in report["jobs"]:
            if job["status"] == "built" and job.get("kind") == "wheel":
                where = emulated if job["emulated"] else native
                where[job["name"]] = float(job["duration"])
    both = [emulated[n] / native[n] for n in emulated if native.get(n)]
    factor = statistics.median(both) if both else 3.0
    for name, seconds in emulated.items():
        native.setdefault(name, seconds / factor)
    return native, factor


def _sleeper(factor: float) -> Any:
    def run(job: Job[float], placement: Placement, _cancel: Cancel) -> JobResult:
        engine = placement.engine
        assert isinstance(engine, FakeEngine)
        engine.work(job.payload * (factor if placement.emulated else 1.0) * SCALE)
        return JobResult(ok=True)

    return run


def _simulate(jobs: Sequence[Job[float]], engines: Sequence[FakeEngine], factor: float) -> float:
    """The real scheduler's makespan, in unscaled seconds."""
    started = time.perf_counter()
    Scheduler(EnginePool(list(engines), EngineFactsCache(None))).run(jobs, _sleeper(factor))
    return (time.perf_counter() - started) / SCALE


Planned = tuple[dict[Platform, list[Job[float]]], float, float, int]


def _night(reports: Sequence[Mapping[str, Any]]) -> Planned:
    """The planned jobs per platform at OpenDev's scale, the emulation factor, the
    planner's own seconds and its item count."""
    root = ROOT / "opendev"
    root.mkdir(parents=True, exist_ok=True)
    cache = OUT / "openstack-cache" / "index"
    upstream = Upstream.of(IndexSpec().upstream_index, cache)
    _branches(root, upstream)
    matrix = load_matrix(_scale_matrix(root))
    platforms = expand(matrix)
    started = time.perf_counter()
    plan = make_plan(
        matrix, platforms, (), upstream=Upstream.of(matrix.index.upstream_index, cache)
    )
    planning = time.perf_counter() - started
    native, factor = measured(reports)
    typical = statistics.median(native.values()) if native else 60.0
    by_name = {p.name: p for p in platforms}
    jobs: dict[Platform, list[Job[float]]] = {p: [] for p in platforms}
    for d in plan.decisions:
        if d.action in (Action.BUILD, Action.REBUILD):
            seconds = native.get(d.name, typical)
            platform = by_name[d.platform]
            job_id = f"{d.platform}/{d.name}=={d.version}"
            jobs[platform].append(Job(job_id, platform.arch, seconds, seconds))
    return jobs, factor, planning, len(plan.decisions)


def opendev_scale(reports: Sequence[Mapping[str, Any]]) -> list[Row]:
    jobs, factor, planning, items = _night(reports)
    count = sum(len(j) for j in jobs.values())
    foreign = tuple(a for a in Arch if a is not Arch.AMD64)
    host = [FakeEngine("host", Arch.AMD64, RUNNER_SLOTS, emulates=foreign)]
    everything = [j for js in jobs.values() for j in js]
    one_host = _simulate(everything, host, factor) + RUNNER_SETUP_S
    shard_walls = {
        p.name: _simulate(js, [FakeEngine(p.name, p.arch, RUNNER_SLOTS)], factor) + RUNNER_SETUP_S
        for p, js in jobs.items()
    }
    rows = [
        Row(
            "OpenDev scale: the plan (15 platforms x 4 branches, the real planner)",
            planning,
            None,
            "s",
            None,
            "",
            None,
            f"{items} items, {count} wheels to build; emulation factor {factor:.1f}x "
            "(measured above: arm64 with the native compiler / amd64)",
        ),
        Row(
            "OpenDev scale: one host, QEMU for 4 of 5 arches",
            one_host / 3600,
            TIMEOUT_S / 3600,
            "h",
            one_host / TIMEOUT_S,
            "< 1x the 2.5 h timeout",
            one_host < TIMEOUT_S,
            f"{RUNNER_SLOTS} slots; {one_host / 60:.0f} runner-minutes",
        ),
    ]
    return rows + [_runners(n, shard_walls) for n in (1, 3, 5, 15)]


def _runners(n: int, shard_walls: Mapping[str, float]) -> Row:
    """Shards (one per platform, each native) on at most `n` runners at once."""
    shards = [Job(name, Arch.AMD64, wall, wall) for name, wall in shard_walls.items()]
    ci = [FakeEngine("ci", Arch.AMD64, n)]
    wall = _simulate(shards, ci, 1.0)
    longest = max(shard_walls.values())
    minutes = sum(shard_walls.values()) / 60
    return Row(
        f"OpenDev scale: {n} native runner(s) at once, one shard per platform",
        wall / 3600,
        TIMEOUT_S / 3600,
        "h",
        wall / TIMEOUT_S,
        "every job < 2.5 h",
        longest < TIMEOUT_S,
        f"longest job (one shard) {longest / 3600:.2f} h; {minutes:.0f} runner-minutes "
        f"({RUNNER_SLOTS}-core runners, {RUNNER_SETUP_S:.0f} s set-up each)",
    )


def split_by_budget(reports: Sequence[Mapping[str, Any]]) -> list[Row]:
    """OpenStack's night (this run's plan and measured job times) on 1, 2 and 4
    native runners per arch: the plan's own split (`budget_minutes` in `runners:`),
    each part's jobs through the real scheduler on a runner of its own."""
    plan = json.loads((ROOT / "plan.json").read_text())
    decisions = [Decision.from_dict(d) for d in plan["decisions"]]
    matrix = load_matrix(_matrix(ROOT / "index", "sharded"))
    platforms = [p for p in expand(matrix) if p.name in plan["platforms"]]
    native, _factor = measured(reports)
    typical = statistics.median(native.values()) if native else 60.0

    def expected(name: str, _arch: str, /, *, emulated: bool) -> float:
        return native.get(name, typical)

    whole = shards_of(decisions, platforms, (), expected)
    rows = []
    for count in (1, 2, 4):
        rules = tuple(_budget_rule(s, count) for s in whole if s.jobs)
        parts = [s for s in shards_of(decisions, platforms, rules, expected) if s.jobs]
        budgets = ", ".join(f"{r.shard} {r.budget_minutes}" for r in rules)
        walls = [_part_wall(part, decisions, platforms, expected) for part in parts]
        rows.append(
            Row(
                f"OpenStack split by budget: {count} runner(s) per arch, night's wall time",
                max(walls) / 60,
                None,
                "min",
                None,
                "",
                None,
                f"{len(parts)} parts (budgets {budgets} min: whole minutes, so a short "
                f"arch splits less), longest {max(walls) / 60:.1f} min, "
                f"{sum(walls) / 60:.0f} runner-minutes ({RUNNER_SLOTS}-core runners, "
                f"{RUNNER_SETUP_S:.0f} s set-up each; job times from the OpenStack run's reports)",
            )
        )
    return rows


def _budget_rule(shard: Shard, count: int) -> RunnerSpec:
    """A rule that splits `shard` into about `count` parts."""
    minutes = max(1, math.ceil(shard.expected_seconds / count / 60))
    return RunnerSpec(
        platforms=f"*-{shard.name}", labels=shard.labels, shard=shard.name, budget_minutes=minutes
    )


def _part_wall(
    part: Shard, decisions: Sequence[Decision], platforms: Sequence[Platform], expected: Any
) -> float:
    by_name = {p.name: p for p in platforms}
    jobs = [
        Job(item_of(d), by_name[d.platform].arch, seconds, seconds)
        for d in part.decisions(decisions)
        if d.action in (Action.BUILD, Action.REBUILD) and d.platform in by_name
        for seconds in [expected(d.name, by_name[d.platform].arch.value, emulated=False)]
    ]
    arch = by_name[part.platforms[0]].arch
    return _simulate(jobs, [FakeEngine(part.name, arch, RUNNER_SLOTS)], 1.0) + RUNNER_SETUP_S


def split_of_last_night() -> list[Row]:
    """`split_by_budget` on the last full OpenStack run's job times (its one-host
    report), with a plan made now from its caches: minutes, not the long run."""
    report = OUT / "openstack-first.json"
    if not report.is_file():
        raise SystemExit(f"{report} is missing: run `python -m benchmarks.openstack` first")
    ROOT.mkdir(parents=True, exist_ok=True)
    matrix = _matrix(ROOT / "index", "sharded")
    env = {**os.environ, "ORCHESTRATE_CACHE_DIR": str(OUT / "openstack-cache")}
    plan = ("plan", "-m", str(matrix), "-r", str(CONSTRAINTS), "--allow-unavailable")
    sh("orchestrate", *plan, "--shards", "--save-plan", str(ROOT / "plan.json"), env=env)
    return split_by_budget([json.loads(report.read_text())])


def main() -> None:
    """`python -m benchmarks.shards`: every shard benchmark, standalone;
    `--split-only`: the budget split on the last OpenStack run's job times."""
    import sys

    from benchmarks.common import print_table

    if "--split-only" in sys.argv[1:]:
        rows = split_of_last_night()
        print_table(rows)
        (OUT / "split-rows.json").write_text(json.dumps([r.__dict__ for r in rows], indent=1))
        return
    rows, reports = two_runners()
    rows += split_by_budget(reports)
    rows += opendev_scale(reports)
    print_table(rows)
    (OUT / "shards-rows.json").write_text(json.dumps([r.__dict__ for r in rows], indent=1))


if __name__ == "__main__":
    main()
