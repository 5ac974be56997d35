"""Closed sets: every value a status, mode, action or kind can take.

Imported by every floor above (engines, scheduler, planning, jobs, the store), so it
imports nothing but the standard library: no pydantic, no config loader.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

ARCH_ALIASES = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "ppc64el": "ppc64le",  # Debian's name
    "powerpc64le": "ppc64le",
}


class Arch(StrEnum):
    """OCI architecture names; `x86_64`, `aarch64`, `ppc64el` and `powerpc64le` are
    accepted on input."""

    AMD64 = "amd64"
    ARM64 = "arm64"
    PPC64LE = "ppc64le"
    S390X = "s390x"
    RISCV64 = "riscv64"

    @property
    def oci_platform(self) -> str:
        return f"linux/{self.value}"

    @property
    def machine(self) -> str:
        """What `uname -m` prints and what wheel tags use."""
        return {"amd64": "x86_64", "arm64": "aarch64"}.get(self.value, self.value)

    @property
    def triplet(self) -> str:
        """The GNU target triplet Debian names its cross compilers after."""
        return {"ppc64le": "powerpc64le"}.get(self.value, self.machine) + "-linux-gnu"

    @property
    def debian(self) -> str:
        """Debian's name for the arch (debootstrap --arch, dpkg)."""
        return {"ppc64le": "ppc64el"}.get(self.value, self.value)

    @property
    def loader(self) -> str:
        """glibc's dynamic loader for the arch: the program interpreter its psABI fixes,
        the same path on every distro."""
        return {
            "amd64": "/lib64/ld-linux-x86-64.so.2",
            "arm64": "/lib/ld-linux-aarch64.so.1",
            "ppc64le": "/lib64/ld64.so.2",
            "s390x": "/lib/ld64.so.1",
            "riscv64": "/lib/ld-linux-riscv64-lp64d.so.1",
        }[self.value]

    @property
    def big_endian(self) -> bool:
        return self is Arch.S390X

    @classmethod
    def parse(cls, value: str) -> Arch:
        return cls(ARCH_ALIASES.get(value, value))


class Family(StrEnum):
    """The package family decides the template and the package manager."""

    DEB = "deb"
    RPM = "rpm"


class EngineKind(StrEnum):
    """What serves an engine's API: only the engine adapter acts on it."""

    DOCKER = "docker"
    PODMAN = "podman"


class Action(StrEnum):
    UPSTREAM = "upstream"
    BUILD = "build"
    REBUILD = "rebuild"  # cached, but what it links against (or Python) moved
    CACHED = "cached"
    UNAVAILABLE = "unavailable"
    EXCLUDED = "excluded"
    UNSUPPORTED = "unsupported"

    @property
    def builds(self) -> bool:
        return self in (Action.BUILD, Action.REBUILD)


class JobKind(StrEnum):
    WHEEL = "wheel"  # a pinned requirement, published to the index
    BUILD_DEP = "build-dep"  # a build requirement with no wheel, kept in the build-dep cache


class Mode(StrEnum):
    """How a job's code ran: on its own arch, or under QEMU with or without the
    builder's native cross compiler."""

    NATIVE = "native"
    NATIVE_COMPILER = "emulated (native compiler)"
    EMULATED = "emulated"


class JobStatus(StrEnum):
    BUILT = "built"
    SHARED = "shared"  # a pure wheel built once by another platform's job
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    SMOKE_FAILED = "smoke-failed"  # built, but does not load where its runtime packages are

    @property
    def ok(self) -> bool:
        return self in (JobStatus.BUILT, JobStatus.SHARED)


class Category(StrEnum):
    SDIST_DOWNLOAD = "sdist-download"
    BUILD_DEPS = "build-deps"  # a build requirement could not be downloaded
    ENGINE = "engine"
    HASH_MISMATCH = "hash-mismatch"
    BAD_SDIST = "bad-sdist"  # the index named a file we refuse (a path in its name)
    UNRESOLVABLE = "build-deps-unresolvable"  # no version satisfies a build requirement
    DEPENDENCY_FAILED = "build-dep-failed"  # a build-dependency job this needs failed
    METADATA = "metadata"
    PYTHON_VERSION = "python-version"  # the release predates the builder's Python
    MISSING_SYSTEM_LIBRARY = "missing-system-library"
    SYSTEM_PACKAGES = "system-packages"  # a job's extra system packages not installed
    COMPILE = "compile"
    BAD_WHEEL = "bad-wheel"  # no wheel, several, or tags that do not fit the platform
    NO_BUILDER = "no-builder"
    SMOKE = "smoke-test"  # the wheel does not load in a bare base container
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    INTERNAL = "internal"

    @property
    def retryable(self) -> bool:
        return self in (Category.SDIST_DOWNLOAD, Category.BUILD_DEPS, Category.ENGINE)


