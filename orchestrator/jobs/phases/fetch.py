"""The fetch phase: the build environment, made on the host (`prepare`, or made
ahead of the job's slot) or by the fetch container, and what it resolved kept.
In: the job and its inputs. Out: the prepared /job, or None when the fetch
container does it."""

from __future__ import annotations

import json
import time
from dataclasses import replace

from orchestrator.core.errors import EngineError
from orchestrator.core.redact import RedactingLog
from orchestrator.core.tars import read_member
from orchestrator.jobs.graph import WheelJob
from orchestrator.jobs.phases.context import JobContext, write
from orchestrator.jobs.phases.inputs import JobInputs
from orchestrator.jobs.prepare import (
    MadeAhead,
    Prepared,
    PrepareRequest,
    prepare,
)
from orchestrator.jobs.records import WheelRecord


def host_environment(
    job: WheelJob,
    inputs: JobInputs,
    ctx: JobContext,
    log: RedactingLog,
    *,
    record: WheelRecord,
    needs: tuple[str, ...],
    started: float,
) -> tuple[Prepared | None, WheelRecord]:
    """The build phase's /job made on the host (`prepare`, or its result made ahead
    of the slot), timed as the fetch phase; None: the fetch phase runs in the
    builder, as before. With the record: its fetch time and build requirements."""
    if ctx.interpreters is None or ctx.cancel.event.is_set():
        return None, record
    begun = time.monotonic()
    ctx.on_phase("fetch")

    def line(text: str) -> None:
        write(log, f"{text}\n".encode())

    ahead = None if needs else ctx.ahead()
    if ahead is not None and ahead.engine == ctx.engine.name:
        for text in ahead.lines:
            line(text)
        line(f"== (made ahead of the job's slot, in {ahead.seconds:.2f} s)")
        record, made = replace(record, ahead_seconds=ahead.seconds), ahead.made
    else:
        timeout = max(job.timeout - (begun - started), 1)
        request = _request(job, inputs, ctx, needs=needs, timeout=timeout)
        made = prepare(request, line, ctx.cancel.on_cancel)
        _keep_pins(inputs, made)
    record = record.timed("fetch", time.monotonic() - begun)
    if made is None:
        return None, record
    line(f"\n== build environment made on the host ({made.how}): {' '.join(made.installed)}")
    return made, replace(record, build_requires=tuple(made.installed))


def env_image(job: WheelJob, ctx: JobContext, made: Prepared, log: RedactingLog) -> str | None:
    """The builder with this environment in it (`EnvImages`); None: copy it in."""
    if ctx.env_images is None:
        return None
    try:
        image = ctx.env_images.image(
            ctx.engine, job.image, job.platform.arch, made.env, run=job.run_id
        )
    except EngineError as exc:
        write(log, f"== no environment image ({exc.message}): copied in instead\n".encode())
        return None
    write(
        log,
        f"== build environment in image {image} (made for this run)\n".encode(),
    )
    return image


def make_ahead(job: WheelJob, inputs: JobInputs, ctx: JobContext) -> MadeAhead:
    """The job's first build environment, made before it has a slot (`MadeAhead`)."""
    lines: list[str] = []
    begun = time.monotonic()
    made = None
    if ctx.interpreters is not None and not ctx.cancel.event.is_set():
        request = _request(job, inputs, ctx, needs=(), timeout=job.timeout)
        made = prepare(request, lines.append, ctx.cancel.on_cancel)
        _keep_pins(inputs, made)
    seconds = round(time.monotonic() - begun, 2)
    return MadeAhead(made=made, lines=tuple(lines), seconds=seconds, engine=ctx.engine.name)


def _request(
    job: WheelJob, inputs: JobInputs, ctx: JobContext, *, needs: tuple[str, ...], timeout: float
) -> PrepareRequest:
    assert ctx.interpreters is not None  # the callers' condition
    return PrepareRequest(
        job=job,
        sdist=inputs.sdist,
        deps=inputs.deps,
        pins=inputs.pins,
        resolved=inputs.resolved,
        needs=needs,
        tags=ctx.tags,
        engine=ctx.engine,
        resolver=ctx.resolver,
        interpreters=ctx.interpreters,
        env=dict(ctx.fetch_env),
        timeout=timeout,
    )


def _keep_pins(inputs: JobInputs, made: Prepared | None) -> None:
    """What pip resolved, recorded for this sdist and for its static requirements."""
    if made is None:
        return
    if not inputs.pins:
        inputs.deps.save_pins(inputs.pins_key, made.installed)
    if made.resolved_now and inputs.requires_key and inputs.resolved is None:
        inputs.deps.save_pins(inputs.requires_key, made.installed)


def after_fetch(job_tar: bytes, inputs: JobInputs, record: WheelRecord) -> WheelRecord:
    """Keep new build-requirement wheels and the exact versions the sdist resolved
    to; the record with them (and the system packages installed, with versions)."""
    inputs.deps.absorb(job_tar)
    fetched = read_member(job_tar, "job/fetch.json")
    if fetched is None:
        return record
    said = json.loads(fetched)
    installed = [str(p) for p in said.get("installed", [])]
    system = record.system_packages
    if system is not None:
        system = {**system, "installed": [str(p) for p in said.get("system_packages", [])]}
    if installed and inputs.pins is None:
        inputs.deps.save_pins(inputs.pins_key, installed)
    if installed and inputs.requires_key and inputs.resolved is None:
        inputs.deps.save_pins(inputs.requires_key, installed)
    return replace(record, build_requires=tuple(installed), system_packages=system)
