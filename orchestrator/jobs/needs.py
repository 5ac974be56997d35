"""The sources stage: each planned sdist fetched once and read, and the build
requirements that have no wheel, which become jobs of their own (to a fixed depth)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name

from orchestrator.config.matrix import Platform
from orchestrator.core.errors import UnsafeName
from orchestrator.jobs.builddeps import BuildDepNeed, needs_for
from orchestrator.jobs.failures import Failure
from orchestrator.jobs.graph import SdistResult
from orchestrator.jobs.sources import (
    HashMismatch,
    SdistCache,
    SdistDownloadError,
    SdistFacts,
    SdistRef,
    facts,
)
from orchestrator.model import Category
from orchestrator.plan.decide import Decision
from orchestrator.plan.gather import PlanResult
from orchestrator.plan.upstream import ProjectPage

MAX_BUILD_DEP_DEPTH = 3  # build requirements of build requirements, and so on


@dataclass(frozen=True, kw_only=True)
class Sources:
    """What the sources stage returns: every sdist's facts or failure, the build
    dependencies to build first, and how many sdists were downloaded (not cached)."""

    sdists: Mapping[tuple[str, str], SdistResult]
    needs: tuple[BuildDepNeed, ...]
    downloads: int

    @property
    def good(self) -> dict[tuple[str, str], SdistFacts]:
        return {k: v for k, v in self.sdists.items() if isinstance(v, SdistFacts)}


# Index pages by project name (None: no such project), for names the plan did not ask
# for: the build requirements that reading the sdists turned up.
PageLookup = Callable[[Iterable[str]], Mapping[str, ProjectPage | None]]


def gather_sources(
    plan: PlanResult,
    platforms: Sequence[Platform],
    *,
    cache: SdistCache,
    constraints: Mapping[NormalizedName, SpecifierSet],
    lookup: PageLookup,
) -> Sources:
    """The sdists of every decision that builds, and the build dependencies they need
    (with their own sdists)."""
    todo = [d for d in plan.decisions if d.action.builds and d.sdist_url]
    sdists = fetch_sdists(cache, {(d.name, d.version): _ref(d) for d in todo})
    by_name = {p.name: p for p in platforms}
    needs, more = build_dep_needs(
        todo, sdists, cache, by_name, plan=plan, constraints=constraints, lookup=lookup
    )
    return Sources(sdists={**sdists, **more}, needs=tuple(needs), downloads=cache.downloads)


def _ref(decision: Decision) -> SdistRef:
    assert decision.sdist
    assert decision.sdist_url
    return SdistRef(decision.sdist, decision.sdist_url, decision.sdist_sha256)


def fetch_sdists(
    cache: SdistCache, refs: Mapping[tuple[str, str], SdistRef], workers: int = 8
) -> dict[tuple[str, str], SdistResult]:
    """Each sdist once, verified, in parallel; a failure is that item's, not the run's."""

    def one(ref: SdistRef) -> SdistResult:
        try:
            return facts(ref, cache.get(ref))
        except HashMismatch as exc:
            return Failure(Category.HASH_MISMATCH, exc.message, exc.hint or "")
        except UnsafeName as exc:
            return Failure(Category.BAD_SDIST, exc.message, "the index's page is wrong or hostile")
        except SdistDownloadError as exc:
            return Failure(Category.SDIST_DOWNLOAD, exc.message, "a network fault")

    keys = list(refs)
    with ThreadPoolExecutor(max_workers=workers) as threads:
        return dict(zip(keys, threads.map(one, [refs[k] for k in keys]), strict=True))


def build_dep_needs(
    todo: Sequence[Decision],
    sdists: Mapping[tuple[str, str], SdistResult],
    cache: SdistCache,
    platforms: Mapping[str, Platform],
    *,
    plan: PlanResult,
    constraints: Mapping[NormalizedName, SpecifierSet],
    lookup: PageLookup,
) -> tuple[list[BuildDepNeed], dict[tuple[str, str], SdistResult]]:
    """Static build requirements that need a wheel built first, to a fixed depth, and
    the sdists fetched for them (their jobs need them)."""
    wanted = {(d.platform, d.python, d.name, d.version) for d in todo}
    found: dict[tuple[str, str, str, str], BuildDepNeed] = {}
    fetched: dict[tuple[str, str], SdistResult] = {}
    for _depth in range(MAX_BUILD_DEP_DEPTH):
        known = {**sdists, **fetched}
        new = _needs_of(wanted, known, platforms, plan, constraints=constraints, lookup=lookup)
        new = [n for n in new if (n.platform, n.python, n.name, n.version) not in found]
        if not new:
            break
        for need in new:
            found[(need.platform, need.python, need.name, need.version)] = need
        refs = {
            (n.name, n.version): SdistRef(n.sdist.filename, n.sdist.url, n.sdist.sha256)
            for n in new
        }
        fetched.update(fetch_sdists(cache, {k: v for k, v in refs.items() if k not in known}))
        wanted = {(n.platform, n.python, n.name, n.version) for n in new}
    return list(found.values()), fetched


def _needs_of(
    wanted: set[tuple[str, str, str, str]],
    sdists: Mapping[tuple[str, str], SdistResult],
    platforms: Mapping[str, Platform],
    plan: PlanResult,
    *,
    constraints: Mapping[NormalizedName, SpecifierSet],
    lookup: PageLookup,
) -> list[BuildDepNeed]:
    requires = {
        key: item.build_requires for key, item in sdists.items() if not isinstance(item, Failure)
    }
    names = {r.split(";")[0] for reqs in requires.values() for r in reqs}
    pages = {**plan.pages, **lookup(_names(names) - set(plan.pages))}
    out: list[BuildDepNeed] = []
    for platform, python, name, version in sorted(wanted):
        out += needs_for(
            requires.get((name, version), ()),
            f"{name}=={version}",
            platforms[platform],
            python,
            pages=pages,
            tags=plan.tagsets[(platform, python)],
            constraints=constraints,
        )
    return out


def _names(requirements: set[str]) -> set[str]:
    out: set[str] = set()
    for text in requirements:
        try:
            out.add(canonicalize_name(Requirement(text).name))
        except InvalidRequirement:
            continue
    return out
