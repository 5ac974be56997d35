"""Gather what the pure planner needs: pins, index pages, tags, our store.

This is the impure edge of planning: it reads files, the index (through
the cache) and the probe results of builder images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from orchestrator.config import Matrix
from orchestrator.errors import RequirementsError
from orchestrator.layout import RunLayout
from orchestrator.matrix import Platform

from . import requirements as reqs_mod
from .overrides import Overrides
from .plan import Cached, Decision, TagSets, decide, usable
from .requirements import Pin, Requirements, Unpinned
from .store import Store
from .tags import TagSet, derived_tags, tags_from_probe
from .upstream import ProjectPage, Stats, Upstream


@dataclass
class PlanResult:
    decisions: list[Decision]
    stats: Stats
    pages: Mapping[str, ProjectPage | None]  # what the index said, for build-dependency choices
    tagsets: TagSets
    upstream: Upstream
    notices: list[str]  # requirement-file options accepted but not followed


# platform name -> python -> the builder's probed sys_tags(), best first
Probed = Mapping[str, Mapping[str, Sequence[str]]]


def tagsets_for(platforms: Sequence[Platform], probed: Probed) -> TagSets:
    """Tags from each builder's probe when there is one, else derived from the matrix."""
    out: dict[tuple[str, str], TagSet] = {}
    for platform in platforms:
        for python in platform.python:
            lines = probed.get(platform.name, {}).get(python)
            out[(platform.name, python)] = (
                tags_from_probe(python, list(lines))
                if lines
                else TagSet.of(
                    python, derived_tags(python, platform.arch, platform.glibc), "derived"
                )
            )
    return out


def store_contents(root: Path, platforms: Sequence[Platform]) -> Cached:
    """(name, version) → wheel filename per platform, from the store's manifest."""
    return Store(root).contents([p.name for p in platforms])


def resolve_unpinned(
    reqs: Requirements,
    pages: Mapping[str, ProjectPage | None],
    resolve_latest: bool,
    pythons: Sequence[str] = (),
) -> Requirements:
    """Pin each unpinned requirement from a constraint, or (if asked) the latest release
    that each of the matrix's Pythons can use (requires-python, not yanked)."""
    constraints = {c.name: c for c in reqs.constraints}
    pins = list(reqs.pins)
    for item in reqs.unpinned:
        if item.name in constraints:
            c = constraints[item.name]
            pins.append(Pin(item.name, c.version, item.marker, frozenset(), item.source))
        elif resolve_latest:
            pins += _latest(item, pages.get(item.name), pythons or ("3",))
        else:
            raise RequirementsError(
                f"{item.source}: {item.name} {item.specifier} is not pinned",
                hint="pin it with == (or ===), constrain it with -c, or pass --resolve-latest",
            )
    return Requirements(
        pins, [], reqs.unsupported, reqs.constraints, reqs.notices, reqs.require_hashes
    )


def _latest(item: Unpinned, page: ProjectPage | None, pythons: Sequence[str]) -> list[Pin]:
    """One pin, or one per Python (with a python_version marker) when they differ."""
    spec = SpecifierSet("" if item.specifier == "(any)" else item.specifier)
    versions = []
    for raw in page.versions() if page else []:
        try:
            versions.append((Version(raw), raw))
        except InvalidVersion:
            continue
    allowed = sorted(
        ((v, r) for v, r in versions if v in spec and not v.is_prerelease), reverse=True
    )
    chosen: dict[str, str] = {}
    for python in pythons:
        for _version, raw in allowed:
            assert page is not None
            if usable(page.files(raw), python)[0]:
                chosen[python] = raw
                break
        else:
            raise RequirementsError(
                f"{item.source}: no release of {item.name} matching {item.specifier} "
                f"on the index can be installed on python {python}"
            )
    if len(set(chosen.values())) == 1:
        return [Pin(item.name, next(iter(chosen.values())), item.marker, frozenset(), item.source)]
    return [
        Pin(item.name, version, _and(item.marker, f'python_version == "{python}"'), frozenset(),
            item.source)
        for python, version in chosen.items()
    ]  # fmt: skip


def _and(marker: Marker | None, extra: str) -> Marker:
    return Marker(f"({marker}) and {extra}" if marker else extra)


def make_plan(
    matrix: Matrix,
    platforms: Sequence[Platform],
    requirement_files: Sequence[Path],
    constraint_files: Sequence[Path] = (),
    resolve_latest: bool = False,
    upstream: Upstream | None = None,
    probed: Probed | None = None,
) -> PlanResult:
    reqs = reqs_mod.read(list(requirement_files), list(constraint_files))
    if not reqs.pins and not reqs.unpinned and not reqs.unsupported:
        raise RequirementsError(f"no requirements in {', '.join(map(str, requirement_files))}")
    upstream = upstream or Upstream.of(matrix.index, RunLayout(Path()).index_cache)
    names = {p.name for p in reqs.pins} | {u.name for u in reqs.unpinned}
    pages = upstream.projects(names)
    pythons = sorted({py for p in platforms for py in p.python})
    reqs = resolve_unpinned(reqs, pages, resolve_latest, pythons)
    tagsets = tagsets_for(platforms, probed or {})
    cached = store_contents(matrix.index.root, platforms)
    decisions = decide(
        platforms,
        reqs,
        pages,
        tagsets,
        cached,
        matrix.skip,
        frozenset(matrix.from_source),
        Overrides(matrix.overrides),
    )
    return PlanResult(decisions, upstream.stats, pages, tagsets, upstream, reqs.notices)
