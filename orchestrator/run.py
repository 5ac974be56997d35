"""`orchestrate build`: images → plan → sources → job graph → jobs → store and publish.

A night is a chain of values. Each stage takes what the ones before it returned and
returns a frozen value of its own: image facts, the plan, the sources (sdists and
the build dependencies they need), the job records, the publish outcome. The store
and publish stage runs whatever stopped the night, with what finished. `run_build`
returns one `NightResult`; the CLI turns it into the report, the output and one
exit code.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName

from orchestrator.config import Matrix
from orchestrator.config.matrix import Platform
from orchestrator.core.errors import InternalError, OrchestrateError
from orchestrator.core.layout import RunLayout
from orchestrator.engines.pool import EnginePool
from orchestrator.images.facts import ImageFacts, ProbeCache
from orchestrator.images.pipeline import ImagesReport, run_images
from orchestrator.jobs.builddeps import parse_constraints
from orchestrator.jobs.durations import Durations
from orchestrator.jobs.execute import ExecOptions, Executor
from orchestrator.jobs.failures import python_version_hint
from orchestrator.jobs.graph import JobGraph, JobSettings, PoolSnapshot, job_graph
from orchestrator.jobs.needs import Sources, gather_sources
from orchestrator.jobs.records import WheelRecord, account_for, build_items
from orchestrator.jobs.sources import SdistCache
from orchestrator.model import Action, Category, ShardStatus
from orchestrator.plan.decide import Decision
from orchestrator.plan.gather import BuilderRuntime, PlanResult, make_plan, planned
from orchestrator.plan.overrides import Overrides
from orchestrator.plan.planfile import PlanFile
from orchestrator.plan.shards import Shard
from orchestrator.plan.upstream import ProjectPage, Upstream, oldest_supporting
from orchestrator.publish.index import PlatformResult
from orchestrator.publish.release import PublishResult, now, store_and_publish
from orchestrator.scheduler import Cancel, Progress
from orchestrator.store import AddResult


@dataclass(frozen=True, kw_only=True)
class BuildOptions:
    emulate_when_busy: bool = False
    fail_fast: bool = False
    keep_failed: bool = False
    replace: bool = False
    timeout: float | None = None  # per job; default from the matrix
    resolve_latest: bool = False
    deadline: float | None = None  # seconds from the start after which no job starts
    build_constraints: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class NightRequest:
    """One night: what to build, for which platforms, where its files go."""

    matrix: Matrix
    platforms: tuple[Platform, ...]
    requirements: tuple[Path, ...] = ()
    constraints: tuple[Path, ...] = ()
    options: BuildOptions = BuildOptions()
    layout: RunLayout
    plan: PlanFile | None = None  # decisions made before (a shard's), instead of planning
    shard: Shard | None = None  # the plan's shard this night builds (a part: its items)
    publish: bool = True  # False: a shard's night, which a merge stores and publishes


@dataclass(frozen=True, kw_only=True)
class ShardResult:
    """One shard of a merged night: what came of it, and from which bundles."""

    name: str
    platforms: tuple[str, ...]
    status: ShardStatus
    bundles: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()  # the shard runs' IDs

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "platforms": list(self.platforms),
            "status": self.status.value,
            "bundles": list(self.bundles),
            "runs": list(self.runs),
        }


@dataclass(frozen=True, kw_only=True)
class NightResult:
    """What one night did, stage by stage, as far as it got."""

    run_id: str
    started: str
    finished: str
    platforms: tuple[str, ...]
    images: ImagesReport
    plan: tuple[Decision, ...] = ()
    jobs: tuple[WheelRecord, ...] = ()
    sdist_downloads: int = 0
    publish: PublishResult = field(default_factory=PublishResult)
    stages: Mapping[str, float] = field(default_factory=dict)
    stopped: BaseException | None = None  # what ended the night early, if anything did
    shards: tuple[ShardResult, ...] = ()  # a merged night's shards

    @property
    def missing_shards(self) -> list[ShardResult]:
        return [s for s in self.shards if s.status is ShardStatus.MISSING]

    @property
    def error(self) -> str:
        return "" if self.stopped is None else _reason(self.stopped)

    @property
    def failed(self) -> list[WheelRecord]:
        return [j for j in self.jobs if not j.status.ok]

    @property
    def store(self) -> tuple[AddResult, ...]:
        return self.publish.added

    @property
    def published(self) -> tuple[PlatformResult, ...]:
        return self.publish.published

    @property
    def publish_errors(self) -> Mapping[str, str]:
        return self.publish.errors

    @property
    def mismatches(self) -> list[AddResult]:
        return self.publish.mismatches


class StageClock:
    """Seconds per stage: the one thing a night measures as it goes."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - started, 2)


