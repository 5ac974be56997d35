"""`images build` and `images refresh`: build on the pool, push, join manifests."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from orchestrator.config import Matrix
from orchestrator.config.matrix import Platform, expand
from orchestrator.core.errors import EngineError, OrchestrateError, RegistryError
from orchestrator.core.layout import RunLayout
from orchestrator.engines import Engine
from orchestrator.engines.pool import EnginePool
from orchestrator.images.build import ImageResult, build_image, image_tag
from orchestrator.images.facts import ImageFacts, ProbeCache
from orchestrator.images.manifest import ManifestResult, client_for, publish_release, push_platform
from orchestrator.images.registry import ManifestRef, RegistryClient
from orchestrator.model import Arch, ImageStatus
from orchestrator.scheduler import Cancel, Job, JobResult, Placement, Progress, Scheduler, Silent

EXPECTED_NATIVE = 300.0  # seconds; emulated builds are expected to take longer
EXPECTED_EMULATED = 1500.0


@dataclass(frozen=True, kw_only=True)
class ImagesReport:
    """The images stage's value: each platform's builder, the manifest lists pushed,
    and the usable builders' facts for the stages after it."""

    results: tuple[ImageResult, ...] = ()
    releases: tuple[ManifestResult, ...] = ()
    facts: Mapping[str, ImageFacts] = field(default_factory=dict)  # platform -> usable builder

    @property
    def failed(self) -> list[ImageResult]:
        return [r for r in self.results if r.status in ("failed", "cancelled")]


@dataclass(frozen=True, kw_only=True)
class ImagesOptions:
    force: bool = False  # build even when the inputs are unchanged
    push: bool = False  # push per arch and join manifest lists
    allow_partial: bool = False  # publish a manifest list without the arches that failed
    max_age: timedelta | None = None  # rebuild a builder older than this


def run_images(
    matrix: Matrix,
    pool: EnginePool,
    platforms: Sequence[Platform],
    layout: RunLayout,
    *,
    options: ImagesOptions = ImagesOptions(),
    cancel: Cancel | None = None,
    progress: Progress | None = None,
    probes: ProbeCache | None = None,
) -> ImagesReport:
    """Each platform's builder image, fresh or built, on the pool; pushed and joined
    into manifest lists when asked; the usable builders' facts."""
    by_name = {p.name: p for p in platforms}
    pool.require_reachable()
    job_fn = functools.partial(
        _image_job, matrix=matrix, layout=layout, options=options, probes=probes
    )
    jobs = [Job(p.name, p.arch, _expected(p, pool), p) for p in platforms]
    scheduler = Scheduler(
        pool,
        emulate_when_busy=False,
        retries=1,
        progress=progress or Silent(),
        cancel=cancel or Cancel(),
    )
    outcomes = scheduler.run(jobs, job_fn)
    results = _results(outcomes, list(by_name))
    releases: list[ManifestResult] = []
    if options.push:
        refs = {n: o.data.ref for n, o in outcomes.items() if isinstance(o.data, Pushed)}
        releases = _join_all(matrix, by_name, refs, allow_partial=options.allow_partial)
    results = [_with_pull_ref(matrix, by_name[r.platform], r) for r in results]
    return ImagesReport(
        results=tuple(results), releases=tuple(releases), facts=_facts(matrix, by_name, results)
    )


def _image_job(
    job: Job[Platform],
    placement: Placement,
    _cancel: Cancel,
    *,
    matrix: Matrix,
    layout: RunLayout,
    options: ImagesOptions,
    probes: ProbeCache | None,
) -> JobResult:
    log = layout.image_logs / f"{job.id}.log"
    try:
        result = build_image(
            job.payload,
            matrix,
            placement.engine,
            log,
            layout=layout,
            force=options.force,
            max_age=options.max_age,
            probes=probes,
        )
    except EngineError:
        raise  # lost engine: the scheduler retries it
    except OrchestrateError as exc:  # a failed step, pull, push or bootstrap
        return JobResult(ok=False, detail=exc.message, data=_failed(job, placement, log, exc))
    result = replace(result, emulated=placement.emulated)
    detail = f"{result.status} in {result.duration:.0f}s"
    if not options.push:
        return JobResult(ok=True, detail=detail, data=result)
    # Now, while the other slots still build.
    pushed = _push_one(matrix, job.payload, placement.engine, result=result, layout=layout)
    if isinstance(pushed, ImageResult):  # the push failed
        return JobResult(ok=False, detail=pushed.reason, data=pushed)
    return JobResult(ok=True, detail=f"{detail}, pushed", data=pushed)


@dataclass(frozen=True, kw_only=True)
class Pushed:
    """An image job's value when it pushed its builder: the result, with its digest,
    and the registry's reference that the release's manifest list names."""

    result: ImageResult
    ref: ManifestRef


