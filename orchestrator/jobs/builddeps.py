"""Build dependencies: which ones need a wheel built first, and the per-platform cache.

Jobs resolve their build requirements preferring wheels (pip's
`--prefer-binary`), never `--no-binary`. A static build requirement with no
wheel for the platform would otherwise be compiled inside every job that
needs it; instead it becomes a job of its own, built once per platform into
the build-dependency cache, and the jobs that need it wait for it.

`needs_for` is pure: it mirrors pip's choice under `--prefer-binary` (the
newest allowed version with a compatible wheel, else the newest sdist) on
the index pages the plan already holds. `BuildDepCache` is the host side:
wheels per platform and Python that every job gets and adds to, and the
exact pins each sdist resolved to, so a later run resolves nothing again.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import InvalidMarker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    canonicalize_version,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from orchestrator.config.matrix import Platform
from orchestrator.core.errors import RequirementsError
from orchestrator.core.files import write_atomic
from orchestrator.plan.decide import best_wheel, marker_environment, usable
from orchestrator.plan.tags import TagSet
from orchestrator.plan.upstream import IndexFile, ProjectPage

WHEEL_NAME = re.compile(r"^[A-Za-z0-9_.+!-]+\.whl$")


@dataclass(kw_only=True, frozen=True)
class BuildDepNeed:
    """A build requirement of `needed_by` that has no wheel for the platform."""

    platform: str
    python: str
    name: NormalizedName
    version: str
    sdist: IndexFile
    needed_by: str  # "name==version" of the sdist that requires it


def parse_constraints(lines: Sequence[str], source: str) -> dict[NormalizedName, SpecifierSet]:
    """A build-constraints file: `name<spec>` lines (markers and hashes are not for it)."""
    out: dict[NormalizedName, SpecifierSet] = {}
    for number, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise RequirementsError(f"{source}:{number}: not a constraint: {exc}") from None
        name = canonicalize_name(req.name)
        out[name] = out.get(name, SpecifierSet()) & req.specifier
    return out


def needs_for(
    requires: Sequence[str],
    needed_by: str,
    platform: Platform,
    python: str,
    *,
    pages: Mapping[str, ProjectPage | None],
    tags: TagSet,
    constraints: Mapping[NormalizedName, SpecifierSet],
) -> list[BuildDepNeed]:
    """The static build requirements that pip, preferring wheels, would build from sdist."""
    env = marker_environment(platform, python)
    out = []
    for text in requires:
        req = _requirement(text)
        if req is None or (req.marker is not None and not _marker_ok(req, env)):
            continue
        name = canonicalize_name(req.name)
        spec = req.specifier & constraints.get(name, SpecifierSet())
        sdist = choose(spec, pages.get(name), python, tags)
        if sdist is not None:
            out.append(
                BuildDepNeed(
                    platform=platform.name,
                    python=python,
                    name=name,
                    version=sdist[0],
                    sdist=sdist[1],
                    needed_by=needed_by,
                )
            )
    return out


def choose(
    spec: SpecifierSet, page: ProjectPage | None, python: str, tags: TagSet
) -> tuple[str, IndexFile] | None:
    """(version, sdist) when pip --prefer-binary would build this one; None when a
    wheel serves it, or nothing does (pip then says so in the job)."""
    if page is None:
        return None
    fallback: tuple[str, IndexFile] | None = None
    for version in _allowed(page, spec):
        files, _ = usable(page.files(version), python)
        if best_wheel([f for f in files if f.filename.endswith(".whl")], tags) is not None:
            return None
        sdists = [f for f in files if not f.filename.endswith(".whl")]
        if sdists and fallback is None:
            fallback = (version, sdists[0])
    return fallback


def _allowed(page: ProjectPage, spec: SpecifierSet) -> list[str]:
    parsed = []
    for raw in page.versions():
        try:
            parsed.append((Version(raw), raw))
        except InvalidVersion:
            continue
    allowed = [(v, raw) for v, raw in parsed if spec.contains(v, prereleases=False)]
    return [raw for _, raw in sorted(allowed, reverse=True)]


def _requirement(text: str) -> Requirement | None:
    try:
        return Requirement(text)
    except InvalidRequirement:
        return None  # the job's metadata step reports it in the backend's words


def _marker_ok(req: Requirement, env: dict[str, str]) -> bool:
    assert req.marker is not None
    try:
        return req.marker.evaluate(env)
    except InvalidMarker:
        return True


class BuildDepCache:
    """Build-requirement wheels of one platform and Python, and resolved pins per sdist."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def wheels(self) -> list[Path]:
        return sorted(self.root.glob("*.whl")) if self.root.is_dir() else []

    def absorb(self, job_tar: bytes, prefix: str = "job/deps/") -> list[str]:
        """Keep the wheels a job downloaded or built that the cache lacks."""
        added = []
        self.root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(job_tar)) as tar, self._lock:
            for member in tar.getmembers():
                name = member.name.removeprefix(prefix)
                if not member.name.startswith(prefix) or not _plain_wheel(member, name):
                    continue
                if (self.root / name).exists():
                    continue
                source = tar.extractfile(member)
                assert source is not None
                self._write(name, source.read())
                added.append(name)
        return added

    def add_wheel(self, wheel: Path) -> None:
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            if not (self.root / wheel.name).exists():
                self._write(wheel.name, wheel.read_bytes())

    def _write(self, name: str, data: bytes) -> None:
        write_atomic(self.root / name, data)

    def pins(self, key: str, max_age: float | None = None) -> list[str] | None:
        """The exact build requirements recorded under `key` (see `pins_key` and
        `requires_key`); None when there are none, or they are older than `max_age`."""
        path = self.root / "pins" / f"{key}.txt"
        try:
            if max_age is not None and time.time() - path.stat().st_mtime > max_age:
                return None
            text = path.read_text()
        except OSError:
            return None
        return [line for line in text.splitlines() if line.strip()]

    def wheels_for(self, pins: Sequence[str]) -> list[Path]:
        """The cached wheels of these exact versions: all a pinned job needs put in."""
        wanted = {_pin_key(p) for p in pins}
        out = []
        for wheel in self.wheels():
            try:
                name, version, _build, _tags = parse_wheel_filename(wheel.name)
            except InvalidWheelFilename:
                continue
            if (name, canonicalize_version(version)) in wanted:
                out.append(wheel)
        return out

    def save_pins(self, key: str, pins: Sequence[str]) -> None:
        folder = self.root / "pins"
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / f"{key}.txt", "".join(f"{p}\n" for p in pins))


def pins_key(sdist_sha256: str, constraints: Sequence[str]) -> str:
    """Pins are recorded per sdist and build constraints: new constraints, new resolution."""
    text = "\n".join([sdist_sha256, *constraints])
    return hashlib.sha256(text.encode()).hexdigest()


def requires_key(requires: Sequence[str], constraints: Sequence[str]) -> str:
    """A resolution shared by every sdist with the same static build requirements
    (most ask for `setuptools` and little else): resolved once a night, per platform."""
    text = "\n".join(["requires", *sorted(requires), "constraints", *constraints])
    return hashlib.sha256(text.encode()).hexdigest()


def _pin_key(pin: str) -> tuple[str, str]:
    name, _, version = pin.partition("==")
    return canonicalize_name(name), canonicalize_version(version)


def _plain_wheel(member: tarfile.TarInfo, name: str) -> bool:
    return member.isfile() and "/" not in name and bool(WHEEL_NAME.fullmatch(name))
