"""One wheel job on one engine: its phases in order (system, fetch, build, verify),
then its record.

The job directory travels between the containers as a tar through the engine API
(never a host mount), so the same code works on a remote ssh:// engine. Containers
get no Docker socket, no privileges, no host paths and no registry credentials, and
are always removed (unless --keep-failed keeps a failed one). The record holds
everything needed to reproduce the job."""

from __future__ import annotations

import shlex
import time
from dataclasses import replace

from orchestrator.core.redact import RedactingLog, redact
from orchestrator.core.tars import joined, without
from orchestrator.jobs.failures import Failure, classify
from orchestrator.jobs.graph import WheelJob
from orchestrator.jobs.phases.build import (
    collect,
    compiler_used,
    inline_result,
    keep_generated,
    needs_of,
    phase_ok,
    run_phase,
    with_generated,
)
from orchestrator.jobs.phases.context import JobContext
from orchestrator.jobs.phases.fetch import after_fetch, env_image, host_environment
from orchestrator.jobs.phases.inputs import JobInputs
from orchestrator.jobs.phases.system import system_record, with_system_packages
from orchestrator.jobs.phases.verify import InlineSmoke, check_runtime
from orchestrator.jobs.records import WheelRecord, phases
from orchestrator.model import Category, JobKind, JobStatus

LOG_TAIL = 256 * 1024  # how much of a failed job's log classification reads


MAX_NEEDS_ROUNDS = 3  # fetch-then-build rounds for dynamic build requirements


def run_job(job: WheelJob, inputs: JobInputs, ctx: JobContext) -> WheelRecord:
    """The job's phases in order, each returning the record it was given with what
    it did; the job's record at the end (failures classified from its log)."""
    started = time.monotonic()
    record = WheelRecord.for_job(
        job,
        JobStatus.FAILED,
        native_compiler=ctx.native_compiler,
        engine=ctx.engine.name,
        engine_kind=ctx.engine.kind.value,
        emulated=ctx.emulated,
        log=str(ctx.log_path),
        mode=ctx.mode,
        compiler=ctx.compiler_note,
        source_sha256=job.sdist.sha256,
        system_packages=system_record(job),
    )
    ctx.log_path.parent.mkdir(parents=True, exist_ok=True)
    with ctx.log_path.open("ab") as raw:
        log = RedactingLog(raw)
        _header(log, job, ctx)
        try:
            run, record = with_system_packages(job, ctx, log, record)
            if run is not None:
                inline, record = _run_phases(run, inputs, ctx, log, record=record, started=started)
                # Build dependencies only ever run in the builder: nothing to publish or check.
                if record.status == JobStatus.BUILT and job.kind == JobKind.WHEEL:
                    record = check_runtime(run, ctx, log, record, inline=inline)
        finally:
            duration = round(time.monotonic() - started, 2)
            log.write(f"\n== {record.status} after {duration}s {record.detail}\n".encode())
            log.close()
    record = replace(record, duration=duration)
    if record.status == JobStatus.FAILED and record.category is None:
        return _classify(record, ctx)
    return record


def _header(log: RedactingLog, job: WheelJob, ctx: JobContext) -> None:
    mode = ctx.mode.value + (f": {ctx.compiler_note}" if ctx.compiler_note else "")
    log.write(
        redact(
            f"== {job.id} on {ctx.engine.name} ({mode}), image {job.image_ref} "
            f"({job.image[:19]})\n== sdist {job.sdist.url} sha256 {job.sdist.sha256}\n"
        ).encode()
    )
    log.flush()


def _run_phases(
    job: WheelJob,
    inputs: JobInputs,
    ctx: JobContext,
    log: RedactingLog,
    *,
    record: WheelRecord,
    started: float,
) -> tuple[InlineSmoke | None, WheelRecord]:
    """Fetch, then build; when the build phase names dynamic build requirements the
    environment lacks (exit 13), fetch them too and build again. What the build
    container's own import check said, if it ran one, and the record."""
    needs: tuple[str, ...] = ()
    for _round in range(MAX_NEEDS_ROUNDS):
        out, record = _fetch_and_build(
            job, inputs, ctx, log, record=record, started=started, needs=needs
        )
        if out is None:
            return None, record  # failed, timed out or cancelled: the record says which
        more = tuple(line for line in needs_of(out) if line not in needs)
        if not more:
            record = collect(out, ctx.tags, ctx.out_dir, compiler_used(out, record))
            if job.keeps_generated and record.status == JobStatus.BUILT:
                keep_generated(out, ctx.out_dir)
            return inline_result(out, record)
        needs = (*needs, *more)
        log.write(f"\n== the build asked for {', '.join(more)}: fetching them\n".encode())
    why = f"the build kept asking for more build requirements: {', '.join(needs)}"
    return None, record.failed(Failure(Category.UNRESOLVABLE, why, "see the log"))


def _fetch_and_build(
    job: WheelJob,
    inputs: JobInputs,
    ctx: JobContext,
    log: RedactingLog,
    *,
    record: WheelRecord,
    started: float,
    needs: tuple[str, ...],
) -> tuple[bytes | None, WheelRecord]:
    """Both phases once (the fetch phase only when the host could not make the
    build environment); the build phase's /job/out as a tar, or None on failure;
    and the record."""
    fetch, build = phases(job, native_compiler=ctx.native_compiler)
    prepared, record = host_environment(
        job, inputs, ctx, log, record=record, needs=needs, started=started
    )
    job_tar = prepared.tar if prepared is not None else inputs.tar(job, needs)
    image = env_image(job, ctx, prepared, log) if prepared is not None else None
    if prepared is not None and image is None:
        job_tar = joined(prepared.env, job_tar)
    for phase in (fetch, build) if prepared is None else (build,):
        if ctx.cancel.event.is_set():
            stopped = Failure(Category.CANCELLED, f"before {phase.name}")
            return None, record.failed(stopped, JobStatus.CANCELLED)
        if phase is build:
            job_tar, record = with_generated(job_tar, inputs.generated, record, log)
        remaining = job.timeout - (time.monotonic() - started)
        ctx.on_phase(phase.name)
        log.write(
            f"\n== phase {phase.name} ({'network' if phase.network else 'no network'}): "
            f"{shlex.join(phase.command)}\n".encode()
        )
        log.flush()
        outcome, job_tar = run_phase(
            job, phase, ctx, job_tar, remaining=remaining, log=log, image=image
        )
        record = replace(record, exit_code=outcome.exit_code).timed(phase.name, outcome.duration)
        ok, record = phase_ok(job, phase, outcome, ctx, record=record)
        if not ok:
            return None, record
        if phase is fetch:
            record = after_fetch(job_tar, inputs, record)
            job_tar = without(job_tar, "job/deps/")
    return job_tar, replace(record, exit_code=0)


def _classify(record: WheelRecord, ctx: JobContext) -> WheelRecord:
    with ctx.log_path.open("rb") as log:
        log.seek(max(0, ctx.log_path.stat().st_size - LOG_TAIL))
        text = log.read().decode(errors="replace")
    return record.failed(classify(record.exit_code, text, ctx.family))