def _results(outcomes: Mapping[str, JobResult], order: list[str]) -> list[ImageResult]:
    results = []
    for name, outcome in outcomes.items():
        data = outcome.data.result if isinstance(outcome.data, Pushed) else outcome.data
        if isinstance(data, ImageResult):
            results.append(data)
        else:
            status = ImageStatus.CANCELLED if outcome.cancelled else ImageStatus.FAILED
            results.append(ImageResult(platform=name, status=status, reason=outcome.detail))
    return sorted(results, key=lambda r: order.index(r.platform))


def _facts(
    matrix: Matrix, by_name: Mapping[str, Platform], results: Sequence[ImageResult]
) -> dict[str, ImageFacts]:
    """What the wheels stage takes from the images stage, per usable builder."""
    facts = {}
    for r in results:
        if r.status not in ("built", "fresh"):
            continue
        facts[r.platform] = ImageFacts(
            platform=r.platform,
            ref=image_tag(matrix, by_name[r.platform]),
            ids={r.engine: r.image_id},
            tags=r.tags,
            glibc=r.glibc,
            pull_ref=r.pull_ref,
            native_compiler=r.native_compiler,
            runtime=r.runtime,
        )
    return facts


def _with_pull_ref(matrix: Matrix, platform: Platform, result: ImageResult) -> ImageResult:
    """A builder pushed in this run is pullable by its digest."""
    if result.status not in ("built", "fresh") or not result.digest:
        return result
    repository = image_tag(matrix, platform).rsplit(":", 1)[0]
    return replace(result, pull_ref=f"{repository}@{result.digest}")


def _expected(platform: Platform, pool: EnginePool) -> float:
    native, _ = pool.candidates(platform.arch)
    return EXPECTED_NATIVE if native else EXPECTED_EMULATED


def _failed(
    job: Job[Platform], placement: Placement, log: Path, exc: OrchestrateError
) -> ImageResult:
    reason = f"{exc.message}; {exc.hint}" if exc.hint else exc.message
    return ImageResult(
        platform=job.id,
        status=ImageStatus.FAILED,
        engine=placement.engine.name,
        emulated=placement.emulated,
        log=str(log),
        reason=reason,
    )


def _writer(out: TextIO) -> Callable[[str], None]:
    return lambda line: print(line, file=out)


def _join_all(
    matrix: Matrix,
    by_name: dict[str, Platform],
    refs_by_platform: Mapping[str, ManifestRef],
    *,
    allow_partial: bool,
) -> list[ManifestResult]:
    """Each release's manifest list, joined from the builders its jobs pushed (a
    release whose jobs pushed nothing is held)."""
    client = client_for(matrix)
    pushed: dict[str, dict[Arch, ManifestRef]] = {p.release_name: {} for p in by_name.values()}
    for name, ref in refs_by_platform.items():
        platform = by_name[name]
        pushed[platform.release_name][platform.arch] = ref
    releases = []
    for release, refs in pushed.items():
        members = [p for p in expand(matrix) if p.release_name == release]
        unselected = [p for p in members if p.name not in by_name]
        kept = _unselected(client, matrix, unselected) if refs else {}
        arches = [p.arch for p in members]
        releases.append(
            publish_release(
                client,
                matrix,
                release,
                arches,
                pushed={**kept, **refs},
                allow_partial=allow_partial,
            )
        )
    return releases


def _unselected(
    client: RegistryClient, matrix: Matrix, platforms: Sequence[Platform]
) -> dict[Arch, ManifestRef]:
    """The registry's builders of a release's arches this run did not select (`-p`):
    kept in its manifest list, not dropped from it."""
    kept = {}
    for platform in platforms:
        try:
            ref = client.manifest(matrix.registry.repository, platform.name)
        except RegistryError:  # unreadable: missing, so the release is held, not shrunk
            continue
        if ref is not None:
            kept[platform.arch] = ref
    return kept


def _push_one(
    matrix: Matrix, platform: Platform, engine: Engine, *, result: ImageResult, layout: RunLayout
) -> Pushed | ImageResult:
    """The builder pushed under its per-arch tag; or the result, failed."""
    client = client_for(matrix)  # one per job: jobs push at once
    with (layout.image_logs / f"{result.platform}.log").open("a") as out:
        try:
            ref = push_platform(
                client, matrix, platform, engine, blobs=layout.blobs, on_line=_writer(out)
            )
        except RegistryError as exc:
            why = f"push failed: {exc.message}"
            return replace(result, status=ImageStatus.FAILED, reason=why)
    return Pushed(result=replace(result, digest=ref.digest), ref=ref)
