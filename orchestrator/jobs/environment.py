"""A job's build environment made on the host: no pip, no venv under emulation.

The fetch phase used to start pip in the builder (under QEMU for an emulated
platform) to make /job/env and install the build requirements. Here the
host does it: the sdist's members go into /job/build as the builder's own
tarfile would write them, and the requirement wheels are unpacked into a
venv laid out like `python -m venv` makes it in that builder (its base
interpreter read from the builder's tool venv, without starting it), with
the `installer` library and the target's paths. Which wheels: the versions
an earlier run resolved, when they cover the requirements under the target's
markers, or else what pip resolved in a native container (`resolve_target`
gives it the target's tags). Anything unusual returns None: the job then
takes the fetch phase in its own builder, as before.
"""

from __future__ import annotations

import functools
import io
import sys
import tarfile
import tempfile
import threading
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile
from packaging.markers import InvalidMarker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from orchestrator.core.files import archived_file
from orchestrator.engines import Engine, RunRequest
from orchestrator.model import Arch
from orchestrator.plan.tags import TagSet

ENV = "/job/env"
BUILD_UID = 1000  # the builder's build user (images/_common.j2)
# Named explicitly so that no image can run a job as root by accident.
BUILD_USER = f"{BUILD_UID}:{BUILD_UID}"


@dataclass(frozen=True, kw_only=True)
class Interpreter:
    """The builder's base interpreter, as its tool venv's pyvenv.cfg names it."""

    home: str  # e.g. /usr/bin
    version: str  # e.g. 3.11.2
    executable: str  # e.g. /usr/bin/python3.11

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


def parse_pyvenv(text: str) -> Interpreter | None:
    fields = {
        k.strip(): v.strip() for k, _, v in (line.partition("=") for line in text.splitlines())
    }
    home, version = fields.get("home", ""), fields.get("version", "")
    executable = fields.get("executable") or f"{home}/python{'.'.join(version.split('.')[:2])}"
    if not home.startswith("/") or not version or not executable.startswith("/"):
        return None
    return Interpreter(home=home, version=version, executable=executable)


def read_interpreter(engine: Engine, image: str, arch: Arch, python: str) -> Interpreter | None:
    """The base interpreter of the builder's tool venv for `python`, from a container
    that never starts."""
    request = RunRequest(image=image, command=("true",), platform=arch, network=False)
    with engine.container(request) as box:
        data = archived_file(box.get(f"/opt/orchestrate/py{python}/pyvenv.cfg"))
    return parse_pyvenv((data or b"").decode(errors="replace"))


class Interpreters:
    """Each builder's interpreter, read once per run (an image ID names fixed contents)."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str, str], Interpreter | None] = {}
        self._lock = threading.Lock()

    def get(self, engine: Engine, image: str, arch: Arch, python: str) -> Interpreter | None:
        key = (engine.name, image, python)
        with self._lock:
            if key not in self._known:
                self._known[key] = read_interpreter(engine, image, arch, python)
            return self._known[key]


@dataclass(frozen=True, kw_only=True)
class Dist:
    """One requirement wheel: where it is, its name and version, what it requires."""

    path: Path
    name: NormalizedName
    version: Version
    requires: tuple[str, ...]

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


def read_dist(path: Path) -> Dist | None:
    """A wheel's name, version and Requires-Dist; None if it is not a readable wheel."""
    try:
        name, version, _build, _tags = parse_wheel_filename(path.name)
        with zipfile.ZipFile(path) as archive:
            metadata = next(
                n
                for n in archive.namelist()
                if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
            )
            headers = HeaderParser().parsestr(archive.read(metadata).decode(errors="replace"))
    except (InvalidWheelFilename, OSError, zipfile.BadZipFile, StopIteration, KeyError):
        return None
    return Dist(
        path=path,
        name=name,
        version=version,
        requires=tuple(headers.get_all("Requires-Dist") or ()),
    )


def best_dists(wheels: Sequence[Path], tags: TagSet) -> dict[NormalizedName, list[Dist]]:
    """The usable wheels by name, each version's best-ranked file for these tags."""
    ranked: dict[tuple[NormalizedName, Version], tuple[int, Path]] = {}
    for wheel in wheels:
        try:
            name, version, _build, wheel_tags = parse_wheel_filename(wheel.name)
        except (InvalidWheelFilename, InvalidVersion):
            continue
        rank = tags.rank(wheel_tags)
        if rank is not None and (
            (name, version) not in ranked or rank < ranked[(name, version)][0]
        ):
            ranked[(name, version)] = (rank, wheel)
    out: dict[NormalizedName, list[Dist]] = {}
    for _rank, path in sorted(ranked.values()):
        dist = read_dist(path)
        if dist is not None:
            out.setdefault(dist.name, []).append(dist)
    return out


