"""A job's record and its phases as values: what reports, reproduce and the store read.

The record holds everything needed to understand and re-run a job: the
builder image, the sdist it was built from, the exact versions of its build
requirements, the container commands, its status and, when it failed, the
category, first error line and hint.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from packaging.utils import canonicalize_name

from orchestrator.config.matrix import Platform
from orchestrator.core.errors import InternalError
from orchestrator.images.facts import NativeCompiler
from orchestrator.jobs.failures import Failure
from orchestrator.jobs.graph import WheelJob, job_id
from orchestrator.model import Category, JobKind, JobStatus, Mode
from orchestrator.plan.decide import Decision

JOB_SCRIPT = "/usr/local/lib/orchestrate/job.py"
# Wheels store zip timestamps, which cannot predate 1980: a fixed epoch there.
SOURCE_DATE_EPOCH = "315532800"


def compiler_mode(
    *, emulated: bool, engine_machine: str, compiler: NativeCompiler | None, allowed: bool
) -> tuple[Mode, str]:
    """The mode of a job placed on an engine of `engine_machine`, and why not the native
    compiler when it runs emulated without it."""
    if not emulated:
        return Mode.NATIVE, ""
    if not allowed:
        return Mode.EMULATED, "the matrix turns the native compiler off for this project"
    if compiler is None:
        return Mode.EMULATED, "the builder has no native cross compiler"
    if not compiler.usable:
        return Mode.EMULATED, compiler.reason
    if compiler.host != engine_machine:
        return Mode.EMULATED, (
            f"the builder's cross compiler runs on {compiler.host}, the engine is "
            f"{engine_machine or 'of unknown arch'}"
        )
    return Mode.NATIVE_COMPILER, ""


@dataclass(frozen=True)
class Phase:
    """One container of a job, as a value that can be run again anywhere."""

    name: str
    command: tuple[str, ...]
    network: bool
    env: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "command": list(self.command),
            "network": self.network,
            "env": dict(self.env),
        }


@dataclass(frozen=True, kw_only=True)
class WheelRecord:
    """What one job came to, as a value: each phase of a job returns a new record
    from the one before (`failed`, `timed`, `dataclasses.replace`), and the report,
    the store, provenance and `reproduce` read it. Its fields are the report's
    `jobs[]` entries (`report/schema.json`)."""

    job: str
    platform: str
    python: str
    name: str
    version: str
    status: JobStatus
    kind: JobKind = JobKind.WHEEL
    duration: float = 0.0
    engine: str = ""
    engine_kind: str = ""  # docker or podman: which CLI reproduces it
    emulated: bool = False
    wheel: str | None = None
    sha256: str | None = None
    size: int = 0
    log: str = ""
    image: str = ""
    image_ref: str = ""
    image_pull: str = ""  # repo@sha256:... to pull the exact builder anywhere, if pushed
    arch: str = ""
    phases: tuple[Mapping[str, object], ...] = ()
    detail: str = ""
    exit_code: int | None = None
    attempts: int = 1
    category: Category | None = None  # why it failed
    error: str = ""  # the first error line of its log
    hint: str = ""
    sdist: Mapping[str, object] | None = None  # filename, url and sha256 it was built from
    source_sha256: str | None = None  # the sdist's sha256, as verified
    build_requires: tuple[str, ...] = ()  # exact versions in its build env
    build_constraints: tuple[str, ...] = ()
    depends: tuple[str, ...] = ()  # jobs it waited for
    phase_seconds: Mapping[str, float] = field(default_factory=dict)
    # Making its build environment before its slot, while other jobs built (not in
    # `duration`: the wait for it, if any, is in the fetch phase)
    ahead_seconds: float = 0.0
    mode: Mode | None = None  # None: the job never reached an engine
    compiler: str = ""  # with the native compiler, its version; else why not
    # Extra system packages: family, packages, sources, installed (name=version)
    # and the image they were installed into; None for a job that needs none.
    system_packages: Mapping[str, object] | None = None
    branches: tuple[str, ...] = ()  # the branches that want this pin
    # What the wheel needs at run time (runtime.Runtime.as_dict), its smoke test
    # (smoke.SmokeResult.as_dict), and why the plan rebuilt it, when it did.
    runtime: Mapping[str, object] | None = None
    smoke: Mapping[str, object] | None = None
    rebuild: str = ""
    # The native job whose Cython-generated C this emulated build compiled (Cython did
    # not run under emulation), when it did.
    cython_from: str = ""

    def as_dict(self) -> dict[str, object]:
        """The report's `jobs[]` entry: JSON's lists, and `mode` as a string."""
        out: dict[str, object] = {}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            if isinstance(value, tuple):
                value = [dict(v) if isinstance(v, Mapping) else v for v in value]
            elif isinstance(value, Mapping):
                value = dict(value)
            out[key] = value
        out["mode"] = self.mode or ""
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WheelRecord:
        """A record read back from a report already checked against its schema (a
        shard's, in a bundle): its closed sets as enums again, its lists as tuples."""
        known: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v
            for k, v in data.items()
            if k in cls.__dataclass_fields__
        }
        return cls(
            **{
                **known,
                "status": JobStatus(data["status"]),
                "kind": JobKind(data.get("kind") or JobKind.WHEEL),
                "category": Category(data["category"]) if data.get("category") else None,
                "mode": Mode(data["mode"]) if data.get("mode") else None,
            },
        )

    def failed(self, failure: Failure, status: JobStatus = JobStatus.FAILED) -> WheelRecord:
        """This record, ended by `failure`."""
        return replace(
            self,
            status=status,
            category=failure.category,
            error=failure.first_line,
            hint=failure.hint,
            detail=f"{failure.category}: {failure.first_line}",
        )

    def timed(self, phase: str, seconds: float) -> WheelRecord:
        """This record with `seconds` more spent in `phase`."""
        total = round(self.phase_seconds.get(phase, 0.0) + seconds, 2)
        return replace(self, phase_seconds={**self.phase_seconds, phase: total})

    @classmethod
    def for_job(
        cls, job: WheelJob, status: JobStatus, *, native_compiler: bool = False, **fields: Any
    ) -> WheelRecord:
        """A record naming `job`, with its image, sdist and recorded phases."""
        base: dict[str, Any] = {
            "job": job.id,
            "platform": job.platform.name,
            "python": job.python,
            "name": job.name,
            "version": job.version,
            "status": status,
            "kind": job.kind,
            "image": job.image,
            "image_ref": job.image_ref,
            "image_pull": job.image_pull,
            "arch": job.platform.arch.value,
            "phases": tuple(p.as_dict() for p in phases(job, native_compiler=native_compiler)),
            "sdist": job.sdist.as_dict(),
            "build_constraints": tuple(job.build_constraints),
            "branches": tuple(job.branches),
            "rebuild": job.rebuild,
        }
        return cls(**{**base, **fields})


