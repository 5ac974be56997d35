"""Publish the store as one static simple index per platform, atomically.

    <root>/index.html                        the platforms
    <root>/<platform> -> releases/<platform>/<id>   one symlink per platform
    <root>/releases/<platform>/<id>/simple/  PEP 503 HTML + PEP 691 JSON,
                                             wheels, PEP 658 .metadata and
                                             .intoto.json provenance as
                                             hard links into the store

Each file's runtime packages (what to install beside it) are on its project
page: as text after its link in HTML (clients read only the links), and as
the private `_runtime` key in JSON (PEP 691 leaves `_` keys to the index).

A release is written in full under a staging name, fsync'd, renamed to its
id, and switched in by renaming a new symlink over the old one: a reader
sees the previous index or the new one, never a mix. Unchanged platforms are
not republished. The previous `keep` releases stay on disk, so `rollback`
works and a pip that read the old page still finds its files; files only
the oldest release referenced go when that release is pruned.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import hashlib
import os
import secrets
import shutil
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.errors import InputError, OrchestrateError, StoreConflict
from orchestrator.core.files import fsync_dir, sha256_file, symlink_atomic, write_atomic
from orchestrator.model import PublishStatus
from orchestrator.publish.pages import (
    project_html,
    project_json,
    root_html,
    root_json,
    runtime_text,
)
from orchestrator.store import Store, StoredWheel

RELEASES = "releases"


@dataclass(frozen=True, kw_only=True)
class PlatformResult:
    platform: str
    status: PublishStatus
    release: str
    wheels: int
    projects: int
    error: str = ""
    environment: bool = False  # failed for the disk's sake (full, read-only, no access)


def _failed(platform: str, wheels: int, error: str, *, environment: bool = False) -> PlatformResult:
    return PlatformResult(
        platform=platform,
        status=PublishStatus.FAILED,
        release="",
        wheels=wheels,
        projects=0,
        error=error,
        environment=environment,
    )


def crash_point(name: str) -> None:
    """Fault injection for tests: ORCHESTRATE_CRASH_AT=<name> kills us right here."""
    if os.environ.get("ORCHESTRATE_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def content_digest(wheels: Sequence[StoredWheel]) -> str:
    digest = hashlib.sha256()
    for w in sorted(wheels, key=lambda w: w.filename):
        digest.update(f"{w.filename}\0{w.sha256}\0{w.requires_python}\n".encode())
        if w.runtime is not None or w.attestation:  # what a project page shows of it
            digest.update(f"{runtime_text(w)}\0{w.attestation}\n".encode())
    return digest.hexdigest()


def current_release(root: Path, platform: str) -> str | None:
    link = root / platform
    return link.readlink().name if link.is_symlink() else None


@contextlib.contextmanager
def index_lock(root: Path) -> Iterator[None]:
    """One publisher (or rollback) at a time per index root, across processes."""
    path = root / ".publish.lock"
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = path.open("a")
    except OSError:
        # A read-only root: lock what is there (flock needs no write access), so
        # that each platform's publish can fail on its own and say why.
        handle = (path if path.is_file() else Path(os.devnull)).open("r")
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def publish(
    store: Store, platforms: Sequence[str], keep: int = 3, *, adopt: bool = False
) -> list[PlatformResult]:
    """Publish each platform on its own: one failing does not hold back the others.
    Raises StoreConflict (exit 4) when the manifest is unusable, and InputError when
    the root holds files we did not write (unless `adopt`): nothing is touched."""
    check_root(store.root, adopt=adopt)
    with index_lock(store.root):
        records = store.records()
        results = []
        for platform in platforms:
            wheels = [r for r in records.values() if platform in r.platforms]
            try:
                results.append(publish_platform(store, platform, wheels, keep))
            except OrchestrateError as exc:  # its previous release stays served
                results.append(_failed(platform, len(wheels), exc.message))
            except OSError as exc:
                results.append(_failed(platform, len(wheels), str(exc), environment=True))
        with contextlib.suppress(OSError):  # a read-only root keeps its page; said above
            write_root_page(store.root)
            (store.root / MARKER).touch()
    return results


MARKER = ".orchestrate-index"  # in a root we publish to: its index.html is ours to write
OURS = frozenset({"store", RELEASES, "index.html", ".publish.lock", MARKER})


def check_root(root: Path, *, adopt: bool) -> None:
    """Refuse to publish into a folder that holds someone else's files (a web site's
    index.html would be overwritten), unless told to adopt it. Called before anything
    is written there: the store's folder included."""
    marker = root / MARKER
    if marker.is_symlink() or (marker.exists() and not marker.is_file()):
        # Touching a link would create its target, wherever it points.
        raise InputError(
            f"index root {root}: {MARKER} is a link or a folder, not the file orchestrate "
            "writes; refusing to publish there",
            hint="remove it if this root is orchestrate's, or point index.root elsewhere",
        )
    if adopt or marker.exists() or not root.is_dir():
        return
    if (root / RELEASES).is_dir():  # published by an orchestrate from before the marker
        return
    foreign = sorted(
        p.name
        for p in root.iterdir()
        if p.name not in OURS and not p.is_symlink() and not p.name.startswith(".")
    )
    if (root / "index.html").exists():
        foreign.insert(0, "index.html")
    if foreign:
        raise InputError(
            f"index root {root} holds files orchestrate did not write "
            f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); "
            "refusing to publish over them",
            hint="point index.root at an empty folder, or run `orchestrate publish "
            "--adopt-root` once to take it over (its index.html is replaced)",
        )