def closure(
    requirements: Sequence[str],
    pool: Mapping[NormalizedName, Sequence[Dist]],
    env: Mapping[str, str],
    constraints: Mapping[NormalizedName, SpecifierSet],
) -> list[Dist] | str:
    """The wheels that `requirements` need, all from `pool` (no choice is made: each
    name must have exactly one version there that fits), markers evaluated for the
    target; or why the pool does not cover them."""
    chosen: dict[NormalizedName, Dist] = {}
    extras: dict[NormalizedName, set[str]] = {}
    todo: list[tuple[str, str]] = [(r, "") for r in requirements]
    while todo:
        text, extra = todo.pop()
        try:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({**env, "extra": extra}):
                continue
        except (InvalidRequirement, InvalidMarker) as exc:
            return f"{text!r}: {exc}"
        name = canonicalize_name(req.name)
        spec = req.specifier & constraints.get(name, SpecifierSet())
        fits = [d for d in pool.get(name, ()) if spec.contains(d.version, prereleases=True)]
        if len(fits) != 1 or chosen.get(name, fits[0]) != fits[0]:
            return f"{req} has {len(fits)} fitting wheels at hand"
        new = ({""} if name not in chosen else set()) | (set(req.extras) - extras.get(name, set()))
        chosen[name] = fits[0]
        extras.setdefault(name, set()).update(new)
        todo.extend((dep, e) for e in new for dep in fits[0].requires)
    return sorted(chosen.values(), key=lambda d: d.name)


def venv_members(interp: Interpreter, python: str) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """What `python -m venv --without-pip /job/env` makes in the builder, less the
    activate scripts: pyvenv.cfg, the interpreter links, lib64, the folders."""
    exe = PurePosixPath(interp.executable).name
    cfg = (
        f"home = {interp.home}\ninclude-system-site-packages = false\n"
        f"version = {interp.version}\nexecutable = {interp.executable}\n"
        f"command = /opt/orchestrate/py{python}/bin/python -m venv --without-pip {ENV}\n"
    ).encode()
    out: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for folder in ("bin", f"include/python{python}", f"lib/python{python}/site-packages"):
        out.append((_info(f"job/env/{folder}", tarfile.DIRTYPE), None))
    links = {f"bin/{exe}": interp.executable, "bin/python": exe, "bin/python3": exe, "lib64": "lib"}
    for name, target in links.items():
        info = _info(f"job/env/{name}", tarfile.SYMTYPE)
        info.linkname = target
        out.append((info, None))
    info = _info("job/env/pyvenv.cfg", tarfile.REGTYPE)
    info.size = len(cfg)
    out.append((info, cfg))
    return out


def _info(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644 if kind == tarfile.REGTYPE else 0o777
    return info


def installed_members(
    dists: Sequence[Dist], python: str
) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """`_installed` of these wheels (a night's jobs mostly share one set: made once)."""
    return list(_installed(tuple(d.path for d in dists), tuple(d.name for d in dists), python))


@functools.lru_cache(maxsize=16)
def _installed(
    paths: tuple[Path, ...], names: tuple[str, ...], python: str
) -> tuple[tuple[tarfile.TarInfo, bytes | None], ...]:
    """The wheels unpacked into the venv by `installer`, scripts pointing at its Python.
    Byte-compiled as pip does, when this interpreter's bytecode is the target's (same
    major.minor): else every build would compile its backend's modules, under QEMU."""
    out: list[tuple[tarfile.TarInfo, bytes | None]] = []
    levels = (0,) if python == f"{sys.version_info[0]}.{sys.version_info[1]}" else ()
    with tempfile.TemporaryDirectory(prefix="orchestrate-env-") as tmp:
        for path, name in zip(paths, names, strict=True):
            site = f"{ENV}/lib/python{python}/site-packages"
            scheme = {
                "purelib": site,
                "platlib": site,
                "scripts": f"{ENV}/bin",
                "data": ENV,
                "headers": f"{ENV}/include/site/python{python}/{name}",
            }
            target = SchemeDictionaryDestination(
                scheme,
                interpreter=f"{ENV}/bin/python",
                script_kind="posix",
                destdir=tmp,
                bytecode_optimization_levels=levels,
            )
            with WheelFile.open(path) as source:
                install(source, target, {"INSTALLER": b"orchestrate\n"})
        root = Path(tmp)
        for file in sorted(root.rglob("*")):
            name = file.relative_to(root).as_posix()
            if file.is_dir():
                out.append((_info(name, tarfile.DIRTYPE), None))
                continue
            data, facts = file.read_bytes(), file.stat()
            info = _info(name, tarfile.REGTYPE)
            # The mtime a .pyc records of its source: kept, so the .pyc stays valid.
            info.mode, info.size, info.mtime = facts.st_mode & 0o777, len(data), int(facts.st_mtime)
            out.append((info, data))
    return tuple(out)


def job_tar(members: Sequence[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """/job as one tar, every member the build user's, every parent folder present."""
    buffer = io.BytesIO()
    made: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            parts = info.name.split("/")
            for depth in range(1, len(parts)):
                parent = "/".join(parts[:depth])
                if parent not in made:
                    made.add(parent)
                    tar.addfile(_owned(_info(parent, tarfile.DIRTYPE)))
            if info.isdir():
                if info.name in made:
                    continue
                made.add(info.name)
            tar.addfile(_owned(info), io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = BUILD_UID
    info.uname = info.gname = ""
    return info


def resolve_target(tags: TagSet, interp: Interpreter) -> dict[str, object]:
    """pip's options for a foreign platform (`--platform` ranks in the order given)."""
    platforms = list(dict.fromkeys(t.platform for t in tags.ranks if t.platform != "any"))
    abis = list(dict.fromkeys(t.abi for t in tags.ranks))
    interpreters = [t.interpreter for t in tags.ranks if t.interpreter.startswith(("cp", "pp"))]
    implementation = interpreters[0][:2] if interpreters else "cp"
    return {
        "platforms": platforms,
        "abis": abis,
        "implementation": implementation,
        "python_version": interp.version,
    }
