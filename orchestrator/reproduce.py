"""Re-run one job of a report, exactly: same image, commands, environment and arch."""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from orchestrator.config.matrix import Platform
from orchestrator.core.errors import InputError, RegistryError
from orchestrator.core.layout import RunLayout
from orchestrator.core.quoting import clipped, comment, shell_word, shown
from orchestrator.core.tars import extract_wheels, without
from orchestrator.engines import KIND_TRAITS, Engine, KindTraits, RunRequest
from orchestrator.images.base import ensure_base
from orchestrator.images.sysdeps import install_dockerfile, system_image
from orchestrator.jobs.environment import BUILD_USER
from orchestrator.jobs.phases.inputs import input_tar
from orchestrator.jobs.sources import SdistCache, SdistRef
from orchestrator.model import Arch, EngineKind
from orchestrator.report.data import checked_job
from orchestrator.trust.runtime import analyse, unresolved
from orchestrator.trust.smoke import SmokePlan, smoke_test


@dataclass(kw_only=True, frozen=True)
class JobSpec:
    """What a report records about one job, enough to run it again."""

    job: str
    platform: str
    arch: Arch
    image: str
    image_ref: str
    phases: tuple[Mapping[str, Any], ...]
    status: str
    exit_code: int | None
    sdist: SdistRef | None = None  # the verified sdist the job was built from
    build_requires: tuple[str, ...] = ()  # the exact versions its build environment had
    build_constraints: tuple[str, ...] = ()
    image_pull: str = ""  # repo@sha256:... of the builder, when it was pushed
    family: str = "deb"  # of the extra system packages' package manager
    system_packages: tuple[str, ...] = ()  # installed before the fetch phase
    smoke_packages: tuple[str, ...] = ()  # the smoke test's image packages, if it ran
    test_command: str | None = None
    engine_kind: EngineKind = EngineKind.DOCKER  # whose CLI `--print` writes

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> JobSpec:
        sdist = record.get("sdist")
        family, system = _system(record.get("system_packages"))
        smoke, command = _smoke(record.get("smoke"))
        return cls(
            job=str(record["job"]),
            platform=str(record["platform"]),
            arch=Arch(record["arch"]),
            image=str(record["image"]),
            image_ref=str(record["image_ref"]),
            phases=tuple(record["phases"]),
            status=str(record["status"]),
            exit_code=record.get("exit_code"),
            sdist=SdistRef(str(sdist["filename"]), str(sdist["url"]), sdist.get("sha256"))
            if isinstance(sdist, Mapping)
            else None,
            build_requires=tuple(str(p) for p in record.get("build_requires") or ()),
            build_constraints=tuple(str(c) for c in record.get("build_constraints") or ()),
            image_pull=str(record.get("image_pull") or ""),
            family=family,
            system_packages=system,
            smoke_packages=smoke,
            test_command=command,
            engine_kind=EngineKind(record.get("engine_kind") or EngineKind.DOCKER),
        )

    def inputs(self, sdists: SdistCache) -> bytes:
        """The fetch phase's /job: the sdist checked against its recorded sha256, the
        recorded build constraints, and the recorded versions as pins."""
        if self.sdist is None:
            return b""
        return input_tar(sdists.get(self.sdist), (), self.build_constraints, self.build_requires)


def _system(said: object) -> tuple[str, tuple[str, ...]]:
    if not isinstance(said, Mapping):
        return "deb", ()
    return str(said.get("family", "deb")), tuple(str(p) for p in said.get("packages") or ())


def _smoke(said: object) -> tuple[tuple[str, ...], str | None]:
    if not isinstance(said, Mapping):
        return (), None
    command = said.get("command")
    text = command.get("command") if isinstance(command, Mapping) else None
    return tuple(str(p) for p in said.get("packages") or ()), str(text) if text else None


def run_smoke(
    engine: Engine,
    spec: JobSpec,
    platform: Platform,
    job_tar: bytes,
    *,
    layout: RunLayout,
    on_line: Callable[[str], None],
) -> int:
    """The job's smoke test again, on the wheel the phases just built: the same
    base image and packages. 0 when it passes, 1 when it does not."""
    with tempfile.TemporaryDirectory() as tmp:
        wheels = extract_wheels(without_deps(job_tar), Path(tmp))
        if len(wheels) != 1:
            on_line(f"== smoke test: expected one built wheel, found {len(wheels)}")
            return 1
        elf = analyse(str(wheels[0]))
        runtime = unresolved(elf)
        plan = SmokePlan(spec.smoke_packages, spec.test_command)
        on_line(f"\n== smoke test in {platform.name}'s base with {' '.join(plan.packages)}")
        log = layout.logs / "reproduce-smoke.log"
        base = ensure_base(platform, engine, log, on_line, bases=layout.bases)
        result = smoke_test(
            engine, platform, wheels[0], runtime, base=base, plan=plan, on_line=on_line
        )
    on_line(f"== smoke test {'passed' if result.passed else 'FAILED: ' + result.error}")
    return 0 if result.passed else 1


