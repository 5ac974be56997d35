"""Run a job graph on the engine pool: builders per engine, inputs per job, records out.

The graph is made by `jobs.job_graph` (pure); this module gives each job
what it needs at the moment it is placed: the builder image on that engine,
the verified sdist, the platform's build-dependency wheels and the pins an
earlier run resolved. Failures come back classified; only network and
engine faults are handed to the scheduler as worth retrying.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.utils import canonicalize_name

from orchestrator.config import Matrix
from orchestrator.config.matrix import Platform, expand
from orchestrator.core.layout import RunLayout
from orchestrator.core.wheelnames import is_pure
from orchestrator.engines import Engine
from orchestrator.engines.pool import EnginePool
from orchestrator.images.build import build_image, pull_builder
from orchestrator.images.facts import ImageFacts
from orchestrator.jobs.builddeps import BuildDepCache, pins_key, requires_key
from orchestrator.jobs.durations import Durations
from orchestrator.jobs.environment import Interpreters
from orchestrator.jobs.failures import Failure
from orchestrator.jobs.graph import Blocked, JobGraph, WheelJob
from orchestrator.jobs.phases.build import GENERATED
from orchestrator.jobs.phases.context import JobContext
from orchestrator.jobs.phases.fetch import make_ahead
from orchestrator.jobs.phases.inputs import JobInputs
from orchestrator.jobs.phases.run import run_job
from orchestrator.jobs.prepare import EnvImages, MadeAhead, Resolver
from orchestrator.jobs.records import WheelRecord, compiler_mode
from orchestrator.jobs.sources import GeneratedC, SdistFacts, cython_pin
from orchestrator.model import Category, JobKind, JobStatus, Mode
from orchestrator.plan.decide import TagSets
from orchestrator.scheduler import (
    Cancel,
    Job,
    JobResult,
    Lookahead,
    Placement,
    Progress,
    Scheduler,
    Silent,
)
from orchestrator.trust.packages import PackageDbs

# A resolution of static build requirements that other sdists share is reused for
# this long: a night resolves `setuptools` once, and the next night looks again.
RESOLUTION_MAX_AGE = 20 * 3600.0


class BuilderImages:
    """The builder image of each platform on each engine, made there on first use.

    `images build` puts a platform's builder on one engine; a job the
    scheduler places on another engine needs it there too, once, under a lock:
    pulled when the registry holds it, else built there from the same inputs.
    """

    def __init__(self, matrix: Matrix, layout: RunLayout, facts: Mapping[str, ImageFacts]) -> None:
        self.matrix = matrix
        self.layout = layout
        self._ids = {(e, p): i for p, f in facts.items() for e, i in f.ids.items()}
        self._pushed = {p: f.pull_ref for p, f in facts.items() if f.pull_ref}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def known(self, engine: Engine, platform: Platform) -> str | None:
        """The builder's ID on `engine` if it is there already (nothing is built)."""
        with self._guard:
            return self._ids.get((engine.name, platform.name))

    def image_for(self, engine: Engine, platform: Platform) -> str:
        key = (engine.name, platform.name)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._ids:
                log = self.layout.image_logs / f"{platform.name}@{engine.name}.log"
                pulled = self._pulled(engine, platform, log)
                self._ids[key] = pulled or self._built(engine, platform, log)
            return self._ids[key]

    def _pulled(self, engine: Engine, platform: Platform, log: Path) -> str | None:
        ref = self._pushed.get(platform.name)
        if ref is None:
            return None
        return pull_builder(platform, self.matrix, engine, ref=ref, log_path=log)

    def _built(self, engine: Engine, platform: Platform, log: Path) -> str:
        return build_image(platform, self.matrix, engine, log, layout=self.layout).image_id


@dataclass(frozen=True, kw_only=True)
class JobsRun:
    """What the jobs stage returns: one record for each job of the graph (the blocked
    ones and the ones never started included), and what stopped it, if anything did."""

    records: tuple[WheelRecord, ...] = ()
    stopped: BaseException | None = None


@dataclass(frozen=True)
class ExecOptions:
    emulate_when_busy: bool = False
    fail_fast: bool = False
    deadline: float | None = None  # time.monotonic() after which no job starts


