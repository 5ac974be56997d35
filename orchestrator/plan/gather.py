"""Gather what the pure planner needs: pins, index pages, tags, our store.

This is the impure edge of planning: it reads files, the index (through
the cache) and the probe results of builder images.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import requests
from packaging.markers import Marker
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from orchestrator.config import BranchSpec, Matrix
from orchestrator.config.matrix import Platform
from orchestrator.core.errors import IndexUnavailable, RequirementsError
from orchestrator.images.facts import RuntimeFacts
from orchestrator.plan import requirements as reqs_mod
from orchestrator.plan.decide import (
    AbiCheck,
    Decision,
    Rules,
    TagSets,
    decide,
    merge_branches,
    usable,
)
from orchestrator.plan.overrides import Overrides
from orchestrator.plan.planfile import with_credentials
from orchestrator.plan.requirements import Pin, Requirements, Unpinned
from orchestrator.plan.tags import TagSet, derived_tags, tags_from_probe
from orchestrator.plan.upstream import ProjectPage, Stats, Upstream, read_capped
from orchestrator.store import Newest, Store
from orchestrator.trust.runtime import abi_changes


@dataclass(frozen=True, kw_only=True)
class PlanResult:
    decisions: list[Decision]
    stats: Stats
    pages: Mapping[str, ProjectPage | None]  # what the index said, for build-dependency choices
    tagsets: TagSets
    notices: tuple[str, ...]  # requirement-file options accepted but not followed


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


@dataclass(frozen=True)
class BuilderRuntime:
    """What the plan knows of a platform's current builder: its runtime facts and
    its image IDs (one per engine that holds it)."""

    runtime: RuntimeFacts
    images: frozenset[str] = frozenset()


def abi_check(newest: Newest, builders: Mapping[str, BuilderRuntime]) -> AbiCheck:
    """What moved, per cached wheel, between the builder it was built in and the
    current one; nothing for a wheel stored without runtime facts (from an older version)."""
    by_file = {(p, r.filename): r for p, found in newest.items() for r in found.values()}

    def check(platform: str, python: str, filename: str) -> list[str]:
        builder = builders.get(platform)
        record = by_file.get((platform, filename))
        if builder is None or record is None or record.runtime is None:
            return []
        same = record.image in builder.images
        return abi_changes(record.runtime, builder.runtime, python, same_image=same)

    return check


def resolve_unpinned(
    reqs: Requirements,
    pages: Mapping[str, ProjectPage | None],
    *,
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
    return replace(reqs, pins=tuple(pins), unpinned=())


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
        Pin(
            item.name,
            version,
            _and(item.marker, f'python_version == "{python}"'),
            frozenset(),
            item.source,
        )
        for python, version in chosen.items()
    ]


def _and(marker: Marker | None, extra: str) -> Marker:
    return Marker(f"({marker}) and {extra}" if marker else extra)


@dataclass(kw_only=True, frozen=True)
class BranchInput:
    """What one branch plans: its files and the platforms that build it. The unnamed
    branch is the command line's -r/-c files on every selected platform."""

    name: str
    requirements: tuple[Path, ...]
    constraints: tuple[Path, ...]
    platforms: tuple[Platform, ...]
    remote: tuple[Path, ...] = ()  # downloaded files: they may not include local ones


def check_something_to_plan(matrix: Matrix, requirement_files: Sequence[Path]) -> None:
    """-r files or the matrix's branches: checked before a build makes any image."""
    if not requirement_files and not matrix.branches:
        raise RequirementsError(
            "nothing to plan: no requirements file and no branches in the matrix",
            hint="pass -r FILE, or name constraints sources under branches: in the matrix",
        )


def branch_inputs(
    matrix: Matrix,
    platforms: Sequence[Platform],
    requirement_files: Sequence[Path],
    constraint_files: Sequence[Path],
    *,
    cache: Path,
) -> list[BranchInput]:
    """-r files when given; else the matrix's branches, each on the selected
    platforms its globs match, its constraints fetched when they are a URL."""
    check_something_to_plan(matrix, requirement_files)
    if requirement_files:
        return [
            BranchInput(
                name="",
                requirements=tuple(requirement_files),
                constraints=tuple(constraint_files),
                platforms=tuple(platforms),
            )
        ]
    out = []
    for branch in matrix.branches:
        chosen = tuple(
            p for p in platforms if any(fnmatch.fnmatchcase(p.name, g) for g in branch.platforms)
        )
        if not chosen:
            continue  # none of its platforms is selected in this run
        constraints = (
            fetch_constraints(branch, cache) if branch.remote else Path(branch.constraints)
        )
        if branch.packages is not None:
            reqs, cons = (branch.packages,), (constraints, *constraint_files)
        else:
            reqs, cons = (constraints,), tuple(constraint_files)
        fetched = (constraints,) if branch.remote else ()
        out.append(
            BranchInput(
                name=branch.name,
                requirements=reqs,
                constraints=cons,
                platforms=chosen,
                remote=fetched,
            )
        )
    return out


def constraints_path(branch: BranchSpec, cache: Path) -> Path:
    """Where a branch's downloaded constraints are kept for the run."""
    name = hashlib.sha256(branch.constraints.encode()).hexdigest()[:16]
    return cache / "branches" / f"{name}.txt"