def without_deps(job_tar: bytes) -> bytes:
    """/job as the build phase left it, without the fetched build requirements' wheels."""
    return without(job_tar, "job/deps/")


def find_job(
    report: Mapping[str, Any], platform: str, requirement: str, *, origin: str = "the report"
) -> JobSpec:
    """The job for PLATFORM and NAME[==VERSION]; a failed one first if several match.
    The job's record is checked against the report schema before anything uses it:
    `origin` (the report's file) is what an error names."""
    try:
        record = _find_job(report, platform, requirement)
        return JobSpec.of(checked_job(record, origin))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(
            f"{origin}: the report's jobs do not have the shape orchestrate writes "
            f"({type(exc).__name__}: {shown(str(exc))})",
            hint="pass a report written by `orchestrate build`",
        ) from None


def _find_job(report: Mapping[str, Any], platform: str, requirement: str) -> Mapping[str, Any]:
    name, _, version = requirement.partition("==")
    matches = [
        j
        for j in report["jobs"]
        if j["platform"] == platform
        and canonicalize_name(j["name"]) == canonicalize_name(name)
        and (not version or j["version"] == version)
        and j.get("phases")
    ]
    if not matches:
        known = sorted({f"{j['platform']} {j['name']}=={j['version']}" for j in report["jobs"]})
        listed = ", ".join(comment(k)[:120] for k in known[:MAX_LISTED]) or "none"
        more = f" and {len(known) - MAX_LISTED} more" if len(known) > MAX_LISTED else ""
        raise InputError(
            f"no job for {clipped(platform)} {clipped(requirement)} in report "
            f"{clipped(str(report['run_id']))}",
            hint=f"jobs in it: {listed}{more}",
        )
    matches.sort(key=lambda j: j["status"] == "built")
    first: Mapping[str, Any] = matches[0]
    return first


MAX_LISTED = 20  # jobs a "no such job" hint names: a night has thousands


def print_script(spec: JobSpec) -> str:
    """The job's two phases as a shell script for the CLI of the job's engine kind
    (docker or podman), with the limits that engine gives every container:
    the fetch with network, then the build with `--network none` as the build user,
    the job folder carried between them, the builder by digest when it was pushed.
    It exits with the build's own status, so it fails the same way the job did.
    Every value from the report is one quoted shell word: a report is a shared file."""
    image = spec.image_pull or spec.image
    lines = [
        "#!/bin/sh",
        f"# {comment(spec.job)}: reproduce both phases "
        f"(was {comment(spec.status)}, exit {comment(spec.exit_code)})",
        f"image={shell_word(image, 'image')}"
        + ("" if spec.image_pull else "  # not pushed: this ID exists on the job's engine only"),
    ]
    if spec.image_pull:  # the same bytes: an image's ID is the digest of the config it names
        local = shell_word(spec.image, "image")
        lines.append(
            f"if {_cli(spec)} image inspect {local} >/dev/null 2>&1; then image={local}; fi"
            "  # here already: not pulled again"
        )
    lines.append("job=$(mktemp -d) && trap 'rm -rf \"$job\"' EXIT")
    if spec.system_packages:
        lines += _system_lines(spec, image)
    for phase in spec.phases:
        lines += _phase_lines(spec, phase)
    lines.append('exit "$rc"')
    return "\n".join(lines) + "\n"


def _system_lines(spec: JobSpec, image: str) -> list[str]:
    """The job's extra system packages installed into the builder first, as the job did.
    The Dockerfile goes in as one quoted word (no here-document for a value to end)."""
    dockerfile = install_dockerfile(image, spec.family, spec.system_packages)
    platform = shell_word(spec.arch.oci_platform, "platform")
    return [
        f"# system packages: {comment(' '.join(spec.system_packages))}",
        f"image=$(printf '%s' {shlex.quote(dockerfile)} | {_cli(spec)} build -q "
        f"--platform {platform} -)"
        " || exit $?",
    ]


