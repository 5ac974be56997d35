"""The wheel plan: per (platform, python, requirement), one decision with a reason.

Pure: pins, index pages, accepted tags, our store's contents and the skip
list go in; decisions come out. Nothing here touches the network or Docker.

Precedence: excluded > upstream > cached > build > unavailable. Upstream
wins over our own cache because a wheel PyPI serves is the one to use (and
ours becomes a candidate for `prune`). A cached wheel is reused only while
the builder still matches what it was built against: the versions of
the packages that provide its runtime libraries, and the Python; otherwise
the decision is `rebuild`, with what moved as the reason.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    canonicalize_version,
    parse_wheel_filename,
)

from orchestrator.config import SkipSpec
from orchestrator.config.matrix import Platform
from orchestrator.core.errors import RequirementsError
from orchestrator.model import Action
from orchestrator.plan.overrides import Overrides
from orchestrator.plan.requirements import Pin, Requirements
from orchestrator.plan.tags import TagSet
from orchestrator.plan.upstream import IndexFile, ProjectPage


@dataclass(kw_only=True, frozen=True)
class Decision:
    platform: str
    python: str
    name: str
    version: str
    action: Action
    reason: str
    wheel: str | None = None  # upstream or cached wheel filename
    sdist: str | None = None  # what a build starts from
    source: str = ""  # requirements file:line
    sdist_url: str | None = None  # where that sdist is, and its sha256 from the index
    sdist_sha256: str | None = None
    branches: tuple[str, ...] = ()  # the matrix's branches that want this pin

    def as_dict(self) -> dict[str, object]:
        return {
            "branches": list(self.branches),
            "platform": self.platform,
            "python": self.python,
            "name": self.name,
            "version": self.version,
            "action": self.action.value,
            "reason": self.reason,
            "wheel": self.wheel,
            "sdist": self.sdist,
            "source": self.source,
            "sdist_url": self.sdist_url,
            "sdist_sha256": self.sdist_sha256,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """From a plan file or a report, already checked against its schema."""
        known = cls.__dataclass_fields__.keys() - {"action", "branches"}
        fields = {k: v for k, v in data.items() if k in known}
        branches = tuple(data.get("branches") or ())
        return cls(**fields, action=Action(data["action"]), branches=branches)


def merge_branches(per_branch: Sequence[tuple[str, Sequence[Decision]]]) -> list[Decision]:
    """One decision per (platform, python, project, version) whichever branches want it,
    naming them all: a pin that several branches share is planned and built once per
    platform. Each branch's plan is its own, so two versions of one project (one per
    branch) are two decisions."""
    merged: dict[tuple[str, str, str, str], Decision] = {}
    for branch, decisions in per_branch:
        for d in decisions:
            key = (d.platform, d.python, canonicalize_name(d.name), canonicalize_version(d.version))
            have = merged.get(key)
            if have is None:
                merged[key] = replace(d, branches=(branch,) if branch else ())
            elif branch and branch not in have.branches:
                merged[key] = replace(have, branches=(*have.branches, branch))
    return list(merged.values())


NOT_ON_INDEX = "project not found on the index"
ON_THE_INDEX = "on the index"


def missing_pins(decisions: Sequence[Decision]) -> list[Decision]:
    """Pins the index does not have at all (a typo, a version that never existed), once
    each: unlike "no wheel for this platform", no platform can ever have them."""
    seen: dict[tuple[str, str], Decision] = {}
    for d in decisions:
        gone = (NOT_ON_INDEX, f"no version {d.version} {ON_THE_INDEX}")
        if d.action == Action.UNAVAILABLE and d.reason in gone:
            seen.setdefault((d.name, d.version), d)
    return list(seen.values())


# (platform name, python) → tags; platform name → {(name, canonical version): wheel}
TagSets = Mapping[tuple[str, str], TagSet]
Cached = Mapping[str, Mapping[tuple[str, str], str]]
# (platform, python, cached wheel filename) -> what moved since it was built
AbiCheck = Callable[[str, str, str], list[str]]


def marker_environment(platform: Platform, python: str) -> dict[str, str]:
    """PEP 508 marker variables of `python` on `platform`."""
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "implementation_version": f"{python}.0",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": platform.arch.machine,
        "platform_release": "",
        "platform_version": "",
        "extra": "",
    }


def pins_for(reqs: Requirements, platform: Platform, python: str) -> list[Pin]:
    """The pins that apply to this python on this platform; conflicts are errors."""
    env = marker_environment(platform, python)
    chosen: dict[NormalizedName, Pin] = {}
    for pin in reqs.pins:
        if not pin.applies(env):
            continue
        other = chosen.get(pin.name)
        if other and canonicalize_version(other.version) != canonicalize_version(pin.version):
            raise RequirementsError(
                f"{pin.source}: {pin.name}=={pin.version} conflicts with "
                f"{other.name}=={other.version} at {other.source} (for {platform.name}, "
                f"python {python})"
            )
        chosen.setdefault(pin.name, pin)
    return list(chosen.values())


@dataclass(frozen=True, kw_only=True)
class Rules:
    """What the matrix and our store say beyond the index: pins to skip, projects to
    build from source, per-package overrides, and whether a cached wheel's builder moved."""

    skip: Sequence[SkipSpec] = ()
    from_source: frozenset[str] = frozenset()
    overrides: Overrides | None = None
    abi: AbiCheck | None = None


