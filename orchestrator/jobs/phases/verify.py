"""Verification after the build: the libraries the wheel loads (ELF analysis,
resolved in its image) and the smoke test, inline in the build container when it
can settle it, else in the builder, else in the bare base, which decides.
In: the built wheel and its record. Out: a new record with its runtime and smoke
verdict."""

from __future__ import annotations

import tarfile
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from orchestrator.core.errors import BuildStepFailed, EngineError, RegistryError
from orchestrator.core.redact import RedactingLog
from orchestrator.core.wheelnames import is_pure
from orchestrator.images.base import ensure_base
from orchestrator.images.build import read_runtime
from orchestrator.images.facts import RuntimeFacts
from orchestrator.jobs.failures import Failure, classify_smoke
from orchestrator.jobs.graph import WheelJob
from orchestrator.jobs.phases.context import ANSI, JobContext, write
from orchestrator.jobs.records import WheelRecord
from orchestrator.model import Category, Family, JobKind, JobStatus
from orchestrator.trust.runtime import Runtime, analyse, resolve
from orchestrator.trust.smoke import (
    SmokeCheck,
    SmokePlan,
    SmokeResult,
    inline_verdict,
    smoke_in_image,
    smoke_plan,
    smoke_test,
)


@dataclass(frozen=True, kw_only=True)
class InlineSmoke:
    """What the build container's own import check said (smoke_check.py --inline)."""

    said: Mapping[str, object]
    seconds: float  # moved from the build phase to the smoke test


def checks_inline(job: WheelJob, ctx: JobContext) -> bool:
    """Whether the build container checks the wheel itself once it is built (with its
    test command): where the smoke test would run in the builder with its libraries
    held to its packages."""
    extras = job.extras
    return (
        job.kind == JobKind.WHEEL
        and extras.smoke
        and job.platform.family is Family.DEB
        and ctx.package_dbs is not None
        and job.image == ctx.builder_image
    )


def check_runtime(
    job: WheelJob,
    ctx: JobContext,
    log: RedactingLog,
    record: WheelRecord,
    *,
    inline: InlineSmoke | None,
) -> WheelRecord:
    """What the new wheel links against, resolved in the image it was built in, then
    the smoke test: a wheel that does not load there is held back. The record with
    its runtime, smoke verdict and time."""
    assert record.wheel is not None
    wheel = ctx.out_dir / record.wheel
    started = time.monotonic()
    ctx.on_phase("smoke")
    facts = ctx.runtime
    if job.image != ctx.builder_image:  # a system step's image: its own runtime facts
        facts = read_runtime(ctx.engine, job.image, job.platform.arch)
    empty = RuntimeFacts(job.platform.family.value, {}, {}, {})
    try:
        elf = analyse(str(wheel))
    except (zipfile.BadZipFile, OSError) as exc:
        why = f"{record.wheel}: not a readable zip ({exc})"
        return record.failed(Failure(Category.BAD_WHEEL, why))
    runtime = resolve(elf, facts or empty, job.python, ctx.runtime)
    pure = is_pure(record.wheel)
    # A pure wheel links nothing and fits any Python 3: no ABI key to record.
    record = replace(record, runtime=None if pure else runtime.as_dict())
    log.write(f"\n== runtime: {_runtime_line(runtime)}\n".encode())
    if job.extras.smoke:
        record = _smoke(job, ctx, log, record, wheel=wheel, runtime=runtime, inline=inline)
    else:
        log.write(b"== smoke test: off for this project (overrides: smoke: false)\n")
    record = record.timed("smoke", time.monotonic() - started + (inline.seconds if inline else 0))
    if record.status == JobStatus.BUILT and not pure:
        packages = ", ".join(f"{k} {v}" for k, v in runtime.packages.items())
        detail = f"runtime packages: {packages or 'none beyond the C library'}"
        record = replace(record, detail=detail)
    return record


