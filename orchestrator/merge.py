"""`orchestrate merge`: the shards' bundles into the store, and one publish.

Every bundle is verified before any of it is used (`bundle.open_bundle`), then
checked against the night's plan: the plan given with `--plan`, else the newest
plan the bundles carry. A bundle of another plan is refused, naming what differs;
one from an older night only with `--allow-stale`. The bundles' wheels then go
into the store under the rules a local build follows (identical bytes are one file
for every platform they serve; other bytes under a taken name are a mismatch,
exit 4; a rebuild gets the next build tag), and each platform is published
atomically under the publish lock. A shard the plan wanted and no bundle brought
is named in the report; its platforms' indexes stay as they were (exit 1).

Merging is idempotent: a bundle merged again adds identical bytes, so no record
and no published release changes.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from orchestrator.bundle import Bundle, open_bundle
from orchestrator.config import Matrix
from orchestrator.config.matrix import expand
from orchestrator.core.errors import BadBundle, InputError
from orchestrator.core.layout import RunLayout
from orchestrator.core.quoting import shown
from orchestrator.images.build import ImageResult
from orchestrator.images.pipeline import ImagesReport
from orchestrator.jobs.records import WheelRecord
from orchestrator.model import ShardStatus
from orchestrator.plan.overrides import Overrides
from orchestrator.plan.planfile import PlanFile, differences, joined
from orchestrator.publish.admission import Night, Shipped, admit, check_shared, settle
from orchestrator.publish.release import now, store_and_publish
from orchestrator.run import NightResult, ShardResult, StageClock


@dataclass(frozen=True, kw_only=True)
class MergeOptions:
    allow_stale: bool = False  # merge bundles of an older night's plan too
    replace: bool = False  # a wheel whose bytes differ replaces the stored one
    prefer: Path | None = None  # the bundle whose bytes win a pure wheel two bundles differ on


@dataclass(frozen=True, kw_only=True)
class MergeRequest:
    matrix: Matrix
    bundles: tuple[Path, ...]
    layout: RunLayout
    plan: PlanFile | None = None  # the night's plan; default: the newest the bundles carry
    options: MergeOptions = MergeOptions()


def merge_night(request: MergeRequest) -> NightResult:
    """The merged night as one outcome, as a local build's: the same report follows."""
    started, clock = now(), StageClock()
    with clock.stage("verify"):
        bundles = _unique([open_bundle(p, matrix=request.matrix) for p in request.bundles])
        night = _night_plan(bundles, request.plan)
        plan = night.plan
        check_plan_of(plan, request.matrix, what="the night's plan")
        stale = _check_plans(bundles, night, allow_stale=request.options.allow_stale)
        admitted = _admit(bundles, request.matrix, prefer=request.options.prefer)
    shards = shard_results(plan, bundles, stale)
    # A platform is left as it was only when no shard of it came (a split shard's
    # parts share their platforms: what one part brought is published).
    came = {p for s in shards if s.status is not ShardStatus.MISSING for p in s.platforms}
    gone = {p for s in shards for p in s.platforms} - came
    platforms = [p for p in plan.platforms if p not in gone]
    jobs, owner = _jobs(admitted, request.layout)
    with clock.stage("publish"):
        published = store_and_publish(
            jobs,
            matrix=request.matrix,
            platforms=platforms,
            wheel_of=lambda job: owner[id(job)].wheel(job),
            replace=request.options.replace,
        )
    images = [ImageResult.from_dict(i) for b in bundles for i in b.report["images"]]
    return NightResult(
        run_id=request.layout.run_id,
        started=started,
        finished=now(),
        platforms=tuple(platforms),
        images=ImagesReport(results=tuple(images)),
        plan=plan.decisions,
        jobs=tuple(jobs),
        publish=published,
        stages=dict(clock.seconds),
        shards=shards,
        sdist_downloads=sum(b.report["summary"].get("sdist_downloads", 0) for b in bundles),
    )