def phases(job: WheelJob, *, native_compiler: bool = False) -> tuple[Phase, Phase]:
    """Fetch and build; with `native_compiler`, the build phase puts the builder's
    native cross compiler first on PATH (job.py checks it, and falls back)."""
    python = f"/opt/orchestrate/py{job.python}/bin/python"
    env = {"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PYTHONHASHSEED": "0"}
    build_env = {**env, **dict(job.extras.env)}
    if native_compiler:
        build_env["ORCHESTRATE_NATIVE_COMPILER"] = "1"
    if job.keeps_generated:  # an emulated job of this sdist compiles its Cython's C
        build_env["ORCHESTRATE_KEEP_GENERATED"] = "1"
    where = {
        # Only for a fetch run by hand (`reproduce --print`): orchestrate puts the
        # verified sdist into /job/src itself.
        "ORCHESTRATE_SDIST_URL": job.sdist.url,
        "ORCHESTRATE_SDIST_SHA256": job.sdist.sha256 or "",
    }
    if job.extras.pip_options:  # the overrides' options for the fetch phase's pip
        where["ORCHESTRATE_PIP_OPTIONS"] = json.dumps(list(job.extras.pip_options))
    return (
        Phase("fetch", (python, JOB_SCRIPT, "fetch"), network=True, env={**env, **where}),
        Phase("build", (python, JOB_SCRIPT, "build"), network=False, env=build_env),
    )


