"""One wheel job on one engine: fetch with network, build without, verify, record.

The job directory travels between the two containers as a tar through the
engine API (never a host mount), so the same code works on a remote ssh://
engine. Containers get no Docker socket, no privileges, no host paths and no
registry credentials, and are always removed (unless --keep-failed keeps a
failed one). The record holds everything needed to reproduce the job.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shlex
import tarfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from packaging.utils import parse_wheel_filename

from orchestrator.build.builddeps import BuildDepCache
from orchestrator.build.environment import BUILD_USER, Interpreters
from orchestrator.build.environment import job_tar as job_tar_of
from orchestrator.build.failures import EXIT_NEEDS, Failure, classify, classify_smoke
from orchestrator.build.graph import WheelJob
from orchestrator.build.prepare import (
    EnvImages,
    MadeAhead,
    Prepared,
    PrepareRequest,
    Resolver,
    prepare,
)
from orchestrator.build.records import Phase, WheelRecord, phases
from orchestrator.build.sources import GeneratedC, cython_pin, generated_members
from orchestrator.build.system import system_image
from orchestrator.core.errors import BuildStepFailed, EngineError, RegistryError
from orchestrator.core.redact import RedactingLog, redact
from orchestrator.core.wheelnames import is_pure, safe_wheel_name
from orchestrator.engines import Engine, RunOutcome, RunRequest
from orchestrator.images.base import ensure_base
from orchestrator.images.build import read_runtime
from orchestrator.images.facts import RuntimeFacts
from orchestrator.model import Category, Family, JobKind, JobStatus, Mode
from orchestrator.plan.tags import TagSet
from orchestrator.scheduler import Cancel
from orchestrator.trust.packages import PackageDbs
from orchestrator.trust.runtime import Runtime, analyse, resolve
from orchestrator.trust.smoke import (
    SmokeCheck,
    SmokePlan,
    SmokeResult,
    inline_smoke_command,
    inline_smoke_files,
    inline_verdict,
    smoke_in_image,
    smoke_plan,
    smoke_test,
)

LABEL_JOB = "org.orchestrate.job"
LOG_TAIL = 256 * 1024  # how much of a failed job's log classification reads
MAX_NEEDS_ROUNDS = 3  # fetch-then-build rounds for dynamic build requirements
# How apt and dnf say that a package cannot be installed.
PACKAGE_ERRORS = ("E: ", "No match for argument", "Error: Unable to find a match")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(kw_only=True, frozen=True)
class JobInputs:
    """What the host puts into the fetch container: the verified sdist, the platform's
    cached build-requirement wheels, the build constraints, and what an earlier run
    resolved: this sdist's exact build environment (`pins`), or else the versions
    another sdist with the same static build requirements resolved to tonight
    (`resolved`, used as constraints only)."""

    sdist: Path
    deps: BuildDepCache
    pins_key: str  # where this sdist's resolved build requirements are recorded
    pins: tuple[str, ...] | None = None
    requires_key: str = ""  # where the shared resolution of its static requirements goes
    resolved: tuple[str, ...] | None = None
    generated: GeneratedC | None = None  # the C its native twin's Cython wrote

    def tar(self, job: WheelJob, needs: Sequence[str] = ()) -> bytes:
        known = self.pins or self.resolved
        # With versions known, only their wheels: a cache grows, copies should not.
        wheels = self.deps.wheels_for(known) if known else self.deps.wheels()
        return input_tar(
            self.sdist,
            wheels,
            job.build_constraints,
            self.pins or (),
            needs=needs,
            resolved=self.resolved or (),
        )


def input_tar(
    sdist: Path,
    wheels: Sequence[Path],
    constraints: Sequence[str],
    pins: Sequence[str],
    *,
    needs: Sequence[str] = (),
    resolved: Sequence[str] = (),
) -> bytes:
    """The fetch phase's /job: owned by the build user (uid 1000), who writes there."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for wheel in wheels:
            _add_file(tar, f"job/deps/{wheel.name}", wheel.read_bytes())
        _add_file(tar, f"job/src/{sdist.name}", sdist.read_bytes())
        if constraints:
            _add_file(tar, "job/build-constraints.txt", _lines(constraints))
        if pins:
            _add_file(tar, "job/build-pins.txt", _lines(pins))
        if needs:
            _add_file(tar, "job/build-needs.txt", _lines(needs))
        if resolved:
            _add_file(tar, "job/build-resolved.txt", _lines(resolved))
    return buffer.getvalue()


