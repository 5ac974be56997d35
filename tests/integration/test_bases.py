"""Bootstrapped bases for real, on the host: a foreign arch's debootstrap whose
second stage runs the host's dpkg gives the files of debootstrap's own second stage
under QEMU."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

from orchestrator.config import Bootstrap
from orchestrator.config.matrix import expand
from orchestrator.images.base import bootstrap_rootfs
from orchestrator.model import Arch

from .conftest import Local

# What differs between two debootstraps of the same day, whichever way: the logs'
# timestamps, and ldconfig's cache of the inodes and times it read.
VOLATILE = ("var/log/", "var/cache/ldconfig/aux-cache")


def _entries(rootfs: Path) -> dict[str, str]:
    """Every member's type, mode, owner and content (or target), by path."""
    out = {}
    with tarfile.open(rootfs) as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if member.isfile():
                data = (tar.extractfile(member) or io.BytesIO()).read()
                what = hashlib.sha256(data).hexdigest()
            else:
                what = member.linkname if member.issym() or member.islnk() else ""
            kind = f"{member.type!r} {member.mode:o} {member.uid}:{member.gid}"
            out[name] = f"{kind} {what} {member.devmajor}:{member.devminor}"
    return out


def test_a_foreign_second_stage_with_the_hosts_dpkg_gives_debootstraps_files(
    local: Local, tmp_path: Path
) -> None:
    [arm] = [p for p in expand(local.matrix) if p.arch is Arch.ARM64]
    assert isinstance(arm.base, Bootstrap)
    native = bootstrap_rootfs(arm.base, "arm64", tmp_path / "native.log", bases=tmp_path / "a")
    log = (tmp_path / "native.log").read_text()
    assert "--foreign" in log
    assert "--second-stage-target" in log
    assert "again under emulation" not in log
    emulated = bootstrap_rootfs(
        arm.base, "arm64", tmp_path / "emulated.log", bases=tmp_path / "b", native_dpkg=False
    )
    assert "--second-stage-target" not in (tmp_path / "emulated.log").read_text()

    ours, theirs = _entries(native), _entries(emulated)
    differ = {p for p in ours.keys() | theirs.keys() if ours.get(p) != theirs.get(p)}
    assert {p for p in differ if not p.startswith(VOLATILE)} == set()
    assert len(ours) > 5000  # a minbase system's files
    assert "var/lib/dpkg/status" in ours