class Executor:
    """Runs one graph and returns a record for each of its jobs (`run`)."""

    def __init__(
        self,
        matrix: Matrix,
        layout: RunLayout,
        facts: Mapping[str, ImageFacts],
        sdists: Mapping[tuple[str, str], SdistFacts],
        *,
        tagsets: TagSets,
        cancel: Cancel,
        durations: Durations,
    ) -> None:
        self.matrix, self.layout, self.tagsets, self.cancel = matrix, layout, tagsets, cancel
        self.sdists, self.facts = sdists, facts
        self.builders = BuilderImages(matrix, layout, facts)
        self.package_dbs = PackageDbs()
        self.interpreters = Interpreters()
        self.env_images = EnvImages()
        self.platforms = expand(matrix)
        self._machines: dict[str, str] = {}  # engine name -> `uname -m` of its host
        self.durations = durations
        # Each finished job's record, by job ID: what its dependants look at while the
        # graph runs. `run` returns the night's records; nothing reads them from here.
        self._finished: dict[str, WheelRecord] = {}
        self.ahead: Lookahead[MadeAhead] | None = None  # while `run` runs
        self._lock = threading.Lock()
        self.progress: Progress = Silent()  # while `run` runs

    def run(
        self,
        graph: JobGraph,
        pool: EnginePool,
        options: ExecOptions,
        progress: Progress,
    ) -> JobsRun:
        """Every job of the graph, with one record each: run, blocked, or never started
        (the deadline, fail-fast, a signal, or an error of the scheduler itself)."""
        self.progress = progress
        scheduler = Scheduler(
            pool,
            emulate_when_busy=options.emulate_when_busy,
            fail_fast=options.fail_fast,
            cancel=self.cancel,
            progress=progress,
            deadline=options.deadline,
        )
        self.ahead = self._lookahead(graph, pool)
        outcomes: Mapping[str, JobResult] = {}
        stopped: BaseException | None = None
        try:
            outcomes = scheduler.run(graph.jobs, self.job_fn)
        except Exception as exc:  # the jobs that finished are kept all the same
            stopped = exc
        finally:
            self.ahead.close()
            self.ahead = None
            self.env_images.close()
        self.durations.save()
        with self._lock:
            finished = dict(self._finished)
        records = [blocked_record(b) for b in graph.blocked]
        records += [_record(job, outcomes.get(job.id), finished, stopped) for job in graph.jobs]
        return JobsRun(records=tuple(records), stopped=stopped)

    def _lookahead(self, graph: JobGraph, pool: EnginePool) -> Lookahead[MadeAhead]:
        """Build environments made ahead, in the scheduler's order (longest first), for
        the jobs that wait for nothing (or only for the native job whose Cython output
        they take: they will build); as many at once as there are slots."""
        slots = sum(e.slots for e in pool.engines)
        free = [j for j in graph.jobs if j.depends in ((), (j.payload.cython_from,))]
        first = sorted(free, key=lambda j: (-j.expected, j.id))
        work = [(j.id, fn) for j in first if (fn := self._ahead_work(j, pool)) is not None]
        return Lookahead(work, workers=slots, limit=2 * slots, cancel=self.cancel)

    def _ahead_work(self, job: Job[WheelJob], pool: EnginePool) -> Callable[[], MadeAhead] | None:
        """The job's environment for the engine the scheduler will most likely give it
        (native first); none when its builder is not on that engine yet."""
        native, emulating = pool.candidates(job.arch)
        engines = native or emulating
        image = self.builders.known(engines[0], job.payload.platform) if engines else None
        if image is None:
            return None
        engine = engines[0]
        work = replace(job.payload, image=image)
        placement = Placement(engine=engine, emulated=not native, reason="ahead of its slot")

        def make() -> MadeAhead:
            return make_ahead(work, self._inputs(work), self._context(work, placement, self.cancel))

        return make

    def job_fn(self, job: Job[WheelJob], placement: Placement, token: Cancel) -> JobResult:
        try:
            return self._job(job, placement, token)
        finally:
            if self.ahead is not None:
                self.ahead.drop(job.id)

    def _job(self, job: Job[WheelJob], placement: Placement, token: Cancel) -> JobResult:
        early = self._from_dependencies(job)
        if early is not None:
            return self._done(job, early)
        work = replace(
            job.payload, image=self.builders.image_for(placement.engine, job.payload.platform)
        )
        inputs = replace(self._inputs(work), generated=self._generated(work))
        record = run_job(work, inputs, self._context(work, placement, token))
        if record.status == JobStatus.BUILT:
            self.durations.record(
                work.name,
                work.platform.arch.value,
                record.duration,
                emulated=placement.emulated,
                # Without Cython under QEMU, its time says little of emulation's cost.
                engine="" if record.cython_from else placement.engine.name,
            )
            if not placement.emulated and record.wheel:
                self.durations.learn_kind(work.name, pure=is_pure(record.wheel))
            if work.kind == JobKind.BUILD_DEP and record.wheel:
                self._deps(work).add_wheel(self.layout.job_dir(work.id) / record.wheel)
        return self._done(job, record)

    def _done(self, job: Job[WheelJob], record: WheelRecord) -> JobResult:
        with self._lock:
            self._finished[job.id] = record
        return JobResult(
            ok=record.status.ok,
            transient=bool(record.category and record.category.retryable),
            detail=record.detail or record.status,
            data=record,
            cancelled=record.status == JobStatus.CANCELLED,
        )

    def _inputs(self, job: WheelJob) -> JobInputs:
        facts = self.sdists[(job.name, job.version)]
        deps = self._deps(job)
        key = pins_key(facts.sha256, job.build_constraints)
        pins = deps.pins(key)
        shared = requires_key(facts.build_requires, job.build_constraints)
        resolved = None if pins else deps.pins(shared, max_age=RESOLUTION_MAX_AGE)
        return JobInputs(
            sdist=facts.path,
            deps=deps,
            pins_key=key,
            pins=tuple(pins) if pins else None,
            requires_key=shared,
            resolved=tuple(resolved) if resolved else None,
        )

    def _generated(self, job: WheelJob) -> GeneratedC | None:
        """What the native job it waited for kept of its Cython's output, if it did."""
        with self._lock:
            origin = self._finished.get(job.cython_from) if job.cython_from else None
        path = self.layout.job_dir(job.cython_from) / GENERATED
        if origin is None or origin.status != JobStatus.BUILT or not path.is_file():
            return None
        return GeneratedC(path=path, origin=origin.job, cython=cython_pin(origin.build_requires))

    def _deps(self, job: WheelJob) -> BuildDepCache:
        return BuildDepCache(self.layout.build_deps(job.platform.name, job.python))

    def _context(self, job: WheelJob, placement: Placement, token: Cancel) -> JobContext:
        mode, note = self._mode(job, placement)
        return JobContext(
            engine=placement.engine,
            emulated=placement.emulated,
            tags=self.tagsets[(job.platform.name, job.python)],
            family=job.platform.family,
            out_dir=self.layout.job_dir(job.id),
            log_path=self.layout.job_log(job.id),
            cancel=token,
            fetch_env=self.matrix.builder.fetch_environment(),
            on_phase=lambda phase: self.progress.phase(job.id, phase),
            mode=mode,
            compiler_note=note,
            runtime=facts.runtime if (facts := self.facts.get(job.platform.name)) else None,
            builder_image=job.image,
            bases=self.layout.bases,
            package_dbs=self.package_dbs,
            interpreters=self.interpreters,
            env_images=self.env_images,
            resolver=self._resolver(job, placement),
            ahead=lambda: self.ahead.take(job.id) if self.ahead is not None else None,
        )

    def _resolver(self, job: WheelJob, placement: Placement) -> Resolver | None:
        """Where pip resolves the job's build requirements: its own builder when it runs
        natively, else a builder of the same release and Python that is native to the
        engine and already there (none: the fetch phase runs emulated, as before)."""
        if not placement.emulated:
            return Resolver(image=job.image, arch=job.platform.arch, foreign=False)
        machine = self._machine(placement.engine)
        for other in self.platforms:
            same = other.release_name == job.platform.release_name and job.python in other.python
            image = self.builders.known(placement.engine, other)
            if same and other.arch.machine == machine and image:
                return Resolver(image=image, arch=other.arch, foreign=True)
        return None

    def _mode(self, job: WheelJob, placement: Placement) -> tuple[Mode, str]:
        builder = self.matrix.builder
        excepted = canonicalize_name(job.name) in builder.native_compiler_except
        allowed = builder.native_compiler and not excepted
        facts = self.facts.get(job.platform.name)
        compiler = facts.native_compiler if facts else None
        return compiler_mode(
            emulated=placement.emulated,
            engine_machine=self._machine(placement.engine),
            compiler=compiler,
            allowed=allowed,
        )

    def _machine(self, engine: Engine) -> str:
        with self._lock:
            known = self._machines.get(engine.name)
        if known is None:
            known = engine.info().machine
            with self._lock:
                self._machines[engine.name] = known
        return known

    def _from_dependencies(self, job: Job[WheelJob]) -> WheelRecord | None:
        """A shared pure wheel from the lead (or a native twin done by now), or a
        failure a build dependency caused."""
        with self._lock:
            deps = [self._finished.get(d) for d in (*job.depends, job.payload.twin) if d]
        for dep in deps:
            if dep is None or dep.kind != JobKind.BUILD_DEP or dep.status.ok:
                continue
            why = f"build dependency {dep.name}=={dep.version} failed ({dep.category})"
            failure = Failure(Category.DEPENDENCY_FAILED, why, f"see {dep.log}")
            return WheelRecord.for_job(job.payload, JobStatus.FAILED).failed(failure)
        lead = next((d for d in deps if d is not None and d.kind == JobKind.WHEEL), None)
        if lead is None or lead.status != JobStatus.BUILT or not lead.wheel:
            return None
        if not is_pure(lead.wheel):
            return None
        return _shared(job.payload, lead)