def _lines(lines: Sequence[str]) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode()


def _add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    names = set(tar.getnames())
    for parent in _parents(name):
        if parent not in names:
            info = tarfile.TarInfo(parent)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, 1000, 1000
            tar.addfile(info)
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.uid, info.gid = len(data), 0o644, 1000, 1000
    tar.addfile(info, io.BytesIO(data))


def _parents(name: str) -> list[str]:
    parts = name.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


@dataclass(kw_only=True, frozen=True)
class JobContext:
    """Where one job runs and writes: engine, mode, accepted tags, paths, cancel."""

    engine: Engine
    emulated: bool
    tags: TagSet
    family: Family
    out_dir: Path
    log_path: Path
    cancel: Cancel
    # Proxies and pip index URLs with their credentials: added to the fetch phase at
    # run time only (never in the recorded phases, the report or an image).
    fetch_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    on_phase: Callable[[str], None] = lambda _phase: None  # for the live progress table
    mode: Mode = Mode.NATIVE  # emulated jobs: with the builder's native compiler or not
    compiler_note: str = ""  # why an emulated job goes without the native compiler
    runtime: RuntimeFacts | None = None  # the builder's runtime facts
    builder_image: str = ""  # the builder's image ID on this engine
    bases: Path  # the run layout's debootstrapped bases (the smoke test's)
    package_dbs: PackageDbs | None = None  # builders' dpkg databases: the fast smoke test
    # The host makes the build environment (None: the fetch phase in the builder does)
    interpreters: Interpreters | None = None
    resolver: Resolver | None = None  # a native builder where pip resolves for this job
    # Its first build environment if one was made before its slot (else None; waits
    # for it when it is being made)
    ahead: Callable[[], MadeAhead | None] = lambda: None
    env_images: EnvImages | None = None  # build environments as images (None: copied in)

    @property
    def native_compiler(self) -> bool:
        return self.mode is Mode.NATIVE_COMPILER


def run_job(job: WheelJob, inputs: JobInputs, ctx: JobContext) -> WheelRecord:
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
    )
    record.source_sha256 = job.sdist.sha256
    record.system_packages = _system_record(job)
    ctx.log_path.parent.mkdir(parents=True, exist_ok=True)
    with ctx.log_path.open("ab") as raw:
        log = RedactingLog(raw)
        _header(log, job, ctx)
        try:
            run = _with_system_packages(job, ctx, log, record)
            inline = None
            if run is not None:
                inline = _run_phases(run, inputs, ctx, log, record=record, started=started)
            # Build dependencies only ever run in the builder: nothing to publish or check.
            if run is not None and record.status == JobStatus.BUILT and job.kind == JobKind.WHEEL:
                _check_runtime(run, ctx, log, record, inline=inline)
        finally:
            record.duration = round(time.monotonic() - started, 2)
            log.write(f"\n== {record.status} after {record.duration}s {record.detail}\n".encode())
            log.close()
    if record.status == JobStatus.FAILED and record.category is None:
        _classify(record, ctx)
    return record


def _check_runtime(
    job: WheelJob,
    ctx: JobContext,
    log: RedactingLog,
    record: WheelRecord,
    *,
    inline: InlineSmoke | None,
) -> None:
    """What the new wheel links against, resolved in the image it was built in, then
    the smoke test: a wheel that does not load there is held back."""
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
        record.fail(Failure(Category.BAD_WHEEL, f"{record.wheel}: not a readable zip ({exc})"))
        return
    runtime = resolve(elf, facts or empty, job.python, ctx.runtime)
    pure = is_pure(record.wheel)
    # A pure wheel links nothing and fits any Python 3: no ABI key to record.
    record.runtime = None if pure else runtime.as_dict()
    log.write(f"\n== runtime: {_runtime_line(runtime)}\n".encode())
    try:
        if job.extras.smoke:
            _smoke(job, ctx, log, record, wheel=wheel, runtime=runtime, inline=inline)
        else:
            log.write(b"== smoke test: off for this project (overrides: smoke: false)\n")
    finally:
        seconds = time.monotonic() - started + (inline.seconds if inline else 0.0)
        record.phase_seconds["smoke"] = round(seconds, 2)
    if record.status == JobStatus.BUILT and not pure:
        packages = ", ".join(f"{k} {v}" for k, v in runtime.packages.items())
        record.detail = f"runtime packages: {packages or 'none beyond the C library'}"


