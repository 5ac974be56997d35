"""`orchestrate build`: images → plan → wheel jobs on the pool → store → index → report."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.config import Matrix
from orchestrator.engines import Engine
from orchestrator.engines.pool import EnginePool
from orchestrator.images.build import ImageResult, build_image, image_tag
from orchestrator.images.pipeline import ImagesReport, run_images
from orchestrator.matrix import Platform
from orchestrator.paths import cache_dir
from orchestrator.scheduler import Cancel, Job, Outcome, Placement, Scheduler

from .builder import WheelJob, WheelRecord, is_pure, run_job
from .index import PublishResult, publish
from .inputs import make_plan, tagsets_for
from .plan import Action, Decision
from .sdist import looks_pure
from .store import AddResult, Provenance, Store
from .upstream import Upstream

DEFAULT_NATIVE_SECONDS = 60.0
# How much longer an emulated job takes, used only until a package has been
# built in that mode: 6x for QEMU on this project's hosts (the field reports
# 5-20x; C extensions measured 7-10x in benchmarks/).
EMULATION_FACTOR = 6.0


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

    @property
    def failed(self) -> list[WheelRecord]:
        return [j for j in self.jobs if j.status in ("failed", "timeout", "cancelled")]

    @property
    def mismatches(self) -> list[AddResult]:
        return [s for s in self.store if s.outcome == "mismatch"]


@dataclass(frozen=True)
class BuildOptions:
    workdir: Path
    emulate_when_busy: bool = False
    fail_fast: bool = False
    keep_failed: bool = False
    replace: bool = False
    timeout: float | None = None  # per job; default from the matrix
    resolve_latest: bool = False


def _key(name: str, arch: str, emulated: bool) -> str:
    return f"{name}|{arch}|{'emulated' if emulated else 'native'}"


class Builders:
    """The builder image of each platform on each engine, made there on first use.

    `images build` puts a platform's builder on one engine; a job the
    scheduler places on another engine needs it there too. It is built there
    from the same inputs (so the same inputs hash), once, under a lock.
    """

    def __init__(self, matrix: Matrix, logs: Path, known: Mapping[str, ImageResult]) -> None:
        self.matrix = matrix
        self.logs = logs
        self._ids = {(r.engine, p): r.image_id for p, r in known.items()}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def image_for(self, engine: Engine, platform: Platform) -> str:
        key = (engine.name, platform.name)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._ids:
                log = self.logs / "images" / f"{platform.name}@{engine.name}.log"
                self._ids[key] = build_image(platform, self.matrix, engine, log).image_id
            return self._ids[key]


class Durations:
    """How long each package took per arch last time: the scheduler's expectations."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data: dict[str, float] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.data = {}
        self._lock = threading.Lock()

    def expected(self, name: str, arch: str, emulated: bool) -> float:
        """Last time in this mode; else the other mode's, converted; else a default."""
        native = self.data.get(_key(name, arch, False))
        slow = self.data.get(_key(name, arch, True))
        if emulated:
            return (
                slow if slow is not None else (native or DEFAULT_NATIVE_SECONDS) * EMULATION_FACTOR
            )
        if native is not None:
            return native
        return slow / EMULATION_FACTOR if slow is not None else DEFAULT_NATIVE_SECONDS

    def record(self, name: str, arch: str, seconds: float, emulated: bool) -> None:
        with self._lock:
            self.data[_key(name, arch, emulated)] = round(seconds, 1)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=1, sort_keys=True))


def run_build(
    matrix: Matrix,
    pool: EnginePool,
    platforms: Sequence[Platform],
    requirements: Sequence[Path],
    constraints: Sequence[Path],
    options: BuildOptions,
    cancel: Cancel,
    on_event: Callable[..., None],
) -> BuildRun:
    run = BuildRun(
        run_id=datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6],
        started=_now(),
        platforms=[p.name for p in platforms],
    )
    logs = options.workdir / "logs"
    run.images = run_images(matrix, pool, platforms, logs, cancel=cancel, on_event=on_event)
    images = {r.platform: r for r in run.images.results if r.status in ("built", "fresh")}
    run.plan = make_plan(
        matrix, platforms, requirements, constraints, options.resolve_latest
    ).decisions
    if not cancel.event.is_set():
        run.jobs = _run_jobs(matrix, pool, platforms, run, images, options, cancel, on_event)
    _store_and_publish(matrix, run, options)
    run.finished = _now()
    return run