CATEGORY_TEXT: dict[Category, str] = {
    Category.SDIST_DOWNLOAD: "the sdist could not be downloaded (network)",
    Category.BUILD_DEPS: "a build requirement could not be downloaded (network)",
    Category.ENGINE: "the engine was lost or refused",
    Category.HASH_MISMATCH: "the sdist is not the file the index names",
    Category.BAD_SDIST: "the index names a file we refuse (a path in its name)",
    Category.UNRESOLVABLE: "no version satisfies a build requirement (with the constraints)",
    Category.DEPENDENCY_FAILED: "a build-dependency job this job waits for failed",
    Category.METADATA: "the backend failed computing build requirements or metadata for a "
    "reason that is not a missing system piece (e.g. an old sdist with Cython 3; the Cython "
    "hint is given only when the log names Cython)",
    Category.PYTHON_VERSION: "the release predates the platform's Python: `use_2to3`, "
    "`collections.Mapping`, `distutils` on 3.12, a `SyntaxError` in its own code, or a header "
    "the interpreter no longer has (`longintrepr.h` from old Cython output). Also a smoke test "
    "that fails on the same signs. The hint names the platform's Python and the oldest release "
    "of the project that says it fits it",
    Category.MISSING_SYSTEM_LIBRARY: "a header, pkg-config module, library or `*-config` tool is "
    "missing, in whichever step it was found; the hint names the distro package of every "
    "missing piece the log shows, with the release's own names",
    Category.SYSTEM_PACKAGES: "a job's extra system packages (overrides, bindep) could not be "
    "installed, or the sdist's `bindep.txt` does not parse",
    Category.COMPILE: "any other build failure",
    Category.BAD_WHEEL: "no wheel, several, or tags that do not fit the platform",
    Category.NO_BUILDER: "the platform has no builder image (its image build failed)",
    Category.SMOKE: "status `smoke-failed`: the wheel built but does not load in the platform's "
    "bare base image with its runtime packages; it is not published. The hint follows the "
    "error: a shared object names `overrides: runtime_packages`; a missing standard-library "
    "name is `python-version` instead; anything else points to the log",
    Category.TIMEOUT: "the per-job timeout (`builder.job_timeout`, `overrides: timeout`)",
    Category.CANCELLED: "not started because of a signal, `--fail-fast`, `--deadline`, or an "
    'earlier stage that stopped the night (counted as "not started")',
    Category.INTERNAL: "a bug of orchestrate's in this job (exit 70)",
}
"""What each failure category means, for the reference pages and the HTML report."""


class StoreStatus(StrEnum):
    """What adding one built wheel to the store did."""

    ADDED = "added"
    IDENTICAL = "identical"  # the same bytes were there: nothing written
    MISMATCH = "mismatch"  # other bytes under that name: kept, reported (exit 4)
    REPLACED = "replaced"  # other bytes, overwritten because --replace was asked
    REBUILT = "rebuilt"  # an ABI rebuild with new bytes, stored under the next build tag


class PublishStatus(StrEnum):
    PUBLISHED = "published"
    UNCHANGED = "unchanged"
    FAILED = "failed"


class ShardStatus(StrEnum):
    """A shard of the night, as the merge found it."""

    MERGED = "merged"
    STALE = "stale"  # from an older night's plan, merged because --allow-stale
    MISSING = "missing"  # the plan wanted it; no bundle came: its platforms stay as they were


class ImageStatus(StrEnum):
    BUILT = "built"
    FRESH = "fresh"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, kw_only=True)
class Check:
    """One line of `doctor`: what was checked, whether it is fine, and what to do."""

    subject: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True