def check_plan_of(plan: PlanFile, matrix: Matrix, *, what: str) -> None:
    """A plan of this matrix, naming only its platforms: a plan file is input too."""
    if plan.matrix != matrix.digest:
        raise InputError(
            f"{what} was made from another matrix (sha256 {plan.matrix[:12]}; "
            f"{matrix.source.name} is {matrix.digest[:12]})",
            hint="merge with the matrix and plan file the night used",
        )
    known = {p.name for p in expand(matrix)}
    strangers = [p for p in plan.platforms if p not in known]
    if strangers:
        raise InputError(
            f"{what} names platforms the matrix does not have: {', '.join(map(shown, strangers))}"
        )


def _admit(
    bundles: Sequence[Bundle], matrix: Matrix, *, prefer: Path | None
) -> list[tuple[Bundle, Shipped]]:
    """Every bundle's records held to its plan and the matrix (`publish.admission`),
    with the pure wheels' bytes agreed on: each bundle with the records to merge."""
    if prefer is not None and all(b.path.resolve() != prefer.resolve() for b in bundles):
        raise InputError(f"--prefer {shown(str(prefer))} is none of the bundles given")
    platforms = {p.name: p for p in expand(matrix)}
    overrides = Overrides.of(matrix)
    shipped = [_shipped(b) for b in bundles]
    for bundle, one in zip(bundles, shipped, strict=True):
        check_plan_of(bundle.plan, matrix, what=f"{bundle.path}: its plan")
        _check_shard_platforms(bundle)
        night = Night(decisions=bundle.plan.decisions, platforms=platforms, overrides=overrides)
        admit(one, night)
    settled = settle(shipped, prefer=prefer)
    check_shared(settled)
    return list(zip(bundles, settled, strict=True))


def _check_shard_platforms(bundle: Bundle) -> None:
    """A bundle brings its own shard's platforms only: one claiming another shard's
    platform could otherwise publish a wheel for it before the honest shard's."""
    for shard in bundle.plan.shards:
        if shard.name == bundle.shard:
            others = sorted(set(bundle.platforms) - set(shard.platforms))
            if others:
                raise BadBundle(
                    f"{bundle.path}: shard {shown(bundle.shard)} claims "
                    f"{', '.join(map(shown, others))}, which its plan gives to other "
                    "shards; nothing was merged",
                    hint="take the bundle from its CI run again, or rebuild that shard",
                )


def _shipped(bundle: Bundle) -> Shipped:
    images = {str(i.get("platform")): i for i in bundle.report["images"] if isinstance(i, dict)}
    parts = [s for s in bundle.plan.shards if s.name == bundle.shard and s.part]
    return Shipped(
        where=bundle.path,
        platforms=bundle.platforms,
        jobs=bundle.jobs,
        images=images,
        wheel=bundle.wheel,
        provenance=bundle.provenance,
        items=frozenset(parts[0].items) if parts else frozenset(),
    )


def _unique(bundles: Sequence[Bundle]) -> list[Bundle]:
    """The same bundle given twice (the same manifest bytes) counts once."""
    seen: dict[str, Bundle] = {}
    for bundle in bundles:
        seen.setdefault(bundle.digest, bundle)
    return list(seen.values())


@dataclass(frozen=True, kw_only=True)
class NightPlan:
    plan: PlanFile
    members: frozenset[str]  # the identities of the plans it is made of


def _night_plan(bundles: Sequence[Bundle], given: PlanFile | None) -> NightPlan:
    """The plan given; else the plan the bundles share; else, for bundles planned
    apart (same matrix and requirement files, platforms that do not overlap), their
    plans joined; else the newest of their plans."""
    if given is not None:
        return NightPlan(plan=given, members=frozenset({given.identity}))
    if not bundles:
        raise InputError(
            "nothing to merge: no bundle and no plan",
            hint="pass the shards' bundle folders, or --plan to publish without them",
        )
    plans = list({b.plan.identity: b.plan for b in bundles}.values())
    together = joined(plans) if len(plans) > 1 else None
    if together is not None:
        return NightPlan(plan=together, members=frozenset(p.identity for p in plans))
    newest = max(plans, key=lambda p: (p.created, p.identity))
    return NightPlan(plan=newest, members=frozenset({newest.identity}))


