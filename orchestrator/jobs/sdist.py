"""An sdist read without running it: its members as the builder's own tarfile
would unpack them into /job/build (tar or legacy zip), and the build
requirements it declares statically (pyproject.toml's `build-system`, and the
literal `setup_requires` of setup.py or setup.cfg)."""

from __future__ import annotations

import ast
import configparser
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from packaging.requirements import InvalidRequirement, Requirement

LEGACY = ("setuptools >= 40.8.0",)  # `build`'s default for a project without the table


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
