"""The store-and-publish stage: the night's built wheels into the store, then each
platform's index released. Returns what happened; never raises for the store's or the
disk's sake, so the report always says what was kept and what was published."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.config import Matrix
from orchestrator.core.errors import (
    EnvironmentProblem,
    OrchestrateError,
    StoreConflict,
)
from orchestrator.jobs.records import WheelRecord
from orchestrator.model import JobKind, JobStatus, PublishStatus, StoreStatus
from orchestrator.publish.index import PlatformResult, check_root, publish
from orchestrator.publish.provenance import statement
from orchestrator.store import AddResult, Provenance, Store


@dataclass(frozen=True, kw_only=True)
class PublishResult:
    """Each wheel's store outcome, each platform's release, and what failed: a platform's
    publish (by platform), or the store as a whole (`error`, with its exit code)."""

    added: tuple[AddResult, ...] = ()
    published: tuple[PlatformResult, ...] = ()
    errors: Mapping[str, str] = field(default_factory=dict)
    error: OrchestrateError | None = None

    @property
    def mismatches(self) -> list[AddResult]:
        return [a for a in self.added if a.outcome is StoreStatus.MISMATCH]


# Where a built job's wheel file is: its job folder, or its place in a bundle.
WheelOf = Callable[[WheelRecord], Path]


def store_and_publish(
    jobs: Sequence[WheelRecord],
    *,
    matrix: Matrix,
    platforms: Sequence[str],
    wheel_of: WheelOf,
    replace: bool,
) -> PublishResult:
    try:
        check_root(matrix.index.published.root, adopt=False)  # before the store writes there
        store = Store(matrix.index.published.root)
        added = _store(store, jobs, wheel_of=wheel_of, replace=replace)
    except StoreConflict as exc:  # an unusable manifest: nothing is published (exit 4)
        return PublishResult(errors={"(store)": _failed(exc.message)}, error=exc)
    except (OSError, OrchestrateError) as exc:  # e.g. a full disk: the index stays as it was
        message = exc.message if isinstance(exc, OrchestrateError) else str(exc)
        return PublishResult(errors={"(store)": _failed(message)}, error=_disk(matrix, exc))
    try:
        results = publish(store, platforms, keep=matrix.index.published.keep_releases)
    except OrchestrateError as exc:  # an unusable manifest (4), a root not ours (2)
        return PublishResult(added=added, errors={"(publish)": exc.message}, error=exc)
    failed = [r for r in results if r.status is PublishStatus.FAILED]
    on_disk = any(r.environment for r in failed)
    return PublishResult(
        added=added,
        published=tuple(r for r in results if r.status is not PublishStatus.FAILED),
        errors={r.platform: r.error for r in failed},
        error=_disk(matrix, None) if on_disk else None,
    )


def _failed(message: str) -> str:
    return f"adding the built wheels failed: {message}"


def _disk(matrix: Matrix, exc: Exception | None) -> OrchestrateError:
    if isinstance(exc, OrchestrateError):  # e.g. an index root that is a file: exit 2
        return exc
    return EnvironmentProblem(
        f"storing or publishing under {matrix.index.published.root} failed on the disk side "
        "(full, read-only or not permitted); what was published before is still served",
        hint="free space or fix the permissions, then `orchestrate publish`",
    )


def _store(
    store: Store, jobs: Sequence[WheelRecord], *, wheel_of: WheelOf, replace: bool
) -> tuple[AddResult, ...]:
    wheels = [j for j in jobs if j.kind is JobKind.WHEEL]
    serves: dict[str, list[str]] = {}  # wheel filename -> the platforms it serves
    for job in wheels:
        if job.status.ok and job.wheel:
            serves.setdefault(job.wheel, []).append(job.platform)
    built = [j for j in wheels if j.status is JobStatus.BUILT and j.wheel]
    if not built:
        return ()
    added = []
    with store.locked() as records:
        for job in built:
            assert job.wheel is not None
            ordered = [job.platform, *[p for p in serves[job.wheel] if p != job.platform]]
            added.append(
                store.add(
                    records,
                    wheel_of(job),
                    ordered,
                    _provenance(job),
                    replace=replace,
                )
            )
    return tuple(added)


def _provenance(job: WheelRecord) -> Provenance:
    return Provenance(
        source_sha256=job.source_sha256,
        built_at=now(),
        image=job.image,
        job=job.job,
        runtime=dict(job.runtime) if job.runtime is not None else None,
        smoke=dict(job.smoke) if job.smoke is not None else None,
        rebuild=job.rebuild,
        statement=functools.partial(statement, job),
    )


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
