"""Files on the host: read within bounds, written atomically.

A path from the user may name a FIFO (`<(...)`), a device (`/dev/zero`) or a
huge file. Opening a FIFO blocks until a writer comes and a device never ends,
so the file is opened without blocking and must be a regular file under a size
limit. Writes go to a temporary file beside the target, are synced, and are
renamed over it: a reader sees the old file or the new one, never half.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import os
import stat
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of regular file `path`; OSError for anything else or over `limit`."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, device or socket)")
        if info.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {_size(limit)}")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew while we read it
        raise OSError(errno.EFBIG, f"larger than {_size(limit)}")
    return data


def archived_file(tar_bytes: bytes) -> bytes | None:
    """The first regular file of a tar (what an engine's copy-out of one path gives),
    or None when it holds none."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        member = next((m for m in tar.getmembers() if m.isfile()), None)
        handle = tar.extractfile(member) if member else None
        return handle.read() if handle else None


def write_atomic(
    path: Path, data: bytes | str, mode: int | None = None, *, sync: bool = True
) -> None:
    """Write `data` (text as UTF-8) to `path` through a synced temporary file and a
    rename: readers see the old file or the whole new one. A cache may skip the sync."""
    if isinstance(data, str):
        data = data.encode()
    tmp = _private_temporary(path)
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        if mode is not None:
            tmp.chmod(mode)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def symlink_atomic(link: Path, target: str | Path) -> None:
    """Point `link` at `target` with one rename: readers see the old link or the
    new one, and two writers at once (two merges, two shards) never share a
    temporary name."""
    tmp = _private_temporary(link)
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    try:
        tmp.replace(link)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _private_temporary(path: Path) -> Path:
    """A temporary beside `path`, unique per process and thread: two writers of one
    path never share it."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"


def sha256_file(path: Path) -> str:
    """The file's sha256, read a megabyte at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    """The folder's entries on disk: a rename in it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def host_lock(key: str) -> Iterator[None]:
    """Exclusive, across this host's processes and threads, while held: two runs on
    one engine (two shards on one machine, a test session beside another) make a
    shared base or builder once, and the second finds it made. flock conflicts
    between any two opens of the file, so threads of one process wait too."""
    folder = Path(tempfile.gettempdir()) / f"orchestrate-locks-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    with (folder / f"{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