def _smoke(
    job: WheelJob,
    ctx: JobContext,
    log: RedactingLog,
    record: WheelRecord,
    *,
    wheel: Path,
    runtime: Runtime,
    inline: InlineSmoke | None,
) -> None:
    extras = job.extras
    plan = smoke_plan(job.python, runtime, extras.runtime_packages, extras.test_command)

    def line(text: str) -> None:
        _write(log, f"{ANSI.sub('', text)}\n".encode())

    result = _smoke_inline(job, ctx, plan, runtime=runtime, inline=inline, line=line)
    if result is None:
        result = _smoke_in_builder(job, ctx, plan, wheel=wheel, runtime=runtime, line=line)
    if result is not None and not result.passed:  # the bare base decides, as it always did
        log.write(f"== in the builder: {result.error}; again in the bare base\n".encode())
    if result is None or not result.passed:
        result = _smoke_in_base(job, ctx, plan, wheel=wheel, runtime=runtime, line=line)
    if ctx.cancel.event.is_set() and not result.passed:  # killed: not the wheel's fault
        record.fail(Failure(Category.CANCELLED, "stopped during smoke"), JobStatus.CANCELLED)
        return
    record.smoke = result.as_dict()
    said = "passed" if result.passed else f"FAILED: {result.error}"
    log.write(f"== smoke test {said}\n".encode())
    if not result.passed:
        record.fail(classify_smoke(result.error), JobStatus.SMOKE_FAILED)


@dataclass(frozen=True, kw_only=True)
class InlineSmoke:
    """What the build container's own import check said (smoke_check.py --inline)."""

    said: Mapping[str, object]
    seconds: float  # moved from the build phase to the smoke test


def _inline_smoke(job: WheelJob, ctx: JobContext) -> bool:
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
    result.image = job.image
    # Its checks are in the build phase's output above.
    line(f"== smoke test in the build container, loads held to {' '.join(plan.packages)}")
    return result


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


def _system_record(job: WheelJob) -> dict[str, object] | None:
    extras = job.extras
    if not extras.packages:
        return None
    family = job.platform.family.value
    return {
        "family": family,
        "packages": list(extras.packages),
        "sources": list(extras.sources),
        "installed": [],
    }


def _with_system_packages(
    job: WheelJob, ctx: JobContext, log: RedactingLog, record: WheelRecord
) -> WheelJob | None:
    """The job to run: itself, or, when it needs extra system packages, the same job
    in its builder plus those packages (None if they could not be installed)."""
    packages = job.extras.packages
    if not packages:
        return job
    log.write(
        f"\n== system packages ({', '.join(job.extras.sources)}): {' '.join(packages)}\n".encode()
    )
    ctx.on_phase("system")
    started = time.monotonic()
    errors: list[str] = []  # the package manager's own words, for the record

    def line(text: str) -> None:
        text = ANSI.sub("", text)  # the classic builder colours a step's stderr
        _write(log, f"{text}\n".encode())
        if text.startswith(PACKAGE_ERRORS) and len(errors) < 10:
            errors.append(text.strip())

    try:
        image = system_image(
            ctx.engine,
            job.image,
            job.platform.arch,
            job.platform.family.value,
            packages=packages,
            env=ctx.fetch_env,
            on_line=line,
        )
    except BuildStepFailed as exc:
        hint = "check the names for this distro release (overrides or bindep.txt)"
        record.fail(Failure(Category.SYSTEM_PACKAGES, (errors or [exc.message])[0], hint))
        return None
    finally:
        record.phase_seconds["system"] = round(time.monotonic() - started, 2)
    assert record.system_packages is not None
    record.system_packages["image"] = image
    return replace(job, image=image)


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
) -> InlineSmoke | None:
    """Fetch, then build; when the build phase names dynamic build requirements the
    environment lacks (exit 13), fetch them too and build again. What the build
    container's own import check said, if it ran one."""
    needs: tuple[str, ...] = ()
    for _round in range(MAX_NEEDS_ROUNDS):
        out = _fetch_and_build(job, inputs, ctx, log, record=record, started=started, needs=needs)
        if out is None:
            return None  # failed, timed out or cancelled: the record says which
        more = tuple(line for line in _needs(out) if line not in needs)
        if not more:
            _compiler_used(out, record)
            _collect(out, ctx.tags, ctx.out_dir, record)
            if job.keeps_generated and record.status == JobStatus.BUILT:
                _keep_generated(out, ctx.out_dir)
            return _inline_result(out, record)
        needs = (*needs, *more)
        log.write(f"\n== the build asked for {', '.join(more)}: fetching them\n".encode())
    why = f"the build kept asking for more build requirements: {', '.join(needs)}"
    record.fail(Failure(Category.UNRESOLVABLE, why, "see the log"))
    return None


