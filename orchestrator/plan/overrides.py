"""Pure: the per-package settings that apply to one job.

An `overrides:` entry names a normalized project, optionally narrowed by a
platform glob and a version specifier. Every entry that matches applies, in
file order: lists add up (duplicates dropped), `env` keys and `timeout` are
taken from the last entry that sets them, and any `skip` excludes the pin.
System packages come from the entries' `packages` for the platform's family,
their bindep files, and the lines of the sdist's own bindep.txt that name a
build profile (unless an entry says `sdist_bindep: false`), each evaluated
for the platform; packages the
builder already has from the common list are left out.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from orchestrator.config import Matrix, OverrideSpec
from orchestrator.config.bindep import (
    DEFAULT_PROFILES,
    Bindep,
    BindepError,
    parse_bindep,
    platform_atoms,
)
from orchestrator.config.matrix import Platform

SDIST_BINDEP = "bindep.txt in the sdist"


@dataclass(kw_only=True, frozen=True)
class JobExtras:
    """What the overrides add to one job. `problem` is set when they cannot be
    worked out (a bindep.txt in the sdist that does not parse): the job is blocked."""

    packages: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # where the packages came from
    env: tuple[tuple[str, str], ...] = ()
    build_constraints: tuple[str, ...] = ()
    pip_options: tuple[str, ...] = ()
    timeout: float | None = None
    problem: str = ""
    test_command: str | None = None  # the smoke test's, from the last entry setting one
    runtime_packages: tuple[str, ...] = ()  # for the smoke test, beyond what ELF shows
    smoke: bool = True


@dataclass(frozen=True)
class Overrides:
    specs: tuple[OverrideSpec, ...] = ()
    bindeps: Mapping[Path, Bindep] | None = None  # each entry's bindep file, parsed

    @classmethod
    def of(cls, matrix: Matrix) -> Overrides:
        """The matrix's overrides with their bindep files read (the loader checked them)."""
        files = {s.bindep for s in matrix.overrides if s.bindep is not None}
        return cls(
            matrix.overrides,
            {f: parse_bindep(f.read_text(errors="replace"), str(f)) for f in sorted(files)},
        )

    def matching(self, platform: str, name: str, version: str) -> list[OverrideSpec]:
        key = canonicalize_name(name)
        return [
            s
            for s in self.specs
            if s.name == key
            and fnmatch.fnmatchcase(platform, s.platforms)
            and _in(version, s.versions)
        ]

    def skip_reason(self, platform: str, name: str, version: str) -> str | None:
        reasons = [s.skip for s in self.matching(platform, name, version) if s.skip]
        return reasons[-1] if reasons else None

    def extras(
        self,
        platform: Platform,
        name: str,
        version: str,
        sdist_bindep: Bindep | None = None,
        *,
        sdist_problem: str = "",  # why the sdist's bindep.txt could not be read
    ) -> JobExtras:
        specs = self.matching(platform.name, name, version)
        if sdist_problem and all(s.sdist_bindep for s in specs):
            return JobExtras(problem=sdist_problem)  # `sdist_bindep: false` gets past it
        try:
            packages, sources = self._packages(specs, platform, sdist_bindep)
        except BindepError as exc:
            return JobExtras(problem=str(exc))
        env: dict[str, str] = {}
        timeout: float | None = None
        command: str | None = None
        for spec in specs:
            env.update(spec.env)
            timeout = float(spec.timeout) if spec.timeout is not None else timeout
            command = spec.test_command or command
        return JobExtras(
            packages=packages,
            sources=sources,
            env=tuple(sorted(env.items())),
            build_constraints=_unique(line for s in specs for line in s.build_constraints),
            pip_options=tuple(option for s in specs for option in s.pip_options),
            timeout=timeout,
            test_command=command,
            runtime_packages=_unique(
                p for s in specs for p in s.runtime_packages.of(platform.family)
            ),
            smoke=all(s.smoke for s in specs),
        )

    def _packages(
        self, specs: Sequence[OverrideSpec], platform: Platform, sdist_bindep: Bindep | None
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        atoms = platform_atoms(platform.distro, platform.release, platform.family.value)
        profiles = specs[-1].bindep_profiles if specs else DEFAULT_PROFILES
        found: list[tuple[str, tuple[str, ...]]] = []
        for spec in specs:
            found.append(("overrides", spec.packages.of(platform.family)))
            if spec.bindep is not None and self.bindeps and spec.bindep in self.bindeps:
                bindep = self.bindeps[spec.bindep]
                found.append((bindep.origin, bindep.packages(atoms, spec.bindep_profiles)))
        if sdist_bindep is not None and all(s.sdist_bindep for s in specs):
            # Only its lines marked for a build profile: OpenStack's files list test
            # services (mariadb-server, postgresql, open-iscsi) with no profile, and a
            # build image must not get those. A bindep file the matrix names is the
            # operator's choice and counts whole, as bindep reads it.
            found.append((SDIST_BINDEP, sdist_bindep.packages(atoms, profiles, explicit=True)))
        common = set(platform.packages)
        packages = _unique(p for _, names in found for p in names if p not in common)
        sources = _unique(origin for origin, names in found if set(names) - common)
        return packages, sources


def _in(version: str, specifier: str) -> bool:
    if not specifier:
        return True
    try:
        return SpecifierSet(specifier).contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