def _smoke(
    job: WheelJob,
    ctx: JobContext,
    log: RedactingLog,
    record: WheelRecord,
    *,
    wheel: Path,
    runtime: Runtime,
    inline: InlineSmoke | None,
) -> WheelRecord:
    extras = job.extras
    plan = smoke_plan(job.python, runtime, extras.runtime_packages, extras.test_command)

    def line(text: str) -> None:
        write(log, f"{ANSI.sub('', text)}\n".encode())

    result = _smoke_inline(job, ctx, plan, runtime=runtime, inline=inline, line=line)
    if result is None:
        result = _smoke_in_builder(job, ctx, plan, wheel=wheel, runtime=runtime, line=line)
    if result is not None and not result.passed:  # the bare base decides, as it always did
        log.write(f"== in the builder: {result.error}; again in the bare base\n".encode())
    if result is None or not result.passed:
        result = _smoke_in_base(job, ctx, plan, wheel=wheel, runtime=runtime, line=line)
    if ctx.cancel.event.is_set() and not result.passed:  # killed: not the wheel's fault
        stopped = Failure(Category.CANCELLED, "stopped during smoke")
        return record.failed(stopped, JobStatus.CANCELLED)
    record = replace(record, smoke=result.as_dict())
    said = "passed" if result.passed else f"FAILED: {result.error}"
    log.write(f"== smoke test {said}\n".encode())
    if not result.passed:
        return record.failed(classify_smoke(result.error), JobStatus.SMOKE_FAILED)
    return record


def _smoke_inline(
    job: WheelJob,
    ctx: JobContext,
    plan: SmokePlan,
    *,
    runtime: Runtime,
    inline: InlineSmoke | None,
    line: Callable[[str], None],
) -> SmokeResult | None:
    """The build container's check, held to the runtime packages' libraries now that
    they are known; None: a container of its own decides (see `inline_verdict`)."""
    if inline is None or ctx.package_dbs is None:
        return None
    try:
        db = ctx.package_dbs.get(ctx.engine, job.image, job.platform.arch)
    except (EngineError, StopIteration, tarfile.TarError):
        return None
    result = inline_verdict(inline.said, runtime, plan, db.allowed_libraries(plan.packages))
    if result is None:
        line("== the build container's own import check did not settle it: checked again")
        return None
    # Its checks are in the build phase's output above.
    line(f"== smoke test in the build container, loads held to {' '.join(plan.packages)}")
    return replace(result, image=job.image)


def _smoke_in_builder(
    job: WheelJob,
    ctx: JobContext,
    plan: SmokePlan,
    *,
    wheel: Path,
    runtime: Runtime,
    line: Callable[[str], None],
) -> SmokeResult | None:
    """The import check in the job's own image, with the libraries it loads held to
    its runtime packages (Debian family: dpkg says who owns what). None when that
    cannot be asked; a failure here is checked again in the bare base, which decides."""
    if job.platform.family is not Family.DEB or ctx.package_dbs is None:
        return None
    try:
        db = ctx.package_dbs.get(ctx.engine, job.image, job.platform.arch)
    except (EngineError, StopIteration, tarfile.TarError) as exc:  # a real engine fault recurs
        line(f"== no package database in the builder ({exc}): the bare base only")
        return None
    check = SmokeCheck(
        image=job.image, python=job.python, allowed=tuple(db.allowed_libraries(plan.packages))
    )
    line(f"== smoke test in the builder, loads held to {' '.join(plan.packages)}")
    return smoke_in_image(
        ctx.engine,
        job.platform,
        wheel,
        runtime,
        check=check,
        plan=plan,
        on_line=line,
        on_start=ctx.cancel.on_cancel,
    )


def _smoke_in_base(
    job: WheelJob,
    ctx: JobContext,
    plan: SmokePlan,
    *,
    wheel: Path,
    runtime: Runtime,
    line: Callable[[str], None],
) -> SmokeResult:
    line(f"== smoke test in {job.platform.name}'s base with {' '.join(plan.packages)}")
    try:
        base = ensure_base(job.platform, ctx.engine, ctx.log_path, line, bases=ctx.bases)
        return smoke_test(
            ctx.engine,
            job.platform,
            wheel,
            runtime,
            base=base,
            plan=replace(plan, env=ctx.fetch_env),
            on_line=line,
            on_start=ctx.cancel.on_cancel,
        )
    except (BuildStepFailed, RegistryError) as exc:  # an engine fault propagates: retried
        return SmokeResult(passed=False, error=f"the smoke image could not be made: {exc.message}")


def _runtime_line(runtime: Runtime) -> str:
    libs = [f"{lib['soname']} ({lib['package']} {lib['version']})" for lib in runtime.libraries]
    missing = [f"{soname} (no package)" for soname in runtime.unresolved]
    needs = ", ".join(libs + missing) or "no shared library"
    return f"{needs}; glibc {runtime.glibc or '-'}; python {runtime.python or '?'}"
