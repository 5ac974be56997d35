"""What a built wheel needs at run time, and whether a builder still matches it.

The ELF side is pyelftools (no `ldd`, which would run the loader): each ELF
member's DT_NEEDED and DT_SONAME entries and its GNU version needs. A needed
library is *external* unless the wheel carries it (by soname or file name) or
the interpreter provides it (libpython). Each external soname is resolved with
the builder's runtime facts (its loader cache, the owning package and that
package's version), probed once per image, so nothing runs per wheel.

The C library's own package (libc6, glibc) is listed with the libraries but
left out of `packages`, the ABI key: glibc keeps old symbols by versioning, so
a newer glibc never breaks a wheel, and what a wheel needs from it is the
newest GLIBC_x.y symbol version, recorded as `glibc`.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

from orchestrator.images.facts import RuntimeFacts

ELF_MAGIC = b"\x7fELF"
GLIBC_VERSION = re.compile(r"^GLIBC_(\d+)\.(\d+)(?:\.(\d+))?$")
C_LIBRARY = "libc.so.6"  # whose owning package is the C library's
INTERPRETER = re.compile(r"^libpython\d")
DATA_DIR = re.compile(r"^[^/]+\.data/(?:purelib|platlib)/")


@dataclass(kw_only=True, frozen=True)
class ElfFacts:
    """What the wheel's ELF files say: needed sonames (and which member needs each),
    the sonames and file names it provides, the newest glibc symbol version, and the
    importable extension modules and top-level names."""

    needed: Mapping[str, tuple[str, ...]]
    provided: frozenset[str]
    glibc: str
    extensions: tuple[str, ...]
    top_level: tuple[str, ...]
    unreadable: tuple[str, ...] = ()

    @property
    def external(self) -> list[str]:
        return sorted(n for n in self.needed if n not in self.provided and not INTERPRETER.match(n))


def analyse(wheel: bytes | str) -> ElfFacts:
    """Read every ELF member of the wheel (a path or its bytes)."""
    source = io.BytesIO(wheel) if isinstance(wheel, bytes) else wheel
    needed: dict[str, list[str]] = {}
    provided: set[str] = set()
    versions: set[tuple[int, ...]] = set()
    extensions, unreadable = [], []
    with zipfile.ZipFile(source) as archive:
        names = archive.namelist()
        for name in names:
            if name.endswith("/"):
                continue
            with archive.open(name) as member:
                if member.read(4) != ELF_MAGIC:
                    continue
            provided.add(PurePosixPath(name).name)
            try:
                soname, wants, glibc = _elf(archive.read(name))
            except ELFError:
                unreadable.append(name)
                continue
            provided.update([soname] if soname else [])
            versions.update(glibc)
            for lib in wants:
                needed.setdefault(lib, []).append(name)
            module = extension_module(name)
            if module:
                extensions.append(module)
    newest = max(versions) if versions else ()
    return ElfFacts(
        needed={k: tuple(v) for k, v in sorted(needed.items())},
        provided=frozenset(provided),
        glibc=".".join(map(str, newest)),
        extensions=tuple(sorted(extensions)),
        top_level=top_level(names),
        unreadable=tuple(unreadable),
    )


def _elf(data: bytes) -> tuple[str, list[str], set[tuple[int, ...]]]:
    elf = ELFFile(io.BytesIO(data))
    soname, wants, glibc = "", [], set()
    for section in elf.iter_sections():
        if isinstance(section, DynamicSection):
            for tag in section.iter_tags():
                # pyelftools sets `needed` and `soname` on these tags (untyped).
                if tag.entry.d_tag == "DT_NEEDED":
                    wants.append(str(getattr(tag, "needed", "")))
                elif tag.entry.d_tag == "DT_SONAME":
                    soname = str(getattr(tag, "soname", ""))
        elif isinstance(section, GNUVerNeedSection):
            for _verneed, auxiliaries in section.iter_versions():
                for aux in auxiliaries:
                    found = GLIBC_VERSION.fullmatch(str(aux.name))
                    if found:
                        glibc.add(tuple(int(p) for p in found.groups() if p is not None))
    return soname, wants, glibc


def extension_module(member: str) -> str | None:
    """`pkg/_ext.cpython-311-x86_64-linux-gnu.so` -> `pkg._ext`; None for a library
    that is not importable (`pkg.libs/libfoo.so.1`, a folder that is no identifier)."""
    path = DATA_DIR.sub("", member)
    if not path.endswith(".so"):
        return None
    *folders, filename = path.split("/")
    parts = [*folders, filename.split(".", 1)[0]]
    return ".".join(parts) if all(p.isidentifier() for p in parts) else None


def top_level(names: list[str]) -> tuple[str, ...]:
    """The importable top-level names of the wheel: packages, modules, extensions."""
    out = set()
    for member in names:
        path = DATA_DIR.sub("", member)
        first, _, rest = path.partition("/")
        if first.endswith((".dist-info", ".data")):
            continue
        if rest:  # a folder: a package (or a namespace) when it is an identifier
            candidate = first
        elif first.endswith(".py"):
            candidate = first[:-3]
        elif first.endswith(".so"):
            candidate = first.split(".", 1)[0]
        else:
            continue
        if candidate.isidentifier() and candidate != "__pycache__":  # bytecode, not a module
            out.add(candidate)
    return tuple(sorted(out))


@dataclass(kw_only=True, frozen=True)
class Runtime:
    """The runtime record of one built wheel, as stored, reported and published."""

    python: str  # the builder's full Python version
    glibc: str  # the newest GLIBC_x.y symbol version it uses ("" if none)
    libraries: tuple[dict[str, str], ...]  # soname, package, version (external ones)
    packages: Mapping[str, str]  # package -> version: the ABI key, without the C library
    unresolved: tuple[str, ...] = ()  # needed, but no package in the builder provides it
    extensions: tuple[str, ...] = ()
    top_level: tuple[str, ...] = ()
    job_packages: tuple[str, ...] = ()  # of `packages`, those the job's system step added
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, object]:
        return {
            "python": self.python,
            "glibc": self.glibc,
            "libraries": [dict(lib) for lib in self.libraries],
            "packages": dict(self.packages),
            "unresolved": list(self.unresolved),
            "extensions": list(self.extensions),
            "top_level": list(self.top_level),
            "job_packages": list(self.job_packages),
            "notes": list(self.notes),
        }


def unresolved(elf: ElfFacts, python: str = "") -> Runtime:
    """A wheel's record from its ELF files alone, no package resolved: what a smoke
    test needs when the packages to install are given (reproduce, tests)."""
    return Runtime(
        python=python,
        glibc=elf.glibc,
        libraries=(),
        packages={},
        unresolved=(),
        extensions=elf.extensions,
        top_level=elf.top_level,
    )


def resolve(
    elf: ElfFacts, image: RuntimeFacts, python: str, builder: RuntimeFacts | None = None
) -> Runtime:
    """Each external soname to the package that provides it in `image` (the job's
    image: the builder, or the builder plus its system packages) and its version."""
    libc = image.libraries.get(C_LIBRARY, ("", ""))[1]
    libraries, packages, unresolved = [], {}, []
    for soname in elf.external:
        _path, package = image.libraries.get(soname, ("", ""))
        version = image.packages.get(package, "") if package else ""
        if not package:
            unresolved.append(soname)
            continue
        libraries.append({"soname": soname, "package": package, "version": version})
        if package != libc:
            packages[package] = version
    added = [p for p in packages if builder is not None and p not in builder.packages]
    notes = [f"{m}: not an ELF file pyelftools can read" for m in elf.unreadable]
    return Runtime(
        python=image.python.get(python, ""),
        glibc=elf.glibc,
        libraries=tuple(libraries),
        packages=dict(sorted(packages.items())),
        unresolved=tuple(unresolved),
        extensions=elf.extensions,
        top_level=elf.top_level,
        job_packages=tuple(sorted(added)),
        notes=tuple(notes),
    )


def abi_changes(
    recorded: Mapping[str, object], builder: RuntimeFacts, python: str, *, same_image: bool
) -> list[str]:
    """Why a cached wheel no longer matches the builder: each runtime package whose
    version moved ("libpq5 15.18-0+deb12u1 → 15.20-0+deb12u1"), a Python that moved,
    and packages only a system step installed when the builder itself changed (their
    version is known only after building again). [] when it still matches."""
    out = []
    was = str(recorded.get("python", ""))
    now = builder.python.get(python, "")
    if was and now and was != now:
        out.append(f"python {was} → {now}")
    packages = recorded.get("packages")
    job_packages = recorded.get("job_packages")
    from_step = set(job_packages) if isinstance(job_packages, list) else set()
    for package, version in sorted(dict(packages).items() if isinstance(packages, dict) else []):
        current = builder.packages.get(package)
        if current is not None and current != version:
            out.append(f"{package} {version} → {current}")
        elif current is None and package in from_step and not same_image:
            out.append(
                f"{package} {version} came from the job's system packages and the builder changed"
            )
        elif current is None and package not in from_step:
            out.append(f"{package} {version} → not installed")
    return out