def decide(
    platforms: Sequence[Platform],
    reqs: Requirements,
    pages: Mapping[str, ProjectPage | None],
    tagsets: TagSets,
    *,
    cached: Cached,
    rules: Rules = Rules(),
) -> list[Decision]:
    out: list[Decision] = []
    for platform in platforms:
        for python in platform.python:
            tags = tagsets[(platform.name, python)]
            mine = cached.get(platform.name, {})
            out += [
                _decide_one(
                    Pinned(platform, python, pin),
                    pages.get(pin.name),
                    tags=tags,
                    cached=mine,
                    rules=rules,
                )
                for pin in pins_for(reqs, platform, python)
            ]
            out.extend(
                Decision(
                    platform=platform.name,
                    python=python,
                    name=u.text,
                    version="",
                    action=Action.UNSUPPORTED,
                    reason=u.why,
                    source=str(u.source),
                )
                for u in reqs.unsupported
            )
            out.extend(excluded_by_markers(reqs, platform, python))
    return out


def excluded_by_markers(reqs: Requirements, platform: Platform, python: str) -> list[Decision]:
    """A row for each pin no marker lets onto this platform and python: not silence."""
    applying = {p.name for p in pins_for(reqs, platform, python)}
    out: dict[str, Decision] = {}
    for pin in reqs.pins:
        if pin.name in applying or pin.name in out:
            continue
        out[pin.name] = Decision(
            platform=platform.name,
            python=python,
            name=pin.name,
            version=pin.version,
            action=Action.EXCLUDED,
            reason=f"marker `{pin.marker}` excludes it on {platform.name} (python {python})",
            source=str(pin.source),
        )
    return list(out.values())


@dataclass(frozen=True)
class Pinned:
    """One pin on one platform and Python: what a decision is about."""

    platform: Platform
    python: str
    pin: Pin

    def decision(
        self, action: Action, reason: str, wheel: str | None = None, sdist: IndexFile | None = None
    ) -> Decision:
        return Decision(
            platform=self.platform.name,
            python=self.python,
            name=self.pin.name,
            version=self.pin.version,
            action=action,
            reason=reason,
            wheel=wheel,
            sdist=sdist.filename if sdist else None,
            source=str(self.pin.source),
            sdist_url=sdist.url if sdist else None,
            sdist_sha256=sdist.sha256 if sdist else None,
        )