def fetch_constraints(branch: BranchSpec, cache: Path) -> Path:
    """A branch's constraints URL, downloaded (capped) into the cache for this run."""
    url, target = branch.constraints, constraints_path(branch, cache)
    try:
        response = requests.get(url, timeout=60, stream=True)
        response.raise_for_status()
        read_capped(response, url)
        data = response.content
    except (requests.RequestException, OSError, IndexUnavailable) as exc:
        reason = exc.message if isinstance(exc, IndexUnavailable) else str(exc)
        raise RequirementsError(
            f"branch {branch.name!r}: cannot fetch its constraints {url}: {reason}",
            hint="check the URL, or point constraints: at a local copy",
        ) from None
    _check_text(branch, data, response.headers.get("Content-Type", ""))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def _check_text(branch: BranchSpec, data: bytes, content_type: str) -> None:
    """A constraints file is text: a binary answer or an HTML page (a sign-in page, an
    error page served with 200) is refused, naming the branch and its URL."""
    what = ""
    if b"\0" in data:
        what = "binary data (NUL bytes)"
    elif "html" in content_type.lower() or data.lstrip()[:15].lower().startswith(
        (b"<!doctype html", b"<html")
    ):
        what = "an HTML page (a sign-in or error page?)"
    if what:
        raise RequirementsError(
            f"branch {branch.name!r}: its constraints {branch.constraints} answered {what}, "
            "not a constraints file",
            hint="point constraints: at the raw file's URL, or at a local copy",
        )


def make_plan(
    matrix: Matrix,
    platforms: Sequence[Platform],
    requirement_files: Sequence[Path],
    constraint_files: Sequence[Path] = (),
    *,
    resolve_latest: bool = False,
    upstream: Upstream,
    probed: Probed | None = None,
    builders: Mapping[str, BuilderRuntime] | None = None,
) -> PlanResult:
    inputs = branch_inputs(
        matrix, platforms, requirement_files, constraint_files, cache=upstream.cache_dir
    )
    read = _read_branches(matrix, inputs, upstream.cache_dir)
    names = {p.name for _, r in read for p in r.pins} | {
        u.name for _, r in read for u in r.unpinned
    }
    pages = upstream.projects(names)
    pythons = sorted({py for p in platforms for py in p.python})
    tagsets = tagsets_for(platforms, probed or {})
    newest = Store(matrix.index.published.root).newest([p.name for p in platforms])  # read once
    cached = {p: {k: r.filename for k, r in found.items()} for p, found in newest.items()}
    rules = Rules(
        skip=matrix.skip,
        from_source=frozenset(matrix.from_source),
        overrides=Overrides(matrix.overrides),
        abi=abi_check(newest, builders or {}),
    )
    per_branch = []
    for branch, found in read:
        pinned = resolve_unpinned(found, pages, resolve_latest=resolve_latest, pythons=pythons)
        decisions = decide(
            branch.platforms,
            pinned,
            pages,
            tagsets,
            cached=cached,
            rules=rules,
        )
        per_branch.append((branch.name, decisions))
    notices = list(dict.fromkeys(n for _, r in read for n in r.notices))
    return PlanResult(
        decisions=merge_branches(per_branch),
        stats=replace(upstream.stats),  # a copy: the client counts on
        pages=pages,
        tagsets=tagsets,
        notices=tuple(notices),
    )


def planned(
    decisions: Sequence[Decision],
    platforms: Sequence[Platform],
    *,
    upstream: Upstream,
    probed: Probed | None = None,
) -> PlanResult:
    """A plan made before (a plan file): its decisions as they were, for the selected
    platforms; the index's pages only for build-dependency choices and hints."""
    names = {p.name for p in platforms}
    mine = [with_credentials(d, upstream.base_url) for d in decisions if d.platform in names]
    pages = upstream.projects({d.name for d in mine})
    return PlanResult(
        decisions=mine,
        stats=replace(upstream.stats),  # a copy: the client counts on
        pages=pages,
        tagsets=tagsets_for(platforms, probed or {}),
        notices=(),
    )


def _read_branches(
    matrix: Matrix, branches: Sequence[BranchInput], cache: Path
) -> list[tuple[BranchInput, Requirements]]:
    """Each branch's files parsed; a downloaded one named by its URL in errors."""
    urls = {constraints_path(b, cache): b.constraints for b in matrix.branches if b.remote}
    return [(b, _read(b, urls)) for b in branches]


def _read(branch: BranchInput, urls: Mapping[Path, str]) -> Requirements:
    try:
        reqs = reqs_mod.read(
            list(branch.requirements), list(branch.constraints), remote=frozenset(branch.remote)
        )
    except RequirementsError as exc:  # a downloaded file is named by its URL, not our cache
        message = exc.message
        for path in branch.remote:
            message = message.replace(str(path), urls.get(path, str(path)))
        raise RequirementsError(message, exc.hint) from None
    if not reqs.pins and not reqs.unpinned and not reqs.unsupported:
        named = f"branch {branch.name!r}: " if branch.name else ""
        raise RequirementsError(
            f"{named}no requirements in {', '.join(map(str, branch.requirements))}"
        )
    return reqs
