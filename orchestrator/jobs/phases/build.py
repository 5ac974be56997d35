"""The build phase: the build backend in a container with no network; the wheel
collected and checked, the native compiler's report and Cython's C kept. In: the
/job tar and the record so far. Out: /job/out as a tar, and a new record with the
wheel's name, sha256 and size (or failed)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path, PurePosixPath

from packaging.utils import parse_wheel_filename

from orchestrator.core.redact import RedactingLog
from orchestrator.core.tars import extract_wheels, joined, read_member
from orchestrator.core.wheelnames import is_pure
from orchestrator.engines import RunRequest, RunResult
from orchestrator.jobs.environment import BUILD_USER
from orchestrator.jobs.environment import job_tar as job_tar_of
from orchestrator.jobs.failures import EXIT_NEEDS, Failure
from orchestrator.jobs.graph import WheelJob
from orchestrator.jobs.phases.context import JobContext, write
from orchestrator.jobs.phases.verify import InlineSmoke, checks_inline
from orchestrator.jobs.records import Phase, WheelRecord
from orchestrator.jobs.sources import GeneratedC, cython_pin, generated_members
from orchestrator.model import Category, JobStatus, Mode
from orchestrator.plan.tags import TagSet
from orchestrator.trust.smoke import (
    inline_smoke_command,
    inline_smoke_files,
)

LABEL_JOB = "org.orchestrate.job"
LABEL_RUN = "org.orchestrate.run"


GENERATED = "generated.tar"  # in a native job's folder: the C its Cython wrote


def run_phase(
    job: WheelJob,
    phase: Phase,
    ctx: JobContext,
    job_tar: bytes,
    *,
    remaining: float,
    log: RedactingLog,
    image: str | None = None,  # the builder with the build environment in it
) -> tuple[RunResult, bytes]:
    command = phase.command
    if phase.name == "build" and checks_inline(job, ctx):
        command = inline_smoke_command(phase.command, job.python)
        job_tar = joined(job_tar, job_tar_of(inline_smoke_files(job.extras.test_command)))
    request = RunRequest(
        image=image or job.image,
        command=command,
        platform=job.platform.arch,
        env={**phase.env, **(ctx.fetch_env if phase.network else {})},
        network=phase.network,
        user=BUILD_USER,
        workdir="/job",
        labels={LABEL_JOB: job.id, LABEL_RUN: job.run_id},
        keep=job.keep_failed,
    )
    with ctx.engine.container(request) as box:
        ctx.cancel.on_cancel(box.kill)
        box.put("/", job_tar)
        outcome = box.start_and_wait(max(remaining, 1), lambda chunk: write(log, chunk))
        if outcome.exit_code not in (0, EXIT_NEEDS):
            return outcome, b""
        return outcome, box.get("/job" if phase.name == "fetch" else "/job/out")


def phase_ok(
    job: WheelJob, phase: Phase, outcome: RunResult, ctx: JobContext, *, record: WheelRecord
) -> tuple[bool, WheelRecord]:
    """Whether the job goes on after `phase`; the record failed when it was killed
    (a plain non-zero exit is classified from the log at the end)."""
    if outcome.timed_out:
        why = f"killed after the {job.timeout:.0f}s timeout ({phase.name})"
        return False, record.failed(Failure(Category.TIMEOUT, why), JobStatus.TIMEOUT)
    if ctx.cancel.event.is_set():
        stopped = Failure(Category.CANCELLED, f"stopped during {phase.name}")
        return False, record.failed(stopped, JobStatus.CANCELLED)
    ok = outcome.exit_code == 0 or (phase.name == "build" and outcome.exit_code == EXIT_NEEDS)
    return ok, record


def needs_of(out_tar: bytes) -> list[str]:
    text = read_member(out_tar, "out/needs.txt")
    return [line.strip() for line in (text or b"").decode().splitlines() if line.strip()]


def compiler_used(out_tar: bytes, record: WheelRecord) -> WheelRecord:
    """What the build phase says of the native compiler: used (its version), or why
    it fell back to the emulated one."""
    text = read_member(out_tar, "out/compiler.json")
    if record.mode != Mode.NATIVE_COMPILER or text is None:
        return record
    said = json.loads(text)
    if said.get("used") is True:
        return replace(record, compiler=f"gcc {said.get('gcc', '?')} for {said.get('host', '?')}")
    return replace(record, mode=Mode.EMULATED, compiler=str(said.get("reason", "")))


def keep_generated(out_tar: bytes, out_dir: Path) -> None:
    data = read_member(out_tar, f"out/{GENERATED}")
    if data:
        (out_dir / GENERATED).write_bytes(data)


def with_generated(
    job_tar: bytes, made: GeneratedC | None, record: WheelRecord, log: RedactingLog
) -> tuple[bytes, WheelRecord]:
    """The build phase's /job with the C its native twin's Cython wrote, when both
    build environments have the same Cython: Cython then finds every module up to
    date and only the compiler runs. The record says where the C came from."""
    if made is None:
        return job_tar, record
    mine, fetched = cython_pin(record.build_requires), read_member(job_tar, "job/fetch.json")
    if not mine or mine != made.cython or fetched is None:
        why = f"{made.cython or 'no Cython'} there, {mine or 'no Cython'} here"
        write(log, f"== the C that Cython wrote in {made.origin} is not used ({why})\n".encode())
        return job_tar, record
    source = str(json.loads(fetched).get("source", "build"))
    if PurePosixPath(source).is_absolute() or ".." in PurePosixPath(source).parts:
        return job_tar, record  # the job's own fetch.json names its folder: nothing outside
    members = generated_members(made.path.read_bytes(), under=f"job/{source}", mtime=time.time())
    if not members:
        return job_tar, record
    write(
        log,
        f"== {len(members)} files of C that {mine} wrote in {made.origin}: compiled here, "
        "Cython does not run under emulation\n".encode(),
    )
    return joined(job_tar, job_tar_of(members)), replace(record, cython_from=made.origin)


def collect(out_tar: bytes, tags: TagSet, out_dir: Path, record: WheelRecord) -> WheelRecord:
    """Take the one wheel out of the tar, checking its name and tags before writing:
    the record built, with its wheel's name, sha256 and size; or failed."""
    wheels = extract_wheels(out_tar, out_dir)
    if len(wheels) != 1:
        return record.failed(Failure(Category.BAD_WHEEL, f"expected one wheel, got {len(wheels)}"))
    wheel = wheels[0]
    _name, _version, _build, wheel_tags = parse_wheel_filename(wheel.name)
    if not tags.accepts(wheel_tags):
        why = f"{wheel.name}: its tags do not fit {record.platform} python {tags.python}"
        return record.failed(Failure(Category.BAD_WHEEL, why))
    data = wheel.read_bytes()
    return replace(
        record,
        status=JobStatus.BUILT,
        wheel=wheel.name,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        detail="pure Python" if is_pure(wheel.name) else "",
    )


def inline_result(out_tar: bytes, record: WheelRecord) -> tuple[InlineSmoke | None, WheelRecord]:
    """smoke.json of the build container's check; its seconds leave the build phase."""
    try:
        said = json.loads(read_member(out_tar, "out/smoke.json") or b"null")
    except ValueError:
        return None, record
    if not isinstance(said, dict):
        return None, record
    seconds = said.get("seconds")
    seconds = (
        min(float(seconds), record.phase_seconds.get("build", 0.0))
        if isinstance(seconds, int | float) and seconds > 0
        else 0.0
    )
    return InlineSmoke(said=said, seconds=seconds), record.timed("build", -seconds)