@dataclass(frozen=True, kw_only=True)
class JobsResult:
    jobs: tuple[WheelRecord, ...] = ()
    sdist_downloads: int = 0
    stopped: BaseException | None = None


def _publish(request: NightRequest, built: JobsResult, *, clock: StageClock) -> PublishResult:
    """The night's wheels stored and its platforms published; nothing for a shard's
    night, which a merge publishes."""
    if not request.publish:
        return PublishResult()
    with clock.stage("publish"):
        return store_and_publish(
            built.jobs,
            matrix=request.matrix,
            platforms=[p.name for p in request.platforms],
            wheel_of=lambda job: request.layout.job_dir(job.job) / str(job.wheel),
            replace=request.options.replace,
        )


def run_build(
    request: NightRequest, *, pool: EnginePool, cancel: Cancel, progress: Progress
) -> NightResult:
    """The night's stages in order. An error in one is kept in the outcome, and what
    finished before it is stored, published and reported all the same."""
    # Bad build constraints are the user's to fix before anything runs.
    pins = parse_constraints(request.options.build_constraints, "build constraints")
    started, clock = now(), StageClock()
    images, plan, built = ImagesReport(), None, JobsResult()
    try:
        with clock.stage("images"):
            images = _images(request, pool=pool, cancel=cancel, progress=progress)
        with clock.stage("plan"):
            plan = _plan(request, images)
        for notice in (*plan.notices, *night_ahead(plan.decisions, request.platforms)):
            progress.notice(notice)
        if not cancel.event.is_set():
            built = _wheels(
                request,
                images,
                plan,
                pins,
                pool=pool,
                cancel=cancel,
                progress=progress,
                clock=clock,
            )
    except Exception as exc:  # kept in the outcome; the CLI raises it
        built = JobsResult(jobs=built.jobs, stopped=exc)
    if plan is not None:
        built = _accounted(request, plan, built, cancel=cancel)
    published = _publish(request, built, clock=clock)
    return NightResult(
        run_id=request.layout.run_id,
        started=started,
        finished=now(),
        platforms=tuple(p.name for p in request.platforms),
        images=images,
        plan=tuple(plan.decisions) if plan else (),
        jobs=built.jobs,
        sdist_downloads=built.sdist_downloads,
        publish=published,
        stages=dict(clock.seconds),
        stopped=built.stopped,
    )


def night_ahead(decisions: Sequence[Decision], platforms: Sequence[Platform]) -> list[str]:
    """What the night will do on each platform, said before its first job starts."""
    lines = []
    for platform in platforms:
        actions = Counter(d.action for d in decisions if d.platform == platform.name)
        build = actions[Action.BUILD] + actions[Action.REBUILD]
        rest = ", ".join(
            f"{actions[a]} {a.value}"
            for a in Action
            if a not in (Action.BUILD, Action.REBUILD) and actions[a]
        )
        lines.append(f"{platform.name}: {build} to build" + (f", {rest}" if rest else ""))
    return lines


def _images(
    request: NightRequest, *, pool: EnginePool, cancel: Cancel, progress: Progress
) -> ImagesReport:
    layout = request.layout
    return run_images(
        request.matrix,
        pool,
        request.platforms,
        layout,
        cancel=cancel,
        progress=progress,
        probes=ProbeCache(layout.probes),
    )


def _plan(request: NightRequest, images: ImagesReport) -> PlanResult:
    upstream = Upstream.of(request.matrix.index.upstream_index, request.layout.index_cache)
    probed = {p: f.tags for p, f in images.facts.items()}
    if request.plan is not None:
        decisions = request.plan.decisions
        if request.shard is not None:
            decisions = request.shard.decisions(decisions)
        return planned(decisions, request.platforms, upstream=upstream, probed=probed)
    return make_plan(
        request.matrix,
        request.platforms,
        request.requirements,
        request.constraints,
        resolve_latest=request.options.resolve_latest,
        upstream=upstream,
        probed=probed,
        builders=builders_of(images.facts),
    )