def _run_jobs(
    matrix: Matrix,
    pool: EnginePool,
    platforms: Sequence[Platform],
    run: BuildRun,
    images: Mapping[str, ImageResult],
    options: BuildOptions,
    cancel: Cancel,
    on_event: Callable[..., None],
) -> list[WheelRecord]:
    by_name = {p.name: p for p in platforms}
    logs = options.workdir / "logs"
    tagsets = tagsets_for(platforms)
    durations = Durations(cache_dir() / "durations.json")
    timeout = options.timeout or float(matrix.builder.job_timeout)
    todo = [d for d in run.plan if d.action == Action.BUILD]
    records: dict[str, WheelRecord] = {}
    jobs: list[Job[WheelJob]] = []
    missing_image: list[WheelRecord] = []
    leads: dict[tuple[str, str], str] = {}
    pure = _pure_sdists(matrix, todo)
    for decision in sorted(todo, key=lambda d: _native_first(pool, by_name[d.platform])):
        platform = by_name[decision.platform]
        image = images.get(platform.name)
        wheel_job = WheelJob(
            platform,
            decision.python,
            decision.name,
            decision.version,
            image=image.image_id if image else "",
            image_ref=image_tag(matrix, platform),
            timeout=timeout,
            keep_failed=options.keep_failed,
            run_id=run.run_id,
        )
        if image is None:
            missing_image.append(
                WheelRecord.for_job(
                    wheel_job, "failed", detail="no builder image for this platform"
                )
            )
            continue
        key = (decision.name, decision.version)
        lead = leads.setdefault(key, wheel_job.id) if key in pure else wheel_job.id
        native = bool(pool.candidates(platform.arch)[0])
        jobs.append(
            Job(
                wheel_job.id,
                platform.arch,
                durations.expected(decision.name, platform.arch.value, not native),
                wheel_job,
                depends=() if lead == wheel_job.id else (lead,),
            )
        )
    lock = threading.Lock()
    builders = Builders(matrix, logs, images)

    def job_fn(job: Job[WheelJob], placement: Placement, token: Cancel) -> Outcome:
        shared = _shared_from_lead(job, records, lock)
        if shared is not None:
            return Outcome(ok=True, detail=f"shares {shared.wheel}", data=shared)
        work = replace(
            job.payload, image=builders.image_for(placement.engine, job.payload.platform)
        )
        record = run_job(
            work,
            placement.engine,
            placement.emulated,
            tagsets[(work.platform.name, work.python)],
            options.workdir / "jobs" / run.run_id / job.id.replace("==", "-"),
            logs / run.run_id / f"{job.id.replace('==', '-')}.log",
            token,
        )
        if record.status == "built":
            durations.record(
                work.name, work.platform.arch.value, record.duration, placement.emulated
            )
        with lock:
            records[job.id] = record
        return Outcome(
            ok=record.status == "built",
            detail=record.detail or record.status,
            data=record,
            cancelled=record.status == "cancelled",
        )

    scheduler = Scheduler(
        pool,
        emulate_when_busy=options.emulate_when_busy,
        fail_fast=options.fail_fast,
        cancel=cancel,
        on_event=on_event,
    )
    outcomes = scheduler.run(jobs, job_fn)
    durations.save()
    out = list(missing_image)
    for job in jobs:
        outcome = outcomes[job.id]
        record = outcome.data if isinstance(outcome.data, WheelRecord) else _unrun(job, outcome)
        record.attempts = max(outcome.attempts, 1)
        out.append(record)
    return out


def _pure_sdists(matrix: Matrix, todo: Sequence[Decision]) -> set[tuple[str, str]]:
    """(name, version) of build items whose sdist looks pure Python: built once."""
    upstream = Upstream(matrix.index.upstream, cache_dir() / "index", ttl=matrix.index.cache_ttl)
    found = set()
    for decision in {(d.name, d.version, d.sdist) for d in todo if d.sdist}:
        name, version, sdist = decision
        page = upstream.project(name)
        files = [f for f in (page.files(version) if page else []) if f.filename == sdist]
        if files and looks_pure(files[0].url, sdist, cache_dir() / "sdists"):
            found.add((name, version))
    return found


def _native_first(pool: EnginePool, platform: Platform) -> tuple[int, str]:
    """Leads of shared (pure) builds go to the platform with a native engine."""
    return (0 if pool.candidates(platform.arch)[0] else 1, platform.name)


def _shared_from_lead(
    job: Job[WheelJob], records: dict[str, WheelRecord], lock: threading.Lock
) -> WheelRecord | None:
    """A pure-Python wheel from the lead serves this platform too: no second build."""
    if not job.depends:
        return None
    with lock:
        lead = records.get(job.depends[0])
    if lead is None or lead.status != "built" or not lead.wheel or not is_pure(lead.wheel):
        return None
    return WheelRecord.for_job(
        job.payload,
        "shared",
        wheel=lead.wheel,
        sha256=lead.sha256,
        size=lead.size,
        log=lead.log,
        engine=lead.engine,
        phases=lead.phases,
        detail=f"pure-Python wheel built once by {lead.job}",
    )


def _unrun(job: Job[WheelJob], outcome: Outcome) -> WheelRecord:
    status = "cancelled" if outcome.cancelled else "failed"
    return WheelRecord.for_job(job.payload, status, detail=outcome.detail)


def _store_and_publish(matrix: Matrix, run: BuildRun, options: BuildOptions) -> None:
    store = Store(matrix.index.root)
    built = [j for j in run.jobs if j.status == "built"]
    serves: dict[str, list[str]] = {}  # wheel filename -> the platforms it serves
    for job in run.jobs:
        if job.status in ("built", "shared") and job.wheel:
            serves.setdefault(job.wheel, []).append(job.platform)
    with store.locked() as records:
        for job in built:
            assert job.wheel is not None
            folder = options.workdir / "jobs" / run.run_id / job.job.replace("==", "-")
            platforms = serves[job.wheel]
            ordered = [job.platform, *[p for p in platforms if p != job.platform]]
            run.store.append(
                store.add(
                    records,
                    folder / job.wheel,
                    ordered,
                    Provenance(
                        source_sha256=job.source_sha256,
                        built_at=_now(),
                        image=job.image,
                        job=job.job,
                    ),
                    replace=options.replace,
                )
            )
    for result in publish(store, run.platforms, keep=matrix.index.keep_releases):
        if result.status == "failed":
            run.publish_errors[result.platform] = result.error
        else:
            run.published.append(result)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def emulated_seconds(run: BuildRun) -> float:
    return sum(j.duration for j in run.jobs if j.emulated and j.status != "shared")
