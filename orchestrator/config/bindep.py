"""Pure: the system packages a bindep.txt asks for on one platform.

bindep (OpenStack's format and library) evaluates `[platform:dpkg compile]`
style selectors against the machine it runs on. Here the platform is a
builder, not this host, so its profile atoms are made from the matrix's
distro, release and family, the way bindep's own `platform_profiles()` names
them on that distro (`platform:debian`, `platform:debian-bookworm`,
`platform:debian-12`, `platform:dpkg`; `platform:centos-9`, `platform:redhat`,
`platform:rpm`), and bindep's parser and rule evaluation do the rest.

A leaf module: the matrix loader checks a bindep file with it, and the job
graph evaluates one per platform.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# Release names to the version numbers os-release gives (bindep's `releasebits`).
RELEASE_VERSIONS = {
    ("debian", "bullseye"): "11",
    ("debian", "bookworm"): "12",
    ("debian", "trixie"): "13",
    ("ubuntu", "focal"): "20.04",
    ("ubuntu", "jammy"): "22.04",
    ("ubuntu", "noble"): "24.04",
    ("centos", "stream9"): "9",
    ("centos", "stream10"): "10",
    ("rocky", "9"): "9",
    ("almalinux", "9"): "9",
}


DEFAULT_PROFILES = ("default", "compile")


MAX_BINDEP = 64 * 1024  # bytes: a bindep.txt is a few dozen lines


PACKAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class BindepError(ValueError):
    """A bindep.txt that does not parse, or names a package no package manager has."""


@dataclass(frozen=True)
class Bindep:
    """A parsed bindep.txt; `origin` names where it came from (a path, or the sdist)."""

    origin: str
    depends: Any = field(compare=False, repr=False)  # bindep.depends.Depends

    def packages(
        self, atoms: tuple[str, ...], profiles: tuple[str, ...], *, explicit: bool = False
    ) -> tuple[str, ...]:
        """The packages whose selectors the platform and profiles satisfy, in file order
        (version constraints on a line are bindep's `check`, not ours: names only).
        With `explicit`, only lines that name one of `profiles` themselves (bindep
        counts a line without any profile in every profile)."""
        rules = self.depends.active_rules([*atoms, *profiles])
        if explicit:
            rules = [r for r in rules if _named_profiles(r) & set(profiles)]
        names = tuple(dict.fromkeys(str(rule[0]) for rule in rules))
        bad = [n for n in names if not PACKAGE_NAME.fullmatch(n)]
        if bad:
            raise BindepError(f"{self.origin}: {bad[0]!r} is not a package name")
        return names


def _named_profiles(rule: Any) -> set[str]:
    """The user profiles a bindep rule selects positively (`[compile]`, `[(compile)]`)."""
    named: set[str] = set()
    for group in rule[1]:
        for sense, profile in group if isinstance(group, list) else [group]:
            if sense and not profile.startswith("platform:"):
                named.add(profile)
    return named


def parse_bindep(text: str, origin: str) -> Bindep:
    if len(text.encode()) > MAX_BINDEP:
        raise BindepError(f"{origin}: larger than {MAX_BINDEP // 1024} KiB; not a bindep file")
    # bindep builds its parser on import (a third of a second): only when one is used.
    from bindep.depends import Depends, DependsException

    try:
        return Bindep(origin, Depends(text))
    except DependsException as exc:
        where = " ".join(str(exc).split())
        raise BindepError(f"{origin}: not a bindep file: {where[:300]}") from None


def platform_atoms(distro: str, release: str, family: str) -> tuple[str, ...]:
    """bindep's profile atoms for a builder of `distro` `release` (family deb or rpm)."""
    atoms = {distro, f"{distro}-{release}", "base-py3"}
    version = RELEASE_VERSIONS.get((distro, release), "")
    parts = version.split(".") if version else []
    atoms.update(f"{distro}-{'.'.join(parts[: i + 1])}" for i in range(len(parts)))
    if family == "deb":
        atoms.add("dpkg")
    else:
        atoms.update(("rpm", "redhat"))  # bindep's family alias for non-SUSE rpm distros
    return tuple(f"platform:{a}" for a in sorted(atoms))