# -- accounting: every build item of the plan, one record --------------------------
# A night's report, summary, JUnit, metrics and exit code are views of its job
# records, so an item without a record would vanish from all of them at once: a
# night cut short would look like a night that had less to do. Before anything is
# reported, each item the plan decided to build on one of the night's platforms has
# one record, whatever it came to (built, shared, failed, blocked, not started).
# Items the jobs stage never reached (an earlier stage failed, or the night was
# cancelled first) get a "not started" record saying why; an item missing after the
# jobs stage ran is our bug, and says so (exit 70).

ItemKey = tuple[str, str, str, str]  # platform, python, project (canonical), version


def item_key(platform: str, python: str, name: str, version: str) -> ItemKey:
    return platform, python, canonicalize_name(name), version


def build_items(decisions: Iterable[Decision], platforms: Iterable[str]) -> list[Decision]:
    """The plan's decisions to build (or rebuild) on the night's platforms."""
    wanted = set(platforms)
    return [d for d in decisions if d.action.builds and d.platform in wanted]


def not_started(decision: Decision, platform: Platform, why: str) -> WheelRecord:
    """The record of a build item no job ever ran for, and why."""
    record = WheelRecord(
        job=job_id(platform, decision.python, decision.name, decision.version),
        platform=decision.platform,
        python=decision.python,
        name=decision.name,
        version=decision.version,
        status=JobStatus.CANCELLED,
        branches=tuple(decision.branches),
    )
    return record.failed(Failure(Category.CANCELLED, why), JobStatus.CANCELLED)


def account_for(
    items: Sequence[Decision],
    records: Sequence[WheelRecord],
    *,
    platforms: Mapping[str, Platform],
    unreached: str | None,
) -> tuple[WheelRecord, ...]:
    """`records`, with a "not started" record for each item that has none when the
    jobs stage did not reach them (`unreached` says why); then the invariant: every
    item has exactly one wheel record. A broken invariant is an InternalError naming
    the items."""
    have = Counter(_key(r) for r in records if r.kind == JobKind.WHEEL)
    added = [
        not_started(d, platforms[d.platform], unreached)
        for d in items
        if unreached and not have[_dkey(d)]
    ]
    out = (*records, *added)
    check_accounted(items, out)
    return out


def check_accounted(items: Sequence[Decision], records: Sequence[WheelRecord]) -> None:
    """Every build item has exactly one wheel record with a status; else exit 70."""
    have = Counter(_key(r) for r in records if r.kind == JobKind.WHEEL)
    missing = [_name(d) for d in items if have[_dkey(d)] == 0]
    twice = [_name(d) for d in items if have[_dkey(d)] > 1]
    if not missing and not twice:
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} with no job record ({_some(missing)})")
    if twice:
        parts.append(f"{len(twice)} with several ({_some(twice)})")
    raise InternalError(f"build items of the plan not accounted for: {'; '.join(parts)}")


def _key(record: WheelRecord) -> ItemKey:
    return item_key(record.platform, record.python, record.name, record.version)


def _dkey(decision: Decision) -> ItemKey:
    return item_key(decision.platform, decision.python, decision.name, decision.version)


def _name(decision: Decision) -> str:
    return f"{decision.platform}/{decision.name}=={decision.version} (python {decision.python})"


def _some(names: Sequence[str], most: int = 10) -> str:
    more = f", and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more