def _shared(job: WheelJob, lead: WheelRecord) -> WheelRecord:
    return WheelRecord.for_job(
        job,
        JobStatus.SHARED,
        wheel=lead.wheel,
        sha256=lead.sha256,
        size=lead.size,
        log=lead.log,
        engine=lead.engine,
        engine_kind=lead.engine_kind,
        phases=lead.phases,
        source_sha256=lead.source_sha256,
        build_requires=lead.build_requires,
        detail=f"pure-Python wheel built once by {lead.job}",
    )


def blocked_record(blocked: Blocked) -> WheelRecord:
    """A job the graph blocked before it could run: its record says why."""
    return WheelRecord.for_job(blocked.job, JobStatus.FAILED).failed(blocked.failure)


def _record(
    job: Job[WheelJob],
    outcome: JobResult | None,
    finished: Mapping[str, WheelRecord],
    stopped: BaseException | None,
) -> WheelRecord:
    """A graph job's one record: what it returned, or why it has none."""
    if outcome is None:
        outcome = _lost(job, finished, stopped)
    record = outcome.data if isinstance(outcome.data, WheelRecord) else _unrun(job, outcome)
    return replace(record, attempts=max(outcome.attempts, 1), depends=tuple(job.depends))


def _lost(
    job: Job[WheelJob], finished: Mapping[str, WheelRecord], stopped: BaseException | None
) -> JobResult:
    """The outcome of a job the scheduler stopped before it gave one: the record the
    job finished with, if it did; else not started."""
    done = finished.get(job.id)
    if done is not None:
        return JobResult(ok=done.status.ok, data=done)
    why = f"not started: the jobs stage stopped ({type(stopped).__name__}: {stopped})"
    return JobResult(ok=False, cancelled=True, detail=why)


def _unrun(job: Job[WheelJob], outcome: JobResult) -> WheelRecord:
    if outcome.cancelled:
        record = WheelRecord.for_job(job.payload, JobStatus.CANCELLED)
        return record.failed(Failure(Category.CANCELLED, outcome.detail), JobStatus.CANCELLED)
    engine_fault = outcome.transient or outcome.unplaceable
    category = Category.ENGINE if engine_fault else Category.INTERNAL
    return WheelRecord.for_job(job.payload, JobStatus.FAILED).failed(
        Failure(category, outcome.detail)
    )


def emulated_seconds(records: Sequence[WheelRecord]) -> float:
    return sum(emulated_by_arch(records).values())


def emulated_by_arch(records: Sequence[WheelRecord]) -> dict[str, float]:
    """Job time spent under emulation, per arch: where QEMU's cost goes."""
    out: dict[str, float] = {}
    for j in records:
        if j.emulated and j.status != JobStatus.SHARED:
            out[j.arch] = out.get(j.arch, 0.0) + j.duration
    return dict(sorted(out.items()))
