"""What the images stage hands the wheels stage: typed facts, not files in a cache.

A builder's facts are its tag (for people and pulls), the image ID on each
engine that holds it, and what its probe measured inside it: the Python
tags pip accepts there, and the glibc version.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core.files import write_atomic


@dataclass(kw_only=True, frozen=True)
class NativeCompiler:
    """The builder's native cross toolchain, as its probe found it at build time."""

    host: str  # the machine it runs on (`uname -m`), e.g. x86_64
    gcc: str  # its GCC version
    builder_gcc: str  # the builder's own GCC version
    usable: bool  # it compiled a test file, and the versions agree in major.minor
    reason: str = ""  # why it is not usable

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


ABSENT = "-"  # the version of a package not installed on one side of a refresh


@dataclass(kw_only=True, frozen=True)
class PackageChange:
    """One package a refresh in place changed: `old` or `new` is `-` when it was
    installed or removed."""

    package: str
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.package} {self.old} -> {self.new}"

    def as_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


def parse_changes(text: str | bytes) -> tuple[PackageChange, ...]:
    """The refresh's `package old new` lines (a join of `dpkg-query -W` before and after)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    fields = (line.split() for line in text.splitlines())
    return tuple(PackageChange(package=f[0], old=f[1], new=f[2]) for f in fields if len(f) == 3)


def parse_native_compiler(text: str | bytes) -> NativeCompiler | None:
    """The probe's `native_compiler` entry; None for a builder without a toolchain."""
    entry = json.loads(text).get("native_compiler")
    if not isinstance(entry, dict):
        return None
    return NativeCompiler(
        host=str(entry.get("host", "")),
        gcc=str(entry.get("gcc", "")),
        builder_gcc=str(entry.get("builder_gcc", "")),
        usable=entry.get("usable") is True,
        reason=str(entry.get("reason", "")),
    )


@dataclass(frozen=True)
class RuntimeFacts:
    """What wheels built in an image link against, from the probe's --runtime:
    each Python's full version, the installed packages with versions, and, for each
    shared library the loader's cache knows, its path and owning package."""

    family: str
    python: Mapping[str, str]  # "3.11" -> "3.11.2"
    packages: Mapping[str, str]  # installed package -> version
    libraries: Mapping[str, tuple[str, str]]  # soname -> (path, package or "")

    def as_dict(self) -> dict[str, object]:
        return {
            "family": self.family,
            "python": dict(self.python),
            "packages": dict(self.packages),
            "libraries": {k: {"path": p, "package": o} for k, (p, o) in self.libraries.items()},
        }


def parse_runtime(text: str | bytes) -> RuntimeFacts:
    """/etc/orchestrate/runtime.json; ValueError if it is not one."""
    return runtime_of(json.loads(text))


def runtime_of(data: object) -> RuntimeFacts:
    """Runtime facts from their JSON form (the image's file, or the probe cache's copy)."""
    if not isinstance(data, dict) or not isinstance(data.get("libraries"), dict):
        raise ValueError("not a runtime probe")
    libraries = {
        str(soname): (str(entry.get("path", "")), str(entry.get("package", "")))
        for soname, entry in data["libraries"].items()
        if isinstance(entry, dict)
    }
    return RuntimeFacts(
        str(data.get("family", "")),
        {str(k): str(v) for k, v in dict(data.get("python", {})).items()},
        {str(k): str(v) for k, v in dict(data.get("packages", {})).items()},
        libraries,
    )


@dataclass(kw_only=True, frozen=True)
class ImageFacts:
    platform: str
    ref: str  # registry/repository:platform
    ids: Mapping[str, str]  # engine name -> image ID
    tags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # python -> sys_tags()
    glibc: str = ""
    pull_ref: str = ""  # repo@sha256:... when the registry has this image
    native_compiler: NativeCompiler | None = None
    runtime: RuntimeFacts | None = None  # None: made before runtime facts were recorded


def parse_probe(text: str | bytes) -> tuple[dict[str, tuple[str, ...]], str]:
    """The builder's /etc/orchestrate/probe.json: tags per Python, and glibc."""
    data = json.loads(text)
    tags = {str(k): tuple(str(t) for t in v) for k, v in dict(data.get("tags", {})).items()}
    return tags, str(data.get("glibc", ""))


class ProbeCache:
    """The last probe of each platform's builder, for `plan` runs that build no image."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def read(self, platform: str) -> dict[str, tuple[str, ...]]:
        try:
            tags, _ = parse_probe((self.folder / f"{platform}.json").read_text())
        except (OSError, ValueError, AttributeError):
            return {}
        return tags

    def runtime(self, platform: str) -> tuple[RuntimeFacts, str] | None:
        """The builder's runtime facts and its image ID, as last probed."""
        try:
            data = json.loads((self.folder / f"{platform}.json").read_text())
            return runtime_of(data["runtime"]), str(data.get("image", ""))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def write(self, platform: str, image_id: str, probe: Mapping[str, object]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{platform}.json"
        write_atomic(path, json.dumps({**probe, "image": image_id}, indent=1))