def publish_platform(
    store: Store, platform: str, wheels: list[StoredWheel], keep: int
) -> PlatformResult:
    root = store.root
    digest = content_digest(wheels)
    projects = len({w.project for w in wheels})
    current = current_release(root, platform)
    if current is not None and current.endswith(digest[:16]):
        return PlatformResult(
            platform=platform,
            status=PublishStatus.UNCHANGED,
            release=current,
            wheels=len(wheels),
            projects=projects,
        )
    releases = root / RELEASES / platform
    # A sequence number first, so that names sort in publish order; a random part
    # so that no two publishers (or a crashed one) ever share a name.
    sequence = max((_sequence(r) for r in releases_of(root, platform)), default=0) + 1
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    release = f"{sequence:06d}-{stamp}-{secrets.token_hex(3)}-{digest[:16]}"
    staging = releases / f".staging-{release}"
    try:
        previous = root / platform / "simple" if current is not None else None
        write_tree(store, staging / "simple", wheels, previous)
        # One flush of the whole filesystem, instead of an fsync per file: the
        # tree must be durable before anything points at it, not file by file.
        sync_filesystem(staging)
        crash_point("staged")
        final = releases / release
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone after the rename, or a failure
    fsync_dir(releases)
    crash_point("renamed")
    switch(root, platform, final)
    crash_point("switched")
    prune_releases(releases, keep, keep_name=release)
    return PlatformResult(
        platform=platform,
        status=PublishStatus.PUBLISHED,
        release=release,
        wheels=len(wheels),
        projects=projects,
    )


def _sequence(name: str) -> int:
    """The sequence number a release name starts with; 0 for a stray folder."""
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def switch(root: Path, platform: str, target: Path) -> None:
    """Point <root>/<platform> at `target` with one rename (atomic on POSIX)."""
    symlink_atomic(root / platform, target.relative_to(root))
    fsync_dir(root)


def write_tree(
    store: Store, simple: Path, wheels: list[StoredWheel], previous: Path | None = None
) -> None:
    """The whole tree, unsynced: the caller makes it durable in one go. Every file is
    checked against its record first. A release shares no file with the store (an
    edit of the store in place cannot reach what is served): a wheel is linked from
    the `previous` release when that copy checks out, else copied from the store."""
    by_project: dict[str, list[StoredWheel]] = {}
    for wheel in wheels:
        by_project.setdefault(wheel.project, []).append(wheel)
    simple.mkdir(parents=True)
    for project, files in sorted(by_project.items()):
        folder = simple / project
        folder.mkdir()
        for wheel in files:
            _place_files(store, wheel, folder, previous)
        (folder / "index.html").write_text(project_html(project, files), encoding="utf-8")
        (folder / "index.json").write_text(project_json(project, files), encoding="utf-8")
    names = sorted(by_project)
    (simple / "index.html").write_text(root_html(names), encoding="utf-8")
    (simple / "index.json").write_text(root_json(names), encoding="utf-8")


