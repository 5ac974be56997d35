"""Which wheel tags a platform's Python accepts, best first.

When a builder image's probe has run, its `packaging.tags.sys_tags()` output
is the truth. Before that, the tags are derived from the matrix: CPython
`X.Y` on glibc `2.N` for an arch accepts `manylinux_2_N` down to the oldest
manylinux of that arch (pip's `--platform manylinux_2_36_aarch64` does not
expand to the lower versions: we do), the legacy aliases, abi3 for older
minors, and `none-any`. musllinux never fits a glibc platform.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from packaging.tags import Tag, compatible_tags, cpython_tags

from orchestrator.model import Arch

# The oldest glibc each arch has a manylinux tag for (PEP 600; auditwheel's policies):
# manylinux1 (2.5) on x86_64; manylinux2014 (2.17) for aarch64, ppc64le and s390x;
# riscv64 from manylinux_2_31 on.
_OLDEST_GLIBC = {
    Arch.AMD64: 5,
    Arch.ARM64: 17,
    Arch.PPC64LE: 17,
    Arch.S390X: 17,
    Arch.RISCV64: 31,
}
_LEGACY = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


def platform_tags(arch: Arch, glibc: str) -> list[str]:
    """Platform tags, most specific first, as pip orders them."""
    machine = arch.machine
    major, minor = (int(x) for x in glibc.split("."))
    out = []
    for version in range(minor, _OLDEST_GLIBC[arch] - 1, -1):
        out.append(f"manylinux_{major}_{version}_{machine}")
        legacy = _LEGACY.get((major, version))
        if legacy:
            out.append(f"{legacy}_{machine}")
    out.append(f"linux_{machine}")
    return out


def derived_tags(python: str, arch: Arch, glibc: str) -> list[Tag]:
    """What CPython `python` on this arch and glibc accepts, best first."""
    version = tuple(int(x) for x in python.split("."))
    platforms = platform_tags(arch, glibc)
    interpreter = f"cp{version[0]}{version[1]}"
    return [
        *cpython_tags(version, abis=[interpreter], platforms=platforms),
        *compatible_tags(version, interpreter=interpreter, platforms=platforms),
    ]


@dataclass(frozen=True)
class TagSet:
    """Ordered, hashable set of accepted tags: lower rank is better."""

    python: str
    source: str  # "derived" or "probe"
    ranks: dict[Tag, int]

    @classmethod
    def of(cls, python: str, tags: Iterable[Tag], source: str) -> TagSet:
        ranks: dict[Tag, int] = {}
        for tag in tags:
            ranks.setdefault(tag, len(ranks))
        return cls(python, source, ranks)

    def rank(self, tags: Iterable[Tag]) -> int | None:
        """The best rank among `tags`, or None when none is accepted."""
        found = [self.ranks[t] for t in tags if t in self.ranks]
        return min(found) if found else None

    def accepts(self, tags: Iterable[Tag]) -> bool:
        return self.rank(tags) is not None

    def __hash__(self) -> int:
        return hash((self.python, self.source, len(self.ranks)))


def tags_from_probe(python: str, lines: Sequence[str]) -> TagSet:
    """Tags as printed by the builder's probe, one `interp-abi-platform` per line."""
    parsed = []
    for line in lines:
        interpreter, abi, plat = line.strip().split("-")
        parsed.append(Tag(interpreter, abi, plat))
    return TagSet.of(python, parsed, "probe")