def _decide_one(
    item: Pinned,
    page: ProjectPage | None,
    *,
    tags: TagSet,
    cached: Mapping[tuple[str, str], str],
    rules: Rules,
) -> Decision:
    pin = item.pin
    skipped = _skipped(item.platform, pin, rules.skip, rules.overrides)
    if skipped:
        return item.decision(Action.EXCLUDED, skipped)
    if page is None:
        return item.decision(Action.UNAVAILABLE, NOT_ON_INDEX)
    all_files = page.files(pin.version)
    if not all_files:
        return item.decision(Action.UNAVAILABLE, f"no version {pin.version} {ON_THE_INDEX}")
    # An exact pin installs a yanked release all the same (PEP 592): so do we.
    files, dropped = usable(all_files, item.python, exact=True)
    wheels = [f for f in files if f.filename.endswith(".whl")]
    best = best_wheel(wheels, tags)
    own = pin.name in rules.from_source
    if best is not None and not own:
        why = f"compatible wheel on the index ({tags.source} tags){_yanked(best)}"
        return item.decision(Action.UPSTREAM, why, wheel=best.filename)
    if own:
        why = "from source, as the matrix asks (from_source)"
    else:
        why = _why_no_wheel(wheels, tags, item.platform) if files else dropped
    return _ours_or_source(item, files, why, cached=cached, rules=rules)


def _ours_or_source(
    item: Pinned,
    files: Sequence[IndexFile],
    why: str,
    *,
    cached: Mapping[tuple[str, str], str],
    rules: Rules,
) -> Decision:
    """No wheel upstream will do: our cached wheel, or a build from the sdist."""
    pin = item.pin
    mine = cached.get((pin.name, canonicalize_version(pin.version)))
    moved = rules.abi(item.platform.name, item.python, mine) if rules.abi and mine else []
    if mine is not None and not moved:
        return item.decision(Action.CACHED, "our index holds it", wheel=mine)
    sdists = _hashed([f for f in files if not f.filename.endswith(".whl")], pin)
    if sdists and moved:
        why = f"the builder moved since {mine} was built: {'; '.join(moved)}"
        return item.decision(Action.REBUILD, why, mine, _prefer_targz(sdists))
    if sdists:
        sdist = _prefer_targz(sdists)
        return item.decision(Action.BUILD, why + _yanked(sdist), sdist=sdist)
    if mine is not None:  # moved, but nothing to build it again from: keep serving it
        return item.decision(Action.CACHED, "our index holds it; " + "; ".join(moved), wheel=mine)
    if pin.hashes and any(not f.filename.endswith(".whl") for f in files):
        return item.decision(
            Action.UNAVAILABLE, f"{why}, and no sdist matches the pin's --hash values"
        )
    return item.decision(Action.UNAVAILABLE, f"no sdist and {why}")


def _skipped(
    platform: Platform, pin: Pin, skip: Sequence[SkipSpec], overrides: Overrides | None
) -> str | None:
    """The reason the matrix gives for not building this pin here, if it gives one."""
    for rule in skip:
        if fnmatch.fnmatchcase(platform.name, rule.platform) and fnmatch.fnmatchcase(
            pin.name, canonicalize_name(rule.name)
        ):
            return rule.reason
    return overrides.skip_reason(platform.name, pin.name, pin.version) if overrides else None


def _hashed(sdists: list[IndexFile], pin: Pin) -> list[IndexFile]:
    """With --hash values, only a file with one of them (as pip would accept)."""
    if not pin.hashes:
        return sdists
    allowed = {h.removeprefix("sha256:") for h in pin.hashes}
    return [f for f in sdists if f.sha256 in allowed]


def _yanked(chosen: IndexFile) -> str:
    return " (yanked, but pip installs it for an exact pin: PEP 592)" if chosen.yanked else ""


