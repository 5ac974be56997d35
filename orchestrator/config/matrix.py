"""Expand the matrix into platforms, and select a subset by glob."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from orchestrator.config import Bootstrap, Matrix
from orchestrator.core.errors import SelectorError
from orchestrator.model import Arch, Family


@dataclass(frozen=True)
class Platform:
    """One distro release on one arch: the unit of images, plans and indexes."""

    distro: str
    release: str
    arch: Arch
    family: Family
    base: str | Bootstrap
    python: tuple[str, ...]
    glibc: str
    packages: tuple[str, ...]
    apt_sources: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.distro}-{self.release}-{self.arch.value}"

    @property
    def release_name(self) -> str:
        """The multi-arch name shared by every arch of this release."""
        return f"{self.distro}-{self.release}"

    def as_dict(self) -> dict[str, object]:
        base = self.base if isinstance(self.base, str) else self.base.model_dump()
        return {
            "name": self.name,
            "distro": self.distro,
            "release": self.release,
            "arch": self.arch.value,
            "family": self.family.value,
            "python": list(self.python),
            "glibc": self.glibc,
            "base": base,
        }


def expand(matrix: Matrix) -> tuple[Platform, ...]:
    """Every (distro release, arch) pair, in file order."""
    out = []
    for distro in matrix.distros:
        packages = (*matrix.packages.get(distro.family, ()), *distro.packages)
        for arch in distro.arches:
            out.append(
                Platform(
                    distro=distro.name,
                    release=distro.release,
                    arch=arch,
                    family=distro.family,
                    base=distro.base,
                    python=distro.python,
                    glibc=distro.glibc,
                    packages=tuple(dict.fromkeys(packages)),
                    apt_sources=distro.apt_sources,
                )
            )
    return tuple(out)


def select(platforms: Sequence[Platform], patterns: Iterable[str]) -> tuple[Platform, ...]:
    """Platforms matching any glob; a pattern that matches nothing is an error."""
    patterns = tuple(patterns)
    if not patterns:
        return tuple(platforms)
    names = [p.name for p in platforms]
    for pattern in patterns:
        if not fnmatch.filter(names, pattern):
            raise SelectorError(
                f"--platform {pattern!r} matches no platform",
                hint=f"known platforms: {', '.join(names)}",
            )
    return tuple(p for p in platforms if any(fnmatch.fnmatchcase(p.name, x) for x in patterns))
