"""Pure: plan decisions, image facts, sdist facts and a pool snapshot → a graph of jobs.

Nothing here runs a container or reads a file; `tests/unit/test_jobs.py`
checks the graph the way cibuildwheel's unit tests check `get_build_steps`.

- One job per (platform, python, requirement) the plan says to build.
- An sdist that looks pure Python is built once: the job on a platform with
  a native engine leads, the other platforms' jobs wait for it and take its
  `py3-none-any` wheel (or build for themselves if the guess was wrong; once
  its last native build gave a platform wheel, they no longer wait).
  An sdist that does not look pure may build one all the same (an optional
  extension that is skipped): when it has few compiled sources, its emulated
  jobs wait for the native one too, while that is expected to end sooner
  than their own build under QEMU, unless its last native build gave a
  platform wheel. Any other emulated job takes the native wheel all the same
  if it is `none-any` and done when the emulated job starts (`WheelJob.twin`).
- An sdist whose build runs Cython (`SdistFacts.portable_cython`): its emulated
  jobs wait for the native job of the same sdist and Python, which keeps the C
  that Cython wrote; they compile that C, and Cython never runs under QEMU
  (krb5: 88 s of arm64 build phase, most of it Cython).
- A static build requirement with no wheel for a platform becomes a
  build-dependency job on that platform; the jobs that need it wait for it.
- Items whose builder image or sdist is missing are blocked, with a category.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from packaging.utils import canonicalize_name

from orchestrator.config.matrix import Platform
from orchestrator.images.facts import ImageFacts
from orchestrator.jobs.builddeps import BuildDepNeed
from orchestrator.jobs.failures import Failure
from orchestrator.jobs.sources import SdistFacts, SdistRef
from orchestrator.model import Action, Arch, Category, JobKind
from orchestrator.plan.decide import Decision
from orchestrator.plan.overrides import JobExtras, Overrides
from orchestrator.scheduler import Job

DEFAULT_GUESS = 60.0  # seconds, native, for an sdist we could not read
# An sdist with this many compiled sources or fewer may skip them (an optional speed-up,
# as in salt and ovs) and build `none-any`; one with more builds a platform wheel, and
# its emulated job waiting for the native one would only start the longest jobs late.
OPTIONAL_SOURCES = 2


@dataclass(kw_only=True, frozen=True)
class WheelJob:
    kind: JobKind
    platform: Platform
    python: str
    name: str
    version: str
    sdist: SdistRef
    image_ref: str  # the builder's tag, for people; the ID is chosen per engine
    timeout: float = 3600
    build_constraints: tuple[str, ...] = ()
    keep_failed: bool = False
    run_id: str = ""
    image: str = ""  # the builder's image ID on the engine the job was placed on
    image_pull: str = ""  # repo@sha256:... of the builder, pullable anywhere (if pushed)
    # What the matrix's overrides and bindep add.
    extras: JobExtras = field(default_factory=JobExtras)
    branches: tuple[str, ...] = ()  # the matrix's branches that want this pin
    rebuild: str = ""  # why the plan builds a cached wheel again
    # The native job of the same sdist, for an emulated job that does not wait for it:
    # if it has built a `none-any` wheel when this one starts, that wheel is shared.
    twin: str = ""
    # The native job whose Cython-generated C this emulated job compiles (it waits for
    # it), and, on that native job, that it keeps the C for it.
    cython_from: str = ""
    keeps_generated: bool = False

    @property
    def id(self) -> str:
        return job_id(self.platform, self.python, self.name, self.version, kind=self.kind)

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


def job_id(
    platform: Platform, python: str, name: str, version: str, *, kind: JobKind = JobKind.WHEEL
) -> str:
    """`platform/name==version` (`build-dep:` before the name for a build dependency);
    a platform with several Pythons builds an item once per Python, and its IDs say
    which (`@py3.12`), or two jobs would share one."""
    prefix = "build-dep:" if kind == JobKind.BUILD_DEP else ""
    which = f"@py{python}" if len(platform.python) > 1 else ""
    return f"{platform.name}/{prefix}{name}=={version}{which}"


@dataclass(frozen=True)
class PoolSnapshot:
    """Which arches some engine runs natively: all placement the graph needs to know."""

    native: frozenset[Arch]


@dataclass(frozen=True)
class Blocked:
    job: WheelJob
    failure: Failure


@dataclass(kw_only=True, frozen=True)
class JobSettings:
    timeout: float
    build_constraints: tuple[str, ...] = ()
    keep_failed: bool = False
    run_id: str = ""
    overrides: Overrides = field(default_factory=Overrides)
    # Its last native build gave a platform wheel (`Durations.compiled`): no use waiting.
    compiled: Callable[[str], bool] = lambda _name: False


@dataclass(frozen=True)
class JobGraph:
    jobs: tuple[Job[WheelJob], ...]
    blocked: tuple[Blocked, ...]

    def by_id(self) -> dict[str, Job[WheelJob]]:
        return {j.id: j for j in self.jobs}


class Expected(Protocol):
    """Durations.expected: a package's expected seconds on an arch, native or
    emulated, from the native seconds guessed from its sdist when never built."""

    def __call__(self, name: str, arch: str, /, *, emulated: bool, guess: float) -> float: ...


SdistResult = SdistFacts | Failure


def _lead(
    job: WheelJob,
    jobs: dict[str, Job[WheelJob]],
    outcome: SdistResult | None,
    *,
    leads: dict[tuple[str, str], str],
    twins: dict[tuple[str, str], str],
    pool: PoolSnapshot,
    expected: Expected,
    known: bool,
) -> tuple[str, WheelJob]:
    """The job whose wheel this one waits for (itself when none), and the job: a pure
    sdist's first job builds for every platform; a compiled one's emulated jobs may
    wait for a native twin. Records the lead or twin in `leads` / `twins`."""
    key = _key(job.name, job.version)
    if isinstance(outcome, SdistFacts) and outcome.pure and not known:
        return leads.setdefault(key, job.id), job
    lead, job = _with_twin(
        job,
        jobs,
        twins.get(key, ""),
        outcome,
        pool=pool,
        expected=expected,
        known=known,
        guess=_guess(outcome),
    )
    if job.platform.arch in pool.native:
        twins.setdefault(key, job.id)
    return lead, job


def job_graph(
    decisions: Sequence[Decision],
    platforms: Mapping[str, Platform],
    images: Mapping[str, ImageFacts],
    sdists: Mapping[tuple[str, str], SdistResult],
    *,
    needs: Sequence[BuildDepNeed],
    pool: PoolSnapshot,
    expected: Expected,
    settings: JobSettings,
) -> JobGraph:
    builds = [d for d in decisions if d.action.builds and d.sdist_url]
    builds.sort(key=lambda d: (platforms[d.platform].arch not in pool.native, d.platform))
    jobs: dict[str, Job[WheelJob]] = {}
    blocked: list[Blocked] = []
    leads: dict[tuple[str, str], str] = {}
    twins: dict[tuple[str, str], str] = {}  # a not-pure-looking sdist's first native job
    for decision in builds:
        outcome = sdists.get(_key(decision.name, decision.version))
        job = _job(JobKind.WHEEL, decision, platforms, images, settings=settings, outcome=outcome)
        problem = _problem(job, images, outcome)
        if problem is not None:
            blocked.append(Blocked(job, problem))
            continue
        guess = _guess(outcome)
        lead, job = _lead(
            job,
            jobs,
            outcome,
            leads=leads,
            twins=twins,
            pool=pool,
            expected=expected,
            known=settings.compiled(job.name),
        )
        jobs[job.id] = _node(job, pool, expected, () if lead == job.id else (lead,), guess=guess)
    _add_build_deps(
        jobs,
        needs,
        platforms,
        images,
        sdists=sdists,
        pool=pool,
        expected=expected,
        settings=settings,
    )
    return JobGraph(tuple(jobs.values()), tuple(blocked))


def _add_build_deps(
    jobs: dict[str, Job[WheelJob]],
    needs: Sequence[BuildDepNeed],
    platforms: Mapping[str, Platform],
    images: Mapping[str, ImageFacts],
    *,
    sdists: Mapping[tuple[str, str], SdistResult],
    pool: PoolSnapshot,
    expected: Expected,
    settings: JobSettings,
) -> None:
    """One job per (platform, build requirement); the jobs that need it depend on it."""
    for need in needs:
        if need.platform not in images:
            continue  # the wheel job itself is blocked for want of a builder
        ref = SdistRef(need.sdist.filename, need.sdist.url, need.sdist.sha256)
        outcome = sdists.get(_key(need.name, need.version))
        platform = platforms[need.platform]
        extras = _extras(settings, platform, need.name, need.version, outcome=outcome)
        dep = WheelJob(
            kind=JobKind.BUILD_DEP,
            platform=platform,
            python=need.python,
            name=need.name,
            version=need.version,
            sdist=ref,
            image_ref=images[need.platform].ref,
            timeout=extras.timeout or settings.timeout,
            build_constraints=_constraints(settings, extras),
            keep_failed=settings.keep_failed,
            run_id=settings.run_id,
            extras=extras,
        )
        guess = _guess(outcome)
        jobs.setdefault(dep.id, _node(dep, pool, expected, (), guess=guess))
        for parent_id in _parents(need, jobs):
            parent = jobs[parent_id]
            if dep.id not in parent.depends:
                jobs[parent_id] = _with_depends(parent, (*parent.depends, dep.id))


def _parents(need: BuildDepNeed, jobs: Mapping[str, Job[WheelJob]]) -> list[str]:
    name, _, version = need.needed_by.partition("==")
    wanted = _key(name, version)
    return [
        j.id
        for j in jobs.values()
        if j.payload.platform.name == need.platform
        and j.payload.python == need.python
        and _key(j.payload.name, j.payload.version) == wanted
    ]


def _with_depends(job: Job[WheelJob], depends: tuple[str, ...]) -> Job[WheelJob]:
    return Job(job.id, job.arch, job.expected, job.payload, depends)


def _job(
    kind: JobKind,
    decision: Decision,
    platforms: Mapping[str, Platform],
    images: Mapping[str, ImageFacts],
    *,
    settings: JobSettings,
    outcome: SdistResult | None,
) -> WheelJob:
    image = images.get(decision.platform)
    assert decision.sdist is not None
    assert decision.sdist_url is not None
    platform = platforms[decision.platform]
    extras = _extras(settings, platform, decision.name, decision.version, outcome=outcome)
    return WheelJob(
        kind=kind,
        platform=platform,
        python=decision.python,
        name=decision.name,
        version=decision.version,
        sdist=SdistRef(decision.sdist, decision.sdist_url, decision.sdist_sha256),
        image_ref=image.ref if image else "",
        timeout=extras.timeout or settings.timeout,
        build_constraints=_constraints(settings, extras),
        keep_failed=settings.keep_failed,
        run_id=settings.run_id,
        image_pull=image.pull_ref if image else "",
        extras=extras,
        branches=decision.branches,
        rebuild=decision.reason if decision.action == Action.REBUILD else "",
    )


def _extras(
    settings: JobSettings,
    platform: Platform,
    name: str,
    version: str,
    *,
    outcome: SdistResult | None,
) -> JobExtras:
    facts = outcome if isinstance(outcome, SdistFacts) else None
    if facts is None:
        return settings.overrides.extras(platform, name, version)
    return settings.overrides.extras(
        platform, name, version, facts.bindep, sdist_problem=facts.bindep_problem
    )


def _constraints(settings: JobSettings, extras: JobExtras) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*settings.build_constraints, *extras.build_constraints)))


def _problem(
    job: WheelJob, images: Mapping[str, ImageFacts], outcome: SdistResult | None
) -> Failure | None:
    if job.platform.name not in images:
        return Failure(Category.NO_BUILDER, "no builder image for this platform")
    if isinstance(outcome, Failure):
        return outcome
    if outcome is None:
        return Failure(Category.SDIST_DOWNLOAD, "the sdist was not fetched")
    if job.extras.problem:
        hint = "fix the file, or set sdist_bindep: false in an overrides entry"
        return Failure(Category.SYSTEM_PACKAGES, job.extras.problem, hint)
    return None


def _node(
    job: WheelJob,
    pool: PoolSnapshot,
    expected: Expected,
    depends: tuple[str, ...],
    *,
    guess: float,
) -> Job[WheelJob]:
    emulated = job.platform.arch not in pool.native
    seconds = expected(job.name, job.platform.arch.value, emulated=emulated, guess=guess)
    return Job(job.id, job.platform.arch, seconds, job, depends)


def _native_twin(
    job: WheelJob,
    twin: Job[WheelJob] | None,
    pool: PoolSnapshot,
    expected: Expected,
    *,
    guess: float,
) -> str:
    """The job an emulated job of a not-obviously-pure sdist waits for: the native job
    of the same sdist, when that is expected to end before its own build would."""
    if twin is None or job.platform.arch in pool.native:
        return job.id
    own = expected(job.name, job.platform.arch.value, emulated=True, guess=guess)
    return twin.id if twin.expected < own else job.id


def _with_twin(
    job: WheelJob,
    jobs: dict[str, Job[WheelJob]],
    twin_id: str,
    outcome: SdistResult | None,
    *,
    pool: PoolSnapshot,
    expected: Expected,
    known: bool,
    guess: float,
) -> tuple[str, WheelJob]:
    """For a sdist that does not look pure: the job it waits for (itself: none), and
    the job naming its native twin, whose `none-any` wheel it takes if done by then,
    or whose Cython output it compiles (the twin then keeps it)."""
    twin = jobs.get(twin_id)
    few = isinstance(outcome, SdistFacts) and outcome.compiled <= OPTIONAL_SOURCES
    lead = _native_twin(job, twin if few and not known else None, pool, expected, guess=guess)
    if twin is not None and job.platform.arch not in pool.native and not known:
        job = replace(job, twin=twin.id)  # no wait, but its wheel if done by then
    if twin is not None and _takes_cython(job, twin, outcome, pool):
        lead, job = twin.id, replace(job, cython_from=twin.id)
        keeper = replace(twin.payload, keeps_generated=True)
        jobs[twin.id] = Job(twin.id, twin.arch, twin.expected, keeper, twin.depends)
    return lead, job


def _takes_cython(
    job: WheelJob, twin: Job[WheelJob], outcome: SdistResult | None, pool: PoolSnapshot
) -> bool:
    """An emulated job that can compile the C its native twin's Cython wrote: same
    sdist, Python and build settings (the Cython versions are compared at run time)."""
    if job.platform.arch in pool.native:
        return False
    if not isinstance(outcome, SdistFacts) or not outcome.portable_cython:
        return False
    other = twin.payload
    return (other.python, other.extras.env, other.build_constraints) == (
        job.python,
        job.extras.env,
        job.build_constraints,
    )


def _guess(outcome: SdistResult | None) -> float:
    return outcome.expected_native if isinstance(outcome, SdistFacts) else DEFAULT_GUESS


def _key(name: str, version: str) -> tuple[str, str]:
    return canonicalize_name(name), version