def usable(
    files: list[IndexFile], python: str, *, exact: bool = False
) -> tuple[list[IndexFile], str]:
    """Files whose requires-python admits `python`, and that are not yanked unless the
    requirement pins this exact version (PEP 592: pip then installs them all the same)."""
    kept, yanked, excluded = [], 0, ""
    for f in files:
        if f.yanked and not exact:
            yanked += 1
            continue
        if f.requires_python and not _admits(f.requires_python, python):
            excluded = f.requires_python
            continue
        kept.append(f)
    if kept:
        return kept, ""
    if excluded:
        return [], f"requires-python {excluded} excludes {python}"
    return [], f"all {yanked} files are yanked"


def _admits(requires: str, python: str) -> bool:
    try:
        return SpecifierSet(requires).contains(f"{python}.0", prereleases=True)
    except InvalidSpecifier:
        return True  # pip ignores a requires-python it cannot parse


def _wheel_tags(filename: str) -> frozenset[Tag]:
    try:
        return parse_wheel_filename(filename)[3]
    except InvalidWheelFilename:
        return frozenset()


def best_wheel(wheels: list[IndexFile], tags: TagSet) -> IndexFile | None:
    ranked = [
        (r, w.filename, w) for w in wheels if (r := tags.rank(_wheel_tags(w.filename))) is not None
    ]
    return min(ranked, key=lambda item: (item[0], item[1]))[2] if ranked else None


def _prefer_targz(sdists: list[IndexFile]) -> IndexFile:
    return next((s for s in sdists if s.filename.endswith(".tar.gz")), sdists[0])


def _why_no_wheel(wheels: list[IndexFile], tags: TagSet, platform: Platform) -> str:
    """Say, in the words a person would use, why no wheel fits."""
    if not wheels:
        return "sdist only"
    all_tags = [t for w in wheels for t in _wheel_tags(w.filename)]
    machine = platform.arch.machine
    linux = [t for t in all_tags if t.platform.startswith(("manylinux", "linux", "musllinux"))]
    if not linux and not any(t.platform == "any" for t in all_tags):
        return "no Linux wheels (only " + ", ".join(sorted(_os_names(all_tags))) + ")"
    here = [t for t in linux if t.platform.endswith(f"_{machine}")]
    if not here and linux:
        arches = sorted({_machine_of(t.platform) for t in linux})
        return f"wheels only for {', '.join(arches)}"
    if here and all(t.platform.startswith("musllinux") for t in here):
        return f"only musllinux wheels for {machine}"
    interp = f"cp{python_nodot(tags.python)}"
    if not any(t.interpreter == interp or t.abi == "abi3" for t in here):
        have = sorted({t.interpreter for t in here + [t for t in all_tags if t.platform == "any"]})
        return f"no {interp} wheel (has {', '.join(have)})"
    needed = sorted({g for t in here if (g := _glibc_of(t.platform)) is not None})
    if needed and all(g > _glibc_tuple(platform.glibc) for g in needed):
        low = needed[0]
        return f"wheels need glibc {low[0]}.{low[1]}, platform has {platform.glibc}"
    return "no compatible wheel"


def python_nodot(python: str) -> str:
    return python.replace(".", "")


def _os_names(tags: list[Tag]) -> set[str]:
    return {
        "macOS"
        if t.platform.startswith("macosx")
        else "Windows"
        if t.platform.startswith("win")
        else t.platform
        for t in tags
    }


def _machine_of(platform_tag: str) -> str:
    for machine in ("x86_64", "aarch64", "i686", "ppc64le", "s390x", "armv7l", "riscv64"):
        if platform_tag.endswith(machine):
            return machine
    return platform_tag.rsplit("_", 1)[-1]


def _glibc_of(platform_tag: str) -> tuple[int, int] | None:
    legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
    for prefix, version in legacy.items():
        if platform_tag.startswith(prefix + "_"):
            return version
    if platform_tag.startswith("manylinux_"):
        parts = platform_tag.split("_")
        return int(parts[1]), int(parts[2])
    return None


def _glibc_tuple(glibc: str) -> tuple[int, int]:
    major, minor = glibc.split(".")
    return int(major), int(minor)