def builders_of(facts: Mapping[str, ImageFacts]) -> dict[str, BuilderRuntime]:
    """The current builders' runtime facts, for the plan's ABI check."""
    return {
        p: BuilderRuntime(f.runtime, frozenset(f.ids.values()))
        for p, f in facts.items()
        if f.runtime is not None
    }


def _wheels(
    request: NightRequest,
    images: ImagesReport,
    plan: PlanResult,
    pins: Mapping[NormalizedName, SpecifierSet],
    *,
    pool: EnginePool,
    cancel: Cancel,
    progress: Progress,
    clock: StageClock,
) -> JobsResult:
    """Sources, the job graph, and the jobs on the pool; what finished is kept even
    when the jobs stage is stopped."""
    options, matrix = request.options, request.matrix
    with clock.stage("sdists"):
        sources = gather_sources(
            plan,
            request.platforms,
            cache=SdistCache(request.layout.sdists),
            constraints=pins,
            lookup=Upstream.of(matrix.index.upstream_index, request.layout.index_cache).projects,
        )
    durations = Durations(request.layout.durations)
    executor = Executor(
        matrix,
        request.layout,
        images.facts,
        sources.good,
        tagsets=plan.tagsets,
        cancel=cancel,
        durations=durations,
    )
    graph = _graph(request, images, plan, sources, pool=pool, durations=durations)
    deadline = time.monotonic() + options.deadline if options.deadline else None
    exec_options = ExecOptions(options.emulate_when_busy, options.fail_fast, deadline)
    with clock.stage("jobs"):
        ran = executor.run(graph, pool, exec_options, progress)
    jobs = tuple(_with_release_hint(r, plan.pages) for r in ran.records)
    return JobsResult(jobs=jobs, sdist_downloads=sources.downloads, stopped=ran.stopped)


def _accounted(
    request: NightRequest, plan: PlanResult, built: JobsResult, *, cancel: Cancel
) -> JobsResult:
    """The jobs, one record for every build item of the plan: those the jobs stage
    never reached (an earlier stage stopped the night, or a signal) say why."""
    items = build_items(plan.decisions, (p.name for p in request.platforms))
    unreached = None
    if built.stopped is not None:
        unreached = f"not started: the night stopped ({_reason(built.stopped)})"
    elif cancel.event.is_set():
        unreached = "not started: the night was interrupted"
    platforms = {p.name: p for p in request.platforms}
    try:
        jobs = account_for(items, built.jobs, platforms=platforms, unreached=unreached)
    except InternalError as exc:  # what finished is still stored; the CLI raises it
        return replace(built, stopped=built.stopped or exc)
    return replace(built, jobs=jobs)


def _reason(exc: BaseException) -> str:
    return exc.message if isinstance(exc, OrchestrateError) else f"{type(exc).__name__}: {exc}"


def _graph(
    request: NightRequest,
    images: ImagesReport,
    plan: PlanResult,
    sources: Sources,
    *,
    pool: EnginePool,
    durations: Durations,
) -> JobGraph:
    options, matrix = request.options, request.matrix
    settings = JobSettings(
        timeout=options.timeout or float(matrix.builder.job_timeout),
        build_constraints=options.build_constraints,
        keep_failed=options.keep_failed,
        run_id=request.layout.run_id,
        overrides=Overrides.of(matrix),
        compiled=durations.compiled,
    )
    native = frozenset(p.arch for p in request.platforms if pool.candidates(p.arch)[0])
    return job_graph(
        plan.decisions,
        {p.name: p for p in request.platforms},
        images.facts,
        sources.sdists,
        needs=list(sources.needs),
        pool=PoolSnapshot(native),
        expected=durations.expected,
        settings=settings,
    )


def _with_release_hint(record: WheelRecord, pages: Mapping[str, ProjectPage | None]) -> WheelRecord:
    """A release older than the builder's Python: its hint names the oldest release
    of the project that says it fits that Python."""
    if record.category is not Category.PYTHON_VERSION:
        return record
    page = pages.get(record.name)
    newer = oldest_supporting(page, record.python, record.version) if page else None
    return replace(record, hint=python_version_hint(record.python, record.name, newer))


__all__ = [
    "BuildOptions",
    "NightRequest",
    "NightResult",
    "ShardResult",
    "StageClock",
    "run_build",
]