def _traits(spec: JobSpec) -> KindTraits:
    return KIND_TRAITS[spec.engine_kind]


def _cli(spec: JobSpec) -> str:
    return _traits(spec).cli


def _phase_lines(spec: JobSpec, phase: Mapping[str, Any]) -> list[str]:
    name, network = str(phase["name"]), bool(phase["network"])
    cli = _cli(spec)
    flags = [
        f"--platform {shell_word(spec.arch.oci_platform, 'platform')}",
        f"--user {BUILD_USER}",
        "--workdir /job",
        *(f"--ulimit {n}={v}:{v}" for n, v in sorted(_traits(spec).ulimits.items())),
    ]
    flags += [] if network else ["--network none"]
    flags += [f"-e {shell_word(f'{k}={v}', 'env')}" for k, v in sorted(dict(phase["env"]).items())]
    command = " ".join(shell_word(str(word), "command") for word in phase["command"])
    if network:  # the recorded constraints and pins, written where the job script reads them
        files = [
            f"printf '%s\\n' {' '.join(shell_word(x, 'pin') for x in lines)} > /job/{target}"
            for target, lines in (
                ("build-constraints.txt", spec.build_constraints),
                ("build-pins.txt", spec.build_requires),
            )
            if lines
        ]
        command = "sh -c " + shlex.quote(" && ".join([*files, f"exec {command}"]))
    take = "/job" if network else "/job/out"
    out = "job.tar" if network else "out.tar"
    lines = [
        f"# phase {comment(name)} ({'network' if network else 'no network'})",
        f'c=$({cli} create {" ".join(flags)} "$image" {command})',
    ]
    if not network:
        lines.append(f'{cli} cp - "$c":/ < "$job/job.tar"')
    lines += [
        f'rc=0; {cli} start -a "$c" || rc=$?',
        f'{cli} cp "$c":{take} - > "$job/{out}" 2>/dev/null; {cli} rm "$c" > /dev/null',
    ]
    if network:
        lines.append('[ "$rc" -eq 0 ] || exit "$rc"')
    return lines


def ensure_image(engine: Engine, spec: JobSpec, on_line: Callable[[str], None]) -> str:
    """The exact builder: by ID if present, else pulled by its tag and checked."""
    if engine.image(spec.image) is not None:
        return spec.image
    on_line(f"builder {spec.image[:19]} is not on this engine; pulling {spec.image_ref}")
    try:
        engine.pull(spec.image_ref, spec.arch, on_line)
    except RegistryError as exc:
        raise RegistryError(
            f"{exc.message}",
            hint="rebuild it from the same inputs: orchestrate images build "
            f"-p {spec.platform}; the result has the same inputs hash",
        ) from None
    pulled = engine.image(spec.image_ref)
    if pulled is None:
        raise RegistryError(f"pulled {spec.image_ref} but the engine does not show it")
    if pulled.id != spec.image:
        on_line(
            f"warning: {spec.image_ref} is now {pulled.id[:19]}, the job ran in "
            f"{spec.image[:19]}; reproducing in the newer image"
        )
    return pulled.id


def run_phases(
    engine: Engine,
    spec: JobSpec,
    image: str,
    on_output: Callable[[bytes], None],
    *,
    sdists: SdistCache,
) -> tuple[int, bytes]:
    """Run the recorded phases in order; returns the first failing exit code (or 0)."""
    job_tar = spec.inputs(sdists)
    if spec.system_packages:
        on_output(f"\n== system packages: {' '.join(spec.system_packages)}\n".encode())
        image = system_image(
            engine,
            image,
            spec.arch,
            spec.family,
            packages=spec.system_packages,
            env={},
            on_line=lambda line: on_output(f"{line}\n".encode()),
        )
    for phase in spec.phases:
        request = RunRequest(
            image=image,
            command=tuple(phase["command"]),
            platform=spec.arch,
            env=dict(phase["env"]),
            network=bool(phase["network"]),
            workdir="/job",
            labels={"org.orchestrate.reproduce": spec.job},
        )
        on_output(f"\n== phase {phase['name']}: {shlex.join(phase['command'])}\n".encode())
        with engine.container(request) as box:
            if job_tar:
                box.put("/", job_tar)
            outcome = box.start_and_wait(None, on_output)
            if outcome.exit_code != 0:
                return outcome.exit_code or 1, job_tar
            job_tar = box.get("/job")
    return 0, job_tar