def _inline_result(out_tar: bytes, record: WheelRecord) -> InlineSmoke | None:
    """smoke.json of the build container's check; its seconds leave the build phase."""
    try:
        said = json.loads(read_member(out_tar, "out/smoke.json") or b"null")
    except ValueError:
        return None
    if not isinstance(said, dict):
        return None
    seconds = said.get("seconds")
    seconds = (
        min(float(seconds), record.phase_seconds.get("build", 0.0))
        if isinstance(seconds, int | float) and seconds > 0
        else 0.0
    )
    record.phase_seconds["build"] = round(record.phase_seconds.get("build", 0.0) - seconds, 2)
    return InlineSmoke(said=said, seconds=seconds)


def _fetch_and_build(
    job: WheelJob,
    inputs: JobInputs,
    ctx: JobContext,
    log: RedactingLog,
    *,
    record: WheelRecord,
    started: float,
    needs: tuple[str, ...],
) -> bytes | None:
    """Both phases once (the fetch phase only when the host could not make the
    build environment); the build phase's /job/out as a tar, or None on failure."""
    fetch, build = phases(job, native_compiler=ctx.native_compiler)
    prepared = _prepare(job, inputs, ctx, log, record=record, needs=needs, started=started)
    job_tar = prepared.tar if prepared is not None else inputs.tar(job, needs)
    image = _env_image(job, ctx, prepared, log) if prepared is not None else None
    if prepared is not None and image is None:
        job_tar = joined(prepared.env, job_tar)
    for phase in (fetch, build) if prepared is None else (build,):
        if ctx.cancel.event.is_set():
            record.fail(Failure(Category.CANCELLED, f"before {phase.name}"), JobStatus.CANCELLED)
            return None
        if phase is build:
            job_tar = _with_generated(job_tar, inputs.generated, record, log)
        remaining = job.timeout - (time.monotonic() - started)
        ctx.on_phase(phase.name)
        log.write(
            f"\n== phase {phase.name} ({'network' if phase.network else 'no network'}): "
            f"{shlex.join(phase.command)}\n".encode()
        )
        log.flush()
        outcome, job_tar = _run_phase(
            job, phase, ctx, job_tar, remaining=remaining, log=log, image=image
        )
        record.exit_code = outcome.exit_code
        seconds = record.phase_seconds.get(phase.name, 0.0) + outcome.duration
        record.phase_seconds[phase.name] = round(seconds, 2)
        if not _phase_ok(job, phase, outcome, ctx, record=record):
            return None
        if phase is fetch:
            _after_fetch(job_tar, inputs, record)
            job_tar = without(job_tar, "job/deps/")
    record.exit_code = 0
    return job_tar


def _prepare(
    job: WheelJob,
    inputs: JobInputs,
    ctx: JobContext,
    log: RedactingLog,
    *,
    record: WheelRecord,
    needs: tuple[str, ...],
    started: float,
) -> Prepared | None:
    """The build phase's /job made on the host (`prepare`, or its result made ahead
    of the slot), timed as the fetch phase; None: the fetch phase runs in the
    builder, as before."""
    if ctx.interpreters is None or ctx.cancel.event.is_set():
        return None
    begun = time.monotonic()
    ctx.on_phase("fetch")

    def line(text: str) -> None:
        _write(log, f"{text}\n".encode())

    try:
        ahead = None if needs else ctx.ahead()
        if ahead is not None and ahead.engine == ctx.engine.name:
            for text in ahead.lines:
                line(text)
            line(f"== (made ahead of the job's slot, in {ahead.seconds:.2f} s)")
            record.ahead_seconds, made = ahead.seconds, ahead.made
        else:
            timeout = max(job.timeout - (begun - started), 1)
            request = _request(job, inputs, ctx, needs=needs, timeout=timeout)
            made = prepare(request, line, ctx.cancel.on_cancel)
            _keep_pins(inputs, made)
    finally:
        seconds = record.phase_seconds.get("fetch", 0.0) + time.monotonic() - begun
        record.phase_seconds["fetch"] = round(seconds, 2)
    if made is None:
        return None
    line(f"\n== build environment made on the host ({made.how}): {' '.join(made.installed)}")
    record.build_requires = list(made.installed)
    return made