def _check_plans(bundles: Sequence[Bundle], night: NightPlan, *, allow_stale: bool) -> set[str]:
    """The digests of bundles from an older night (merged only with allow_stale);
    a bundle of any other plan is refused, naming what differs."""
    stale, plan = set(), night.plan
    for bundle in bundles:
        if bundle.plan.identity in night.members:
            continue
        what = "; ".join(differences(bundle.plan, plan))
        older = bundle.plan.created < plan.created
        if older and allow_stale:
            stale.add(bundle.digest)
            continue
        raise BadBundle(
            f"{bundle.path}: built from {_which(bundle.plan, plan)}; what differs: {what}",
            hint=_plan_hint(bundle.plan, plan),
        )
    return stale


def _which(theirs: PlanFile, plan: PlanFile) -> str:
    if _apart(theirs, plan):
        return (
            f"a plan made apart from the night's (its platforms: {' '.join(theirs.platforms)}; "
            f"the night's: {' '.join(plan.platforms)})"
        )
    if theirs.created < plan.created:
        return f"an older night's plan (made {theirs.created}; this night's {plan.created})"
    return f"another plan than {plan.identity[:16]}"


def _plan_hint(theirs: PlanFile, plan: PlanFile) -> str:
    if _apart(theirs, plan):
        return (
            "bundles planned apart merge together without --plan when their platforms "
            "do not overlap; or build every shard with `build --plan --shard` from one "
            "`plan --shards --save-plan`"
        )
    if theirs.created < plan.created:
        return "--allow-stale merges an older night's bundle too"
    return "build every shard with `build --plan` from one `plan --shards --save-plan`"


def _apart(theirs: PlanFile, plan: PlanFile) -> bool:
    """Plans of one matrix and requirement files for other platforms: made apart."""
    return (
        theirs.matrix == plan.matrix
        and dict(theirs.inputs) == dict(plan.inputs)
        and set(theirs.platforms) != set(plan.platforms)
    )


def shard_results(
    plan: PlanFile, bundles: Sequence[Bundle], stale: set[str]
) -> tuple[ShardResult, ...]:
    """Each shard the plan wanted (or a bundle brought): merged, stale or missing."""
    by_name: dict[str, list[Bundle]] = {}
    for bundle in bundles:
        by_name.setdefault(bundle.shard, []).append(bundle)
    wanted = {s.name: s.platforms for s in plan.busy_shards}
    names = list(dict.fromkeys([*wanted, *by_name]))
    out = []
    for name in names:
        came = by_name.get(name, [])
        status = (
            ShardStatus.MISSING
            if not came
            else ShardStatus.STALE
            if all(b.digest in stale for b in came)
            else ShardStatus.MERGED
        )
        platforms = wanted.get(name) or tuple(p for b in came for p in b.platforms)
        out.append(
            ShardResult(
                name=name,
                platforms=tuple(platforms),
                status=status,
                bundles=tuple(str(b.path) for b in came),
                runs=tuple(b.run_id for b in came),
            )
        )
    return tuple(out)


def _jobs(
    admitted: Sequence[tuple[Bundle, Shipped]], layout: RunLayout
) -> tuple[list[WheelRecord], dict[int, Bundle]]:
    """Every admitted job record, its log copied under this run's logs (so the merged
    report's links work where the merge ran), and which bundle holds each."""
    jobs: list[WheelRecord] = []
    owner: dict[int, Bundle] = {}
    for bundle, shipped in admitted:
        for job in shipped.jobs:
            log = ""
            source = bundle.log(job)
            if source.is_file():
                target = layout.job_log(job.job)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                log = str(target)
            moved = replace(job, log=log)
            jobs.append(moved)
            owner[id(moved)] = bundle
    return jobs, owner
