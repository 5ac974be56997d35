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

import ast
import configparser
import functools
import io
import sys
import tarfile
import tempfile
import threading
import tomllib
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
LEGACY = ("setuptools >= 40.8.0",)  # `build`'s default for a project without the table


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


def static_requires(pyproject: bytes | None) -> list[str] | None:
    """`build-system.requires` as `build` reads it; None where `build` would complain
    (the fetch phase in the builder then says so in its own words)."""
    if pyproject is None:
        return list(LEGACY)
    try:
        table = tomllib.loads(pyproject.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    system = table.get("build-system")
    if system is None:
        return list(LEGACY)
    requires = system.get("requires") if isinstance(system, dict) else None
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        return None
    return sorted(requires)


# Backends that run setup.py and ask for its `setup_requires` as dynamic requirements
# (None: no build-backend named, which `build` treats as setuptools' legacy one).
SETUPTOOLS_BACKENDS = (None, "setuptools.build_meta", "setuptools.build_meta:__legacy__")
MAX_SETUP_SCRIPT = 256 * 1024  # bytes of setup.py or setup.cfg read for setup_requires


def setup_requires(source: UnpackedSdist) -> list[str]:
    """The `setup_requires` setuptools' backend will ask for once it runs setup.py: a
    literal list in setup.py's call, or setup.cfg's [options]. Known before the build,
    they go into its first environment instead of a second round (pbr projects do
    this); anything not literal, or not a valid requirement, is left to that round."""
    if _backend(source.pyproject) not in SETUPTOOLS_BACKENDS:
        return []
    found = [
        *_script_setup_requires(source.member("setup.py")),
        *_cfg_setup_requires(source.member("setup.cfg")),
    ]
    try:
        return list(dict.fromkeys(str(Requirement(r)) for r in found))
    except InvalidRequirement:
        return []


def _backend(pyproject: bytes | None) -> str | None:
    """build-backend as named; None when none is; "" when the file is unreadable."""
    if pyproject is None:
        return None
    try:
        system = tomllib.loads(pyproject.decode("utf-8")).get("build-system")
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return ""
    backend = system.get("build-backend") if isinstance(system, dict) else None
    return backend if isinstance(backend, str) or backend is None else ""


def _script_setup_requires(script: bytes | None) -> list[str]:
    if script is None or len(script) > MAX_SETUP_SCRIPT:
        return []
    try:  # deep nesting or NUL bytes: nothing predicted, the build round decides
        tree = ast.parse(script)
        values = [
            ast.literal_eval(kw.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            for kw in node.keywords
            if kw.arg == "setup_requires"
        ]
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        return []
    return [r for value in values for r in _listed(value)]


def _cfg_setup_requires(cfg: bytes | None) -> list[str]:
    if cfg is None or len(cfg) > MAX_SETUP_SCRIPT:
        return []
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(cfg.decode("utf-8"))
        value = parser.get("options", "setup_requires", fallback="")
    except (UnicodeDecodeError, configparser.Error):
        return []
    return _listed(value)


def _listed(value: object) -> list[str]:
    """setuptools takes a list of strings or one string of lines."""
    if isinstance(value, str):
        value = value.splitlines()
    if not isinstance(value, list | tuple) or not all(isinstance(r, str) for r in value):
        return []
    return [r.strip() for r in value if r.strip() and not r.strip().startswith("#")]


@dataclass(frozen=True, kw_only=True)
class UnpackedSdist:
    """An sdist as the builder's fetch phase unpacked it: its members under job/build,
    the project's folder there, and its pyproject.toml."""

    members: tuple[tuple[tarfile.TarInfo, bytes | None], ...]
    source: str  # relative to /job, e.g. build/simplegeneric-0.8.1
    pyproject: bytes | None

    def member(self, name: str) -> bytes | None:
        """A file of the project's folder, e.g. setup.py."""
        wanted = f"job/{self.source}/{name}"
        return next((data for info, data in self.members if info.name == wanted), None)


def read_source(sdist: Path) -> UnpackedSdist | None:
    """None for an archive the builder's tarfile would refuse or a member it could not
    write as the build user (links, devices, paths out of the folder)."""
    try:
        found = _zip_members(sdist) if sdist.name.endswith(".zip") else _tar_members(sdist)
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError):
        return None
    if found is None:
        return None
    # The builder takes the one top folder as the project's, if there is one.
    dirs = set()
    for info, _data in found:
        parts = PurePosixPath(info.name).parts[2:]  # after job/build
        if len(parts) > 1 or (parts and info.isdir()):
            dirs.add(parts[0])
    root = f"build/{next(iter(dirs))}" if len(dirs) == 1 else "build"
    pyproject = next((d for i, d in found if i.name == f"job/{root}/pyproject.toml"), None)
    return UnpackedSdist(members=tuple(found), source=root, pyproject=pyproject)


def _tar_members(sdist: Path) -> list[tuple[tarfile.TarInfo, bytes | None]] | None:
    out: list[tuple[tarfile.TarInfo, bytes | None]] = []
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            path = PurePosixPath(member.name)
            if not path.parts or path.as_posix() == ".":
                continue
            if path.is_absolute() or ".." in path.parts or not (member.isfile() or member.isdir()):
                return None
            info = tarfile.TarInfo(f"job/build/{path.as_posix()}".rstrip("/"))
            info.type, info.mode, info.mtime = member.type, member.mode, member.mtime
            data = None
            if member.isfile():
                handle = archive.extractfile(member)
                data = handle.read() if handle else b""
                info.size = len(data)
            out.append((info, data))
    return out


def _zip_members(sdist: Path) -> list[tuple[tarfile.TarInfo, bytes | None]] | None:
    out: list[tuple[tarfile.TarInfo, bytes | None]] = []
    with zipfile.ZipFile(sdist) as archive:
        for member in archive.infolist():
            path = PurePosixPath(member.filename)
            if not path.parts:
                continue
            if path.is_absolute() or ".." in path.parts:
                return None
            info = tarfile.TarInfo(f"job/build/{path.as_posix()}".rstrip("/"))
            # ZipFile.extractall keeps no modes: the build user's umask (022) decides.
            if member.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                out.append((info, None))
                continue
            data = archive.read(member)
            info.mode, info.size = 0o644, len(data)
            out.append((info, data))
    return out


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
