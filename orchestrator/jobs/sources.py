"""Pinned sdists, fetched by hash into a content-addressed cache, and what they say.

The plan already knows each pinned sdist's URL and sha256 from the index.
It is downloaded here, on the host, at most once per run and once for all
platforms and later runs, and checked against the index's sha256; a
mismatch is never retried. Jobs get the verified file put into their
container; pip never resolves the sdist again.

From the sdist we also read, before any container runs, what the job graph
needs: whether it looks pure Python (no compiled sources, or none that its build
scripts name a way to compile: its platforms then share one build)
and its static build requirements (`build-system.requires`).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import threading
import time
import tomllib
import urllib.parse
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import requests

from orchestrator.config.bindep import Bindep, BindepError, parse_bindep
from orchestrator.core.errors import EnvironmentProblem, StoreConflict, UnsafeName
from orchestrator.core.files import sha256_file

COMPILED = (".c", ".cc", ".cpp", ".cxx", ".pyx", ".pxd", ".f", ".f90", ".rs", ".go", ".m")
BUILD_FILES = ("meson.build", "Cargo.toml", "CMakeLists.txt")
# What a build script names when it compiles anything. Compiled files that no script
# names ship unbuilt (salt's .c and .go are packaging tools): the sdist builds pure.
COMPILES = re.compile(
    rb"ext_modules|ext-modules|\bextension\b|cythoni[sz]e|cffi_modules|"
    rb"rust_extensions|setuptools[-_]rust|maturin|meson|scikit[-_]build|skbuild|\bcmake\b|"
    rb"golang|pybind11|nanobind|sipbuild|enscons|py[-_]build[-_]cmake|hatch[-_]cython",
    re.IGNORECASE,
)
SCRIPTS = ("setup.py", "setup.cfg", "pyproject.toml")
# What can make Cython's C differ between platforms: compile-time conditions and
# constants (IF/ELIF/DEF, the UNAME_* names) and a compile-time environment that a
# build script computes. Without them, Cython writes the same C on every platform.
CYTHON_CONDITIONS = re.compile(rb"^[ \t]*(?:IF|ELIF|DEF)[ \t]|UNAME_", re.MULTILINE)
CYTHON_ENV = re.compile(rb"compile_time_env")
CYTHON_FILES = (".pyx", ".pxd", ".pxi")
MAX_CYTHON_BYTES = 16 << 20  # read of an sdist's Cython files: more is not worth sharing
# What pip and `build` assume for a project without pyproject.toml (PEP 517's fallback).
LEGACY_REQUIRES = ("setuptools>=40.8.0",)
CHUNK = 1 << 20


class SdistDownloadError(EnvironmentProblem):
    """The sdist could not be downloaded (after retries): a network fault."""


class HashMismatch(StoreConflict):
    """The downloaded sdist is not the file the index names: never retried."""


@dataclass(frozen=True)
class SdistRef:
    """A pinned sdist as the index lists it."""

    filename: str
    url: str
    sha256: str | None  # None when the index gives no hash (PEP 503 makes it optional)

    def as_dict(self) -> dict[str, object]:
        return {"filename": self.filename, "url": self.url, "sha256": self.sha256}


@dataclass(kw_only=True, frozen=True)
class SdistFacts:
    """What a downloaded sdist says about how to build it."""

    ref: SdistRef
    path: Path
    sha256: str
    pure: bool
    build_requires: tuple[str, ...]
    compiled: int = 0  # compiled source files (C, C++, Cython, Fortran, Rust, Go)
    bindep: Bindep | None = None  # its own bindep.txt, if it ships one
    bindep_problem: str = ""  # why that bindep.txt could not be read
    # It ships .pyx files without their C, which its build generates with Cython, and
    # nothing makes that C platform-specific: a native build's C serves emulated ones.
    portable_cython: bool = False

    @property
    def expected_native(self) -> float:
        """Seconds a native build is expected to take before any has been timed:
        what orders the first night's jobs longest first. A job's own fixed cost,
        plus a few seconds per compiled source file (libsass has ~100 C++ files)."""
        return 8.0 if self.pure else 15.0 + 4.0 * self.compiled


class SdistCache:
    """`<root>/<sha256[:2]>/<sha256>/<filename>`: shared by platforms, runs and reproduce."""

    def __init__(
        self,
        root: Path,
        *,
        retries: int = 3,
        backoff: float = 1.0,
        timeout: float = 120,
        log: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.root = root
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.log = log
        self.downloads = 0  # files fetched over the network by this object
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def path_of(self, ref: SdistRef) -> Path:
        key = ref.sha256 or "url-" + hashlib.sha256(ref.url.encode()).hexdigest()[:32]
        return self.root / key[:2] / key / _safe_name(ref.filename)

    def get(self, ref: SdistRef) -> Path:
        """The verified file, downloading it only when the cache lacks a good copy."""
        path = self.path_of(ref)
        with self._lock_for(str(path)):
            if path.is_file():
                if ref.sha256 is None or sha256_file(path) == ref.sha256:
                    return path
                self.log(f"cached {path} does not match sha256 {ref.sha256}: downloading again")
                path.unlink()
            self._download(ref, path)
        return path

    def _lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _download(self, ref: SdistRef, path: Path) -> None:
        last = ""
        for attempt in range(self.retries):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                digest = self._fetch_to(ref, path)
            except (requests.RequestException, OSError) as exc:
                last = f"{type(exc).__name__}: {str(exc)[:200]}"
                continue
            if ref.sha256 is not None and digest != ref.sha256:
                path.unlink(missing_ok=True)
                raise HashMismatch(
                    f"{ref.filename} from {ref.url} has sha256 {digest}, "
                    f"the index says {ref.sha256}",
                    hint="the file changed on the server or in transit; nothing was built from it",
                )
            return
        raise SdistDownloadError(f"downloading {ref.url} failed {self.retries} times ({last})")

    def _fetch_to(self, ref: SdistRef, path: Path) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        digest = hashlib.sha256()
        try:
            with tmp.open("wb") as out:
                for chunk in _chunks(ref.url, self.timeout):
                    digest.update(chunk)
                    out.write(chunk)
            with self._guard:
                self.downloads += 1
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        return digest.hexdigest()


def _chunks(url: str, timeout: float) -> Iterator[bytes]:
    if url.startswith("file://"):  # a local index (tests, air-gapped mirrors)
        with Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).open("rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk
        return
    with requests.get(url, stream=True, timeout=timeout) as response:
        response.raise_for_status()
        yield from response.iter_content(CHUNK)


def _safe_name(filename: str) -> str:
    if (
        "/" in filename
        or "\\" in filename
        or filename.startswith(".")
        or "\0" in filename
        or len(filename) > 255
    ):
        raise UnsafeName(f"refusing sdist file name {filename!r} from the index")
    return filename


# -- what the sdist says -------------------------------------------------------------
def facts(ref: SdistRef, path: Path) -> SdistFacts:
    data = path.read_bytes()
    names, top = _members(data, ref.filename)
    bindep, problem = _bindep(top.get("bindep.txt"), ref.filename)
    return SdistFacts(
        ref=ref,
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        pure=names_look_pure(names) or _compiles_nothing(names, top),
        build_requires=build_requires(top.get("pyproject.toml")),
        compiled=sum(1 for n in names if n.lower().endswith(COMPILED)),
        bindep=bindep,
        bindep_problem=problem,
        portable_cython=portable_cython(data, ref.filename, names, top),
    )


def _bindep(text: bytes | None, filename: str) -> tuple[Bindep | None, str]:
    """The sdist's own bindep.txt, parsed once for every platform."""
    if text is None:
        return None, ""
    try:
        return parse_bindep(text.decode("utf-8", errors="replace"), f"bindep.txt in {filename}"), ""
    except BindepError as exc:
        return None, str(exc)