def _place_files(store: Store, wheel: StoredWheel, folder: Path, previous: Path | None) -> None:
    source = store.path_of(wheel)
    verify(source, wheel.size, wheel.sha256)
    metadata = source.with_name(wheel.filename + ".metadata")
    verify(metadata, None, wheel.metadata_sha256)
    earlier = previous / folder.name / wheel.filename if previous is not None else None
    if earlier is not None and _same_bytes_apart(earlier, source, wheel):
        os.link(earlier, folder / wheel.filename)
    else:
        private_copy(source, folder / wheel.filename)
    private_copy(metadata, folder / f"{wheel.filename}.metadata")
    if wheel.attestation:
        attestation = source.with_name(wheel.attestation)
        if not attestation.is_file() or attestation.is_symlink():
            raise StoreConflict(f"{attestation} is listed in the manifest but missing")
        private_copy(attestation, folder / wheel.attestation)


def _same_bytes_apart(earlier: Path, source: Path, wheel: StoredWheel) -> bool:
    """`earlier` (a published copy) holds the recorded bytes in a file of its own."""
    try:
        seen = earlier.stat()
        if seen.st_ino == source.stat().st_ino or seen.st_size != wheel.size:
            return False
        return sha256_file(earlier) == wheel.sha256
    except OSError:
        return False


def private_copy(source: Path, target: Path) -> None:
    """A copy with its own inode: a reflink where the filesystem offers one (no extra
    space), else the bytes."""
    with source.open("rb") as src, target.open("wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
        except OSError:
            shutil.copyfileobj(src, dst, 1 << 20)


FICLONE = 0x40049409  # linux/fs.h: share the extents of another file (btrfs, xfs)


def verify(path: Path, size: int | None, sha256: str) -> None:
    """The stored file is the one the manifest (and so its #sha256 link) names."""
    try:
        if path.is_symlink() or not path.is_file():
            raise FileNotFoundError(path)
        actual = path.stat().st_size
    except FileNotFoundError:
        raise StoreConflict(f"{path} is listed in the manifest but missing") from None
    if (size is not None and actual != size) or sha256_file(path) != sha256:
        raise StoreConflict(
            f"{path} does not match its manifest record (sha256 {sha256[:16]}...); not published",
            hint="the platform keeps serving its last good release, which holds its own "
            "copy of the recorded file: copy it back from <root>/<platform>/simple/...",
        )


def sync_filesystem(path: Path) -> None:
    """syncfs(2) on the filesystem holding `path`; sync(2) where syncfs is missing."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _LIBC is None or _LIBC.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    return libc if hasattr(libc, "syncfs") else None


_LIBC = _libc()


def write_root_page(root: Path) -> None:
    platforms = sorted(p.name for p in root.iterdir() if p.is_symlink())
    links = "\n".join(
        f'    <li><a href="{p}/simple/">{p}</a> (release {current_release(root, p)})</li>'
        for p in platforms
    )
    page = (
        f"<!DOCTYPE html>\n<html>\n  <head><title>Wheel cache</title></head>\n"
        f"  <body>\n    <h1>Wheel cache</h1>\n    <p>Use one platform's index as an extra "
        f"index: <code>pip install --extra-index-url URL/&lt;platform&gt;/simple/</code>"
        f"</p>\n    <ul>\n{links}\n    </ul>\n  </body>\n</html>\n"
    )
    write_atomic(root / "index.html", page)


def releases_of(root: Path, platform: str) -> list[str]:
    folder = root / RELEASES / platform
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def prune_releases(releases: Path, keep: int, keep_name: str) -> None:
    """Keep the newest `keep` releases; also clear staging left by a crash."""
    for leftover in releases.glob(".staging-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    names = sorted(p.name for p in releases.iterdir() if not p.name.startswith("."))
    for name in names[:-keep] if keep else names:
        if name != keep_name:
            shutil.rmtree(releases / name, ignore_errors=True)


def rollback(root: Path, platform: str, to: str | None = None) -> str:
    """Point a platform back at the release before the current one (or at `to`)."""
    with index_lock(root):
        return _rollback(root, platform, to)


def _rollback(root: Path, platform: str, to: str | None) -> str:
    known = releases_of(root, platform)
    current = current_release(root, platform)
    if not known or current is None:
        raise InputError(f"platform {platform!r} has no published release under {root}")
    if to is None:
        older = [r for r in known if r < current]
        if not older:
            raise InputError(
                f"{platform}: no release older than {current} is kept",
                hint=f"kept releases: {', '.join(known)}",
            )
        to = older[-1]
    if to not in known:
        raise InputError(
            f"{platform}: release {to!r} is not kept", hint=f"kept releases: {', '.join(known)}"
        )
    switch(root, platform, root / RELEASES / platform / to)
    write_root_page(root)
    return to
