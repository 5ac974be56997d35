"""`orchestrate build`: images → plan → sdists → job graph → jobs on the pool → store → index.

Each stage hands the next typed values: the images stage returns image facts
(IDs per engine, probed tags), the plan its decisions and the index pages it
read, the sources stage verified sdists and their facts, the pure job-graph
module the graph. `run_build` fills a `BuildRun` as it goes, so the caller
can write a report of whatever finished, even when a stage raises.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name

from orchestrator.build.builddeps import BuildDepNeed, needs_for, parse_constraints
from orchestrator.build.execute import ExecOptions, Executor, emulated_by_arch, emulated_seconds
from orchestrator.build.failures import Failure, python_version_hint
from orchestrator.build.graph import JobSettings, PoolSnapshot, SdistOutcome, job_graph
from orchestrator.build.records import WheelRecord
from orchestrator.build.sources import (
    HashMismatch,
    SdistCache,
    SdistDownloadError,
    SdistFacts,
    SdistRef,
    facts,
)
from orchestrator.config import Matrix
from orchestrator.config.matrix import Platform
from orchestrator.core.errors import OrchestrateError, StoreConflict, UnsafeName
from orchestrator.core.layout import RunLayout
from orchestrator.engines.pool import EnginePool
from orchestrator.images.facts import ImageFacts, ProbeCache
from orchestrator.images.pipeline import ImagesReport, run_images
from orchestrator.model import Category, JobKind
from orchestrator.plan.decide import Decision
from orchestrator.plan.gather import Builder, PlanResult, make_plan
from orchestrator.plan.overrides import Overrides
from orchestrator.plan.upstream import ProjectPage, Upstream, oldest_supporting
from orchestrator.publish.index import PublishResult, publish
from orchestrator.publish.provenance import statement
from orchestrator.scheduler import Cancel
from orchestrator.store import AddResult, Provenance, Store

MAX_BUILD_DEP_DEPTH = 3  # build requirements of build requirements, and so on


@dataclass
class BuildRun:
    run_id: str
    started: str
    platforms: list[str]
    images: ImagesReport = field(default_factory=ImagesReport)
    plan: list[Decision] = field(default_factory=list)
    jobs: list[WheelRecord] = field(default_factory=list)
    store: list[AddResult] = field(default_factory=list)
    published: list[PublishResult] = field(default_factory=list)
    publish_errors: dict[str, str] = field(default_factory=dict)
    finished: str = ""
    error: str = ""  # what stopped the run early, when something did
    sdist_downloads: int = 0
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage of the run
    disk_error: bool = False  # storing or publishing failed for the disk's sake
    store_conflict: bool = False  # the store's manifest is unusable: nothing published

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.stages[name] = round(self.stages.get(name, 0) + time.monotonic() - started, 2)

    @property
    def failed(self) -> list[WheelRecord]:
        return [j for j in self.jobs if not j.status.ok]

    @property
    def mismatches(self) -> list[AddResult]:
        return [s for s in self.store if s.outcome == "mismatch"]


@dataclass(frozen=True)
class BuildOptions:
    emulate_when_busy: bool = False
    fail_fast: bool = False
    keep_failed: bool = False
    replace: bool = False
    timeout: float | None = None  # per job; default from the matrix
    resolve_latest: bool = False
    deadline: float | None = None  # seconds from the start after which no job starts
    build_constraints: tuple[str, ...] = ()


def new_run(layout: RunLayout, platforms: Sequence[Platform]) -> BuildRun:
    return BuildRun(layout.run_id, _now(), [p.name for p in platforms])


def run_build(
    run: BuildRun,
    matrix: Matrix,
    pool: EnginePool,
    platforms: Sequence[Platform],
    *,
    requirements: Sequence[Path],
    constraints: Sequence[Path],
    options: BuildOptions,
    layout: RunLayout,
    cancel: Cancel,
    on_event: Callable[..., None],
) -> None:
    """Fill `run` stage by stage; exceptions propagate with `run` holding what finished."""
    deadline = time.monotonic() + options.deadline if options.deadline else None
    try:
        with run.stage("images"):
            run.images = run_images(
                matrix,
                pool,
                platforms,
                layout.logs,
                cancel=cancel,
                on_event=on_event,
                probes=ProbeCache(layout.probes),
            )
        probed = {p: f.tags for p, f in run.images.facts.items()}
        with run.stage("plan"):
            plan = make_plan(
                matrix,
                platforms,
                requirements,
                constraints,
                resolve_latest=options.resolve_latest,
                upstream=Upstream.of(matrix.index, layout.index_cache),
                probed=probed,
                builders=builders_of(run.images.facts),
            )
        run.plan = plan.decisions
        for notice in plan.notices:
            on_event("notice", None, notice)
        if not cancel.event.is_set():
            run.jobs = _build_wheels(
                run,
                matrix,
                pool,
                platforms,
                plan=plan,
                options=options,
                layout=layout,
                cancel=cancel,
                on_event=on_event,
                deadline=deadline,
            )
    finally:
        with run.stage("publish"):
            _store_and_publish(matrix, run, options, layout)
        run.finished = _now()


def builders_of(facts: Mapping[str, ImageFacts]) -> dict[str, Builder]:
    """The current builders' runtime facts, for the plan's ABI check (#12)."""
    return {
        p: Builder(f.runtime, frozenset(f.ids.values()))
        for p, f in facts.items()
        if f.runtime is not None
    }


def _build_wheels(
    run: BuildRun,
    matrix: Matrix,
    pool: EnginePool,
    platforms: Sequence[Platform],
    *,
    plan: PlanResult,
    options: BuildOptions,
    layout: RunLayout,
    cancel: Cancel,
    on_event: Callable[..., None],
    deadline: float | None,
) -> list[WheelRecord]:
    by_name = {p.name: p for p in platforms}
    cache = SdistCache(layout.sdists)
    todo = [d for d in plan.decisions if d.action.builds and d.sdist_url]
    with run.stage("sdists"):
        sdists = fetch_sdists(cache, {(d.name, d.version): _ref(d) for d in todo})
        pins = parse_constraints(options.build_constraints, "build constraints")
        needs = build_dep_needs(todo, sdists, cache, by_name, plan=plan, constraints=pins)
    run.sdist_downloads = cache.downloads
    settings = JobSettings(
        options.timeout or float(matrix.builder.job_timeout),
        options.build_constraints,
        options.keep_failed,
        run.run_id,
        Overrides.of(matrix),
    )
    executor = Executor(
        matrix, layout, run.images.facts, _good(sdists), tagsets=plan.tagsets, cancel=cancel
    )
    graph = job_graph(
        plan.decisions,
        by_name,
        run.images.facts,
        sdists,
        needs=needs,
        pool=PoolSnapshot(frozenset(p.arch for p in platforms if pool.candidates(p.arch)[0])),
        expected=lambda name, arch, emulated, guess: executor.durations.expected(
            name, arch.value, emulated, guess
        ),
        settings=settings,
    )
    options_ = ExecOptions(options.emulate_when_busy, options.fail_fast, deadline)
    try:
        with run.stage("jobs"):
            return executor.run(graph, pool, options_, on_event)
    finally:
        # Whatever stopped the run, what finished goes to the store, index and report.
        run.jobs = list(executor.records.values())
        for record in run.jobs:
            _name_supporting_release(record, plan.pages)


def _name_supporting_release(record: WheelRecord, pages: Mapping[str, ProjectPage | None]) -> None:
    """A release older than the builder's Python: its hint names the oldest release
    of the project that says it fits that Python."""
    if record.category is not Category.PYTHON_VERSION:
        return
    page = pages.get(record.name)
    newer = oldest_supporting(page, record.python, record.version) if page else None
    record.hint = python_version_hint(record.python, record.name, newer)


def _ref(decision: Decision) -> SdistRef:
    assert decision.sdist
    assert decision.sdist_url
    return SdistRef(decision.sdist, decision.sdist_url, decision.sdist_sha256)


def fetch_sdists(
    cache: SdistCache, refs: Mapping[tuple[str, str], SdistRef], workers: int = 8
) -> dict[tuple[str, str], SdistOutcome]:
    """Each sdist once, verified, in parallel; a failure is that item's, not the run's."""

    def one(ref: SdistRef) -> SdistOutcome:
        try:
            return facts(ref, cache.get(ref))
        except HashMismatch as exc:
            return Failure(Category.HASH_MISMATCH, exc.message, exc.hint or "")
        except UnsafeName as exc:
            return Failure(Category.BAD_SDIST, exc.message, "the index's page is wrong or hostile")
        except SdistDownloadError as exc:
            return Failure(Category.SDIST_DOWNLOAD, exc.message, "a network fault")

    keys = list(refs)
    with ThreadPoolExecutor(max_workers=workers) as threads:
        return dict(zip(keys, threads.map(one, [refs[k] for k in keys]), strict=True))


def build_dep_needs(
    todo: Sequence[Decision],
    sdists: dict[tuple[str, str], SdistOutcome],
    cache: SdistCache,
    platforms: Mapping[str, Platform],
    *,
    plan: PlanResult,
    constraints: Mapping[NormalizedName, SpecifierSet],
) -> list[BuildDepNeed]:
    """Static build requirements that need a wheel built first, to a fixed depth.
    Their sdists are fetched into `sdists` as well: their jobs need them."""
    wanted = {(d.platform, d.python, d.name, d.version) for d in todo}
    found: dict[tuple[str, str, str, str], BuildDepNeed] = {}
    for _depth in range(MAX_BUILD_DEP_DEPTH):
        new = _needs_of(wanted, sdists, platforms, plan, constraints=constraints)
        new = [n for n in new if (n.platform, n.python, n.name, n.version) not in found]
        if not new:
            break
        for need in new:
            found[(need.platform, need.python, need.name, need.version)] = need
        refs = {
            (n.name, n.version): SdistRef(n.sdist.filename, n.sdist.url, n.sdist.sha256)
            for n in new
        }
        sdists.update(fetch_sdists(cache, {k: v for k, v in refs.items() if k not in sdists}))
        wanted = {(n.platform, n.python, n.name, n.version) for n in new}
    return list(found.values())


def _needs_of(
    wanted: set[tuple[str, str, str, str]],
    sdists: Mapping[tuple[str, str], SdistOutcome],
    platforms: Mapping[str, Platform],
    plan: PlanResult,
    *,
    constraints: Mapping[NormalizedName, SpecifierSet],
) -> list[BuildDepNeed]:
    requires = {
        key: item.build_requires for key, item in sdists.items() if not isinstance(item, Failure)
    }
    names = {r.split(";")[0] for reqs in requires.values() for r in reqs}
    pages = {**plan.pages, **plan.upstream.projects(_names(names) - set(plan.pages))}
    out: list[BuildDepNeed] = []
    for platform, python, name, version in sorted(wanted):
        out += needs_for(
            requires.get((name, version), ()),
            f"{name}=={version}",
            platforms[platform],
            python,
            pages=pages,
            tags=plan.tagsets[(platform, python)],
            constraints=constraints,
        )
    return out


def _names(requirements: set[str]) -> set[str]:
    out: set[str] = set()
    for text in requirements:
        try:
            out.add(canonicalize_name(Requirement(text).name))
        except InvalidRequirement:
            continue
    return out


def _good(sdists: Mapping[tuple[str, str], SdistOutcome]) -> dict[tuple[str, str], SdistFacts]:
    return {k: v for k, v in sdists.items() if isinstance(v, SdistFacts)}


def _store_and_publish(
    matrix: Matrix, run: BuildRun, options: BuildOptions, layout: RunLayout
) -> None:
    store = Store(matrix.index.root)
    try:
        _store(store, run, options, layout)
    except (OSError, OrchestrateError) as exc:  # e.g. a full disk: the index stays as it was
        message = exc.message if isinstance(exc, OrchestrateError) else str(exc)
        run.publish_errors["(store)"] = f"adding the built wheels failed: {message}"
        run.disk_error = isinstance(exc, OSError)
        run.store_conflict = isinstance(exc, StoreConflict)  # an unusable manifest: exit 4
        return
    for result in publish(store, run.platforms, keep=matrix.index.keep_releases):
        if result.status == "failed":
            run.publish_errors[result.platform] = result.error
            run.disk_error = run.disk_error or result.environment
        else:
            run.published.append(result)


def _store(store: Store, run: BuildRun, options: BuildOptions, layout: RunLayout) -> None:
    wheels = [j for j in run.jobs if j.kind == JobKind.WHEEL]
    serves: dict[str, list[str]] = {}  # wheel filename -> the platforms it serves
    for job in wheels:
        if job.status.ok and job.wheel:
            serves.setdefault(job.wheel, []).append(job.platform)
    built = [j for j in wheels if j.status == "built" and j.wheel]
    if not built:
        return
    with store.locked() as records:
        for job in built:
            assert job.wheel is not None
            platforms = serves[job.wheel]
            ordered = [job.platform, *[p for p in platforms if p != job.platform]]
            run.store.append(
                store.add(
                    records,
                    layout.job_dir(job.job) / job.wheel,
                    ordered,
                    Provenance(
                        source_sha256=job.source_sha256,
                        built_at=_now(),
                        image=job.image,
                        job=job.job,
                        runtime=job.runtime,
                        smoke=job.smoke,
                        rebuild=job.rebuild,
                        statement=functools.partial(statement, job),
                    ),
                    replace=options.replace,
                )
            )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


__all__ = [
    "BuildOptions",
    "BuildRun",
    "emulated_by_arch",
    "emulated_seconds",
    "new_run",
    "run_build",
]
