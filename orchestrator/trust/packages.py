"""A Debian image's package database, read without starting the image.

The smoke test's fast path runs a wheel's import check in the image it was
built in, which holds every runtime package any of its wheels links, and
then asks which libraries the process actually loaded. Each must belong to a
package the wheel's record names, to what those depend on, or to the bare
base (debootstrap's minbase: the Essential and `Priority: required`
packages). This module says which library files those are, from
/var/lib/dpkg/status and the `info/*.list` files, copied out of a created
container (nothing runs, so nothing is emulated).
"""

from __future__ import annotations

import io
import re
import tarfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from orchestrator.core.files import archived_file
from orchestrator.engines import Engine, RunRequest
from orchestrator.model import Arch

DPKG = "/var/lib/dpkg"
# A shared object by its file name: libfoo.so, libfoo.so.1.2, _bar.cpython-311-x.so
SHARED_OBJECT = re.compile(r"[^/]+\.so(\.[0-9.]+)?")
_ALTERNATIVE = re.compile(r"\s*\|\s*")


@dataclass(frozen=True, kw_only=True)
class PackageDb:
    """Installed packages: what each depends on, which are the base, and which
    shared-object paths each owns (as dpkg lists them, links not resolved)."""

    depends: Mapping[str, tuple[str, ...]]
    base: frozenset[str]
    libraries: Mapping[str, tuple[str, ...]]

    def closure(self, roots: Iterable[str]) -> frozenset[str]:
        """`roots`, the base, and everything they depend on, transitively."""
        seen: set[str] = set()
        todo = [r for r in (*roots, *self.base) if r in self.depends]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            todo.extend(d for d in self.depends[name] if d not in seen)
        return frozenset(seen)

    def allowed_libraries(self, roots: Iterable[str]) -> list[str]:
        """The shared objects a wheel that needs `roots` may load, sorted."""
        allowed = self.closure(roots)
        return sorted({path for name in allowed for path in self.libraries.get(name, ())})

    def owner(self, path: str) -> str:
        """The package listing `path`, or "" (for messages only)."""
        return next((name for name, paths in self.libraries.items() if path in paths), "")


def parse_status(text: str) -> tuple[dict[str, tuple[str, ...]], frozenset[str]]:
    """Installed packages from dpkg's status file: their dependencies (every
    alternative, virtual names resolved to their providers) and the base set."""
    stanzas = [_fields(block) for block in text.split("\n\n") if block.strip()]
    installed = [s for s in stanzas if s.get("Status", "").endswith(" installed")]
    providers: dict[str, set[str]] = {}
    for stanza in installed:
        name = stanza["Package"]
        providers.setdefault(name, set()).add(name)
        for virtual in _names(stanza.get("Provides", "")):
            providers.setdefault(virtual, set()).add(name)
    depends = {}
    for stanza in installed:
        wanted = _names(f"{stanza.get('Pre-Depends', '')},{stanza.get('Depends', '')}")
        found = {p for w in wanted for p in providers.get(w, ())}
        depends[stanza["Package"]] = tuple(sorted(found))
    base = frozenset(
        s["Package"]
        for s in installed
        if s.get("Essential") == "yes" or s.get("Priority") == "required"
    )
    return depends, base


def _fields(block: str) -> dict[str, str]:
    out: dict[str, str] = {}
    key = ""
    for line in block.splitlines():
        if line[:1] in (" ", "\t") and key:
            out[key] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def _names(field: str) -> list[str]:
    """Package names in a Depends-style field: versions and `:any` dropped."""
    out = []
    for group in field.split(","):
        for alternative in _ALTERNATIVE.split(group.strip()):
            name = alternative.split("(", 1)[0].split("[", 1)[0].strip().split(":", 1)[0]
            if name:
                out.append(name)
    return out


def parse_lists(info_tar: bytes) -> dict[str, tuple[str, ...]]:
    """The shared objects each package lists, from a tar of /var/lib/dpkg/info."""
    out: dict[str, tuple[str, ...]] = {}
    with tarfile.open(fileobj=io.BytesIO(info_tar)) as tar:
        for member in tar.getmembers():
            base = member.name.rsplit("/", 1)[-1]
            if not member.isfile() or not base.endswith(".list"):
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            lines = handle.read().decode(errors="replace").splitlines()
            libs = tuple(p for p in lines if SHARED_OBJECT.fullmatch(p.rsplit("/", 1)[-1]))
            if libs:
                package = base.removesuffix(".list").split(":", 1)[0]
                out[package] = out.get(package, ()) + libs
    return out


def read_package_db(engine: Engine, image: str, arch: Arch) -> PackageDb:
    """The image's dpkg database, copied out of a container that never starts."""
    request = RunRequest(image=image, command=("true",), platform=arch, network=False)
    with engine.container(request) as box:
        status = archived_file(box.get(f"{DPKG}/status")) or b""
        lists = box.get(f"{DPKG}/info")
    depends, base = parse_status(status.decode(errors="replace"))
    return PackageDb(depends=depends, base=base, libraries=parse_lists(lists))


class PackageDbs:
    """Each image's database, read once per run (an image ID names fixed contents)."""

    def __init__(self) -> None:
        self._dbs: dict[tuple[str, str], PackageDb] = {}
        self._lock = threading.Lock()

    def get(self, engine: Engine, image: str, arch: Arch) -> PackageDb:
        key = (engine.name, image)
        with self._lock:
            found = self._dbs.get(key)
            if found is None:
                found = self._dbs[key] = read_package_db(engine, image, arch)
        return found