def _env_image(job: WheelJob, ctx: JobContext, made: Prepared, log: RedactingLog) -> str | None:
    """The builder with this environment in it (`EnvImages`); None: copy it in."""
    if ctx.env_images is None:
        return None
    try:
        image = ctx.env_images.image(
            ctx.engine, job.image, job.platform.arch, made.env, run=job.run_id
        )
    except EngineError as exc:
        _write(log, f"== no environment image ({exc.message}): copied in instead\n".encode())
        return None
    _write(
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


def _compiler_used(out_tar: bytes, record: WheelRecord) -> None:
    """What the build phase says of the native compiler: used (its version), or why
    it fell back to the emulated one."""
    text = read_member(out_tar, "out/compiler.json")
    if record.mode != Mode.NATIVE_COMPILER or text is None:
        return
    said = json.loads(text)
    if said.get("used") is True:
        record.compiler = f"gcc {said.get('gcc', '?')} for {said.get('host', '?')}"
    else:
        record.mode, record.compiler = Mode.EMULATED, str(said.get("reason", ""))


GENERATED = "generated.tar"  # in a native job's folder: the C its Cython wrote


def _keep_generated(out_tar: bytes, out_dir: Path) -> None:
    data = read_member(out_tar, f"out/{GENERATED}")
    if data:
        (out_dir / GENERATED).write_bytes(data)


def _with_generated(
    job_tar: bytes, made: GeneratedC | None, record: WheelRecord, log: RedactingLog
) -> bytes:
    """The build phase's /job with the C its native twin's Cython wrote, when both
    build environments have the same Cython: Cython then finds every module up to
    date and only the compiler runs."""
    if made is None:
        return job_tar
    mine, fetched = cython_pin(record.build_requires), read_member(job_tar, "job/fetch.json")
    if not mine or mine != made.cython or fetched is None:
        why = f"{made.cython or 'no Cython'} there, {mine or 'no Cython'} here"
        _write(log, f"== the C that Cython wrote in {made.origin} is not used ({why})\n".encode())
        return job_tar
    source = str(json.loads(fetched).get("source", "build"))
    if PurePosixPath(source).is_absolute() or ".." in PurePosixPath(source).parts:
        return job_tar  # the job's own fetch.json names its folder: nothing outside /job
    members = generated_members(made.path.read_bytes(), under=f"job/{source}", mtime=time.time())
    if not members:
        return job_tar
    record.cython_from = made.origin
    _write(
        log,
        f"== {len(members)} files of C that {mine} wrote in {made.origin}: compiled here, "
        "Cython does not run under emulation\n".encode(),
    )
    return joined(job_tar, job_tar_of(members))


def _needs(out_tar: bytes) -> list[str]:
    text = read_member(out_tar, "out/needs.txt")
    return [line.strip() for line in (text or b"").decode().splitlines() if line.strip()]


def _run_phase(
    job: WheelJob,
    phase: Phase,
    ctx: JobContext,
    job_tar: bytes,
    *,
    remaining: float,
    log: RedactingLog,
    image: str | None = None,  # the builder with the build environment in it
) -> tuple[RunOutcome, bytes]:
    command = phase.command
    if phase.name == "build" and _inline_smoke(job, ctx):
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
        labels={LABEL_JOB: job.id, "org.orchestrate.run": job.run_id},
        keep=job.keep_failed,
    )
    with ctx.engine.container(request) as box:
        ctx.cancel.on_cancel(box.kill)
        box.put("/", job_tar)
        outcome = box.start_and_wait(max(remaining, 1), lambda chunk: _write(log, chunk))
        if outcome.exit_code not in (0, EXIT_NEEDS):
            return outcome, b""
        return outcome, box.get("/job" if phase.name == "fetch" else "/job/out")