def names_look_pure(names: list[str]) -> bool:
    """No compiled sources and no meson/Cargo/CMake build: very likely a pure wheel."""
    for name in names:
        base = name.rsplit("/", 1)[-1]
        if base.lower().endswith(COMPILED) or base in BUILD_FILES:
            return False
    return True


def _compiles_nothing(names: list[str], top: dict[str, bytes]) -> bool:
    """Compiled files, yet no build file and no build script that names a way to compile."""
    scripts = [top[base] for base in SCRIPTS if base in top]
    if not scripts or any(name.rsplit("/", 1)[-1] in BUILD_FILES for name in names):
        return False
    return not any(COMPILES.search(script) for script in scripts)


def portable_cython(data: bytes, filename: str, names: list[str], top: dict[str, bytes]) -> bool:
    """Some .pyx ships without its .c or .cpp, and neither the Cython files nor the
    build scripts hold anything that makes the generated C depend on the platform."""
    shipped = set(names)
    stems = [n[: -len(".pyx")] for n in names if n.endswith(".pyx")]
    if not any(f"{s}.c" not in shipped and f"{s}.cpp" not in shipped for s in stems):
        return False
    if any(CYTHON_ENV.search(script) for script in top.values()):
        return False
    texts = _cython_texts(data, filename, [n for n in names if n.endswith(CYTHON_FILES)])
    return texts is not None and not any(CYTHON_CONDITIONS.search(t) for t in texts)


