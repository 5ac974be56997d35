"""Tar archives in memory: how a job's folder travels to and from a container
through the engine API, and the wheels taken out of one."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from pathlib import Path

from orchestrator.core.wheelnames import safe_wheel_name


def lines_of(lines: Sequence[str]) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode()


def add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    names = set(tar.getnames())
    for parent in _parents(name):
        if parent not in names:
            info = tarfile.TarInfo(parent)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, 1000, 1000
            tar.addfile(info)
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.uid, info.gid = len(data), 0o644, 1000, 1000
    tar.addfile(info, io.BytesIO(data))


def _parents(name: str) -> list[str]:
    parts = name.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def read_member(tar_bytes: bytes, name: str) -> bytes | None:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        try:
            handle = tar.extractfile(name)
        except KeyError:
            return None
        return handle.read() if handle else None


def joined(*tars: bytes) -> bytes:
    """One tar of the members of each (an engine reads a single archive)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as dst:
        for tar_bytes in tars:
            with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as src:
                for member in src.getmembers():
                    dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    return out.getvalue()


def without(tar_bytes: bytes, prefix: str) -> bytes:
    """The tar with the members under `prefix` left out (the build needs no wheel cache)."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(tar_bytes)) as src,
        tarfile.open(fileobj=out, mode="w") as dst,
    ):
        for member in src.getmembers():
            if member.name.startswith(prefix):
                continue
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    return out.getvalue()


def extract_wheels(tar_bytes: bytes, out_dir: Path) -> list[Path]:
    """Regular `*.whl` members only; each name is validated before a path is made."""
    out_dir.mkdir(parents=True, exist_ok=True)
    found = []
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for member in tar.getmembers():
            base = member.name.rsplit("/", 1)[-1]
            if not member.isfile() or not base.endswith(".whl"):
                continue
            target = out_dir / safe_wheel_name(base)
            source = tar.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
            found.append(target)
    return found