def _phase_ok(
    job: WheelJob, phase: Phase, outcome: RunOutcome, ctx: JobContext, *, record: WheelRecord
) -> bool:
    if outcome.timed_out:
        why = f"killed after the {job.timeout:.0f}s timeout ({phase.name})"
        record.fail(Failure(Category.TIMEOUT, why), JobStatus.TIMEOUT)
        return False
    if ctx.cancel.event.is_set():
        stopped = Failure(Category.CANCELLED, f"stopped during {phase.name}")
        record.fail(stopped, JobStatus.CANCELLED)
        return False
    return outcome.exit_code == 0 or (phase.name == "build" and outcome.exit_code == EXIT_NEEDS)


def _after_fetch(job_tar: bytes, inputs: JobInputs, record: WheelRecord) -> None:
    """Keep new build-requirement wheels and the exact versions the sdist resolved to."""
    inputs.deps.absorb(job_tar)
    fetched = read_member(job_tar, "job/fetch.json")
    if fetched is None:
        return
    said = json.loads(fetched)
    installed = [str(p) for p in said.get("installed", [])]
    record.build_requires = installed
    if record.system_packages is not None:
        record.system_packages["installed"] = [str(p) for p in said.get("system_packages", [])]
    if installed and inputs.pins is None:
        inputs.deps.save_pins(inputs.pins_key, installed)
    if installed and inputs.requires_key and inputs.resolved is None:
        inputs.deps.save_pins(inputs.requires_key, installed)


def _classify(record: WheelRecord, ctx: JobContext) -> None:
    with ctx.log_path.open("rb") as log:
        log.seek(max(0, ctx.log_path.stat().st_size - LOG_TAIL))
        text = log.read().decode(errors="replace")
    record.fail(classify(record.exit_code, text, ctx.family))


def _write(log: RedactingLog, chunk: bytes) -> None:
    log.write(chunk)  # redacted by line in RedactingLog
    log.flush()  # so that `tail -f` of a job's log shows it as it runs


def read_member(tar_bytes: bytes, name: str) -> bytes | None:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        try:
            handle = tar.extractfile(name)
        except KeyError:
            return None
        return handle.read() if handle else None


def joined(*tars: bytes) -> bytes:
    """One tar of the members of each (an engine reads a single archive)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as dst:
        for tar_bytes in tars:
            with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as src:
                for member in src.getmembers():
                    dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    return out.getvalue()


def without(tar_bytes: bytes, prefix: str) -> bytes:
    """The tar with the members under `prefix` left out (the build needs no wheel cache)."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(tar_bytes)) as src,
        tarfile.open(fileobj=out, mode="w") as dst,
    ):
        for member in src.getmembers():
            if member.name.startswith(prefix):
                continue
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    return out.getvalue()


def _collect(out_tar: bytes, tags: TagSet, out_dir: Path, record: WheelRecord) -> None:
    """Take the one wheel out of the tar, checking its name and tags before writing."""
    wheels = extract_wheels(out_tar, out_dir)
    if len(wheels) != 1:
        record.fail(Failure(Category.BAD_WHEEL, f"expected one wheel, got {len(wheels)}"))
        return
    wheel = wheels[0]
    _name, _version, _build, wheel_tags = parse_wheel_filename(wheel.name)
    if not tags.accepts(wheel_tags):
        why = f"{wheel.name}: its tags do not fit {record.platform} python {tags.python}"
        record.fail(Failure(Category.BAD_WHEEL, why))
        return
    data = wheel.read_bytes()
    record.status, record.wheel = JobStatus.BUILT, wheel.name
    record.sha256, record.size = hashlib.sha256(data).hexdigest(), len(data)
    record.detail = "pure Python" if is_pure(wheel.name) else ""


def extract_wheels(tar_bytes: bytes, out_dir: Path) -> list[Path]:
    """Regular `*.whl` members only; each name is validated before a path is made."""
    out_dir.mkdir(parents=True, exist_ok=True)
    found = []
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for member in tar.getmembers():
            base = member.name.rsplit("/", 1)[-1]
            if not member.isfile() or not base.endswith(".whl"):
                continue
            target = out_dir / safe_wheel_name(base)
            source = tar.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
            found.append(target)
    return found