def _cython_texts(data: bytes, filename: str, wanted: list[str]) -> list[bytes] | None:
    """The contents of `wanted` members (None: unreadable, or more than MAX_CYTHON_BYTES)."""
    try:
        if filename.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                infos = [archive.getinfo(name) for name in wanted]
                if sum(i.file_size for i in infos) > MAX_CYTHON_BYTES:
                    return None
                return [archive.read(info) for info in infos]
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            by_name = {m.name: m for m in archive.getmembers()}  # getmember scans: O(n) each
            members = [by_name[name] for name in wanted]
            if sum(m.size for m in members) > MAX_CYTHON_BYTES:
                return None
            handles = [archive.extractfile(m) for m in members]
            return [h.read() if h else b"" for h in handles]
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, KeyError):
        return None


def build_requires(pyproject: bytes | None) -> tuple[str, ...]:
    """`build-system.requires` (PEP 518), or the legacy setuptools default."""
    if pyproject is None:
        return LEGACY_REQUIRES
    try:
        table = tomllib.loads(pyproject.decode("utf-8", errors="replace"))
    except tomllib.TOMLDecodeError:
        return ()  # the job's metadata step reports it with the backend's own words
    system = table.get("build-system")
    if not isinstance(system, dict):
        return LEGACY_REQUIRES
    requires = system.get("requires", [])
    return tuple(str(r) for r in requires) if isinstance(requires, list) else ()


TOP_FILES = ("bindep.txt", *SCRIPTS)  # read from the sdist's top folder
MAX_TOP_FILE = 256 * 1024


def _members(data: bytes, filename: str) -> tuple[list[str], dict[str, bytes]]:
    """Member names, and the top-level files of TOP_FILES that it has (the shallowest)."""
    try:
        if filename.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = archive.namelist()
                return names, {
                    base: archive.open(member).read(MAX_TOP_FILE)
                    for base, member in _top_files(names).items()
                }
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            members = {m.name: m for m in archive.getmembers()}
            found = {}
            for base, member in _top_files(list(members)).items():
                handle = archive.extractfile(members[member])
                if handle is not None:
                    found[base] = handle.read(MAX_TOP_FILE)
            return list(members), found
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError):
        return [], {}  # unreadable here: the job says why, in its metadata step


def _top_files(names: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for base in TOP_FILES:
        candidates = [n for n in names if n.rsplit("/", 1)[-1] == base and n.count("/") <= 1]
        if candidates:
            found[base] = min(candidates, key=lambda n: n.count("/"))
    return found


# -- the C a native build's Cython wrote, for emulated builds of the same sdist ------
CYTHON_HEADER = b"/* Generated by Cython "  # the first line of every file Cython writes
GENERATED_SUFFIXES = (".c", ".cpp", ".h")
MAX_GENERATED = 512 << 20  # bytes: a kept tar that claims more is not used


@dataclass(frozen=True, kw_only=True)
class GeneratedC:
    """What a native job kept of its Cython's output (job.py's generated.tar)."""

    path: Path
    origin: str  # the native job's ID
    cython: str  # the Cython pin of its build environment, e.g. Cython==3.2.1


def cython_pin(installed: Sequence[str]) -> str:
    """The Cython==version among a build environment's pins ('' without Cython)."""
    for pin in installed:
        name, _, version = pin.partition("==")
        if name.strip().lower() == "cython":
            return f"Cython=={version.strip()}"
    return ""


def generated_members(
    tar_bytes: bytes, *, under: str, mtime: float
) -> list[tuple[tarfile.TarInfo, bytes]]:
    """The kept files as members under `under` (the job's source folder), dated `mtime`
    so that Cython finds them newer than their .pyx (and older than anything the build
    writes later). Only regular C/C++ files with Cython's header, at plain relative
    paths: a build could have written anything into that tar."""
    out: list[tuple[tarfile.TarInfo, bytes]] = []
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
            for member in tar.getmembers():
                path = PurePosixPath(member.name)
                plain = not path.is_absolute() and ".." not in path.parts and path.parts
                if not (member.isfile() and plain and member.name.endswith(GENERATED_SUFFIXES)):
                    continue
                total += member.size
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None and total <= MAX_GENERATED else b""
                if data.startswith(CYTHON_HEADER):
                    info = tarfile.TarInfo(f"{under.rstrip('/')}/{path.as_posix()}")
                    info.size, info.mode, info.mtime = len(data), 0o644, int(mtime)
                    out.append((info, data))
    except (tarfile.TarError, OSError, EOFError):
        return []
    return out
