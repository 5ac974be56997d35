"""The probe programs: valid ELF for each arch, and the statfs decoding."""

from __future__ import annotations

import io
import os
import platform
import shutil
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest

from orchestrator.config import EngineSpec
from orchestrator.engines.answers import kind_of, split_ref
from orchestrator.engines.docker import DockerEngine
from orchestrator.engines.probe import parse_statfs, probe_context, probe_elf
from orchestrator.model import Arch, EngineKind

MACHINES = {Arch.AMD64: 62, Arch.ARM64: 183, Arch.PPC64LE: 21, Arch.S390X: 22, Arch.RISCV64: 243}


@pytest.mark.parametrize("arch", list(Arch))
def test_elf_header(arch: Arch) -> None:
    elf = probe_elf(arch)
    order = ">" if arch is Arch.S390X else "<"
    assert elf[:4] == b"\x7fELF"
    assert elf[4] == 2  # 64-bit
    assert elf[5] == (2 if arch is Arch.S390X else 1)  # s390x is big-endian
    e_type, e_machine = struct.unpack_from(f"{order}HH", elf, 16)
    assert (e_type, e_machine) == (2, MACHINES[arch])
    entry = struct.unpack_from(f"{order}Q", elf, 24)[0]
    assert entry == 0x400000 + 64 + 56
    assert b"/\0" in elf[-4:]


@pytest.mark.parametrize("arch", [Arch.ARM64, Arch.PPC64LE, Arch.S390X, Arch.RISCV64])
def test_foreign_probes_run_under_qemu_and_report_this_disk(arch: Arch, tmp_path: Path) -> None:
    """Each probe run by QEMU user emulation itself (no engine): the disk it reports is
    this host's, decoded with that arch's statfs layout."""
    qemu = shutil.which(f"qemu-{arch.machine}-static")
    if qemu is None or platform.machine() == arch.machine:
        pytest.skip(f"qemu-{arch.machine}-static is not installed (scripts/setup-host does)")
    exe = tmp_path / "probe"
    exe.write_bytes(probe_elf(arch))
    exe.chmod(0o755)
    out = subprocess.run([qemu, str(exe)], capture_output=True, check=True).stdout
    stat = os.statvfs("/")
    assert parse_statfs(out, arch).total_bytes == stat.f_blocks * stat.f_frsize


def test_parse_statfs_s390x() -> None:
    raw = struct.pack(">IIQQQQQQIII", 0x794C7630, 1024, 1000, 600, 500, 0, 0, 0, 255, 4096, 7)
    raw += bytes(120 - len(raw))
    space = parse_statfs(raw, Arch.S390X)
    assert (space.free_bytes, space.total_bytes) == (500 * 4096, 1000 * 4096)


def test_context_is_scratch_image_with_executable_probe() -> None:
    with tarfile.open(fileobj=io.BytesIO(probe_context(Arch.ARM64))) as tar:
        dockerfile = tar.extractfile("Dockerfile").read().decode()  # type: ignore[union-attr]
        assert dockerfile.startswith("FROM scratch")
        assert tar.getmember("probe").mode == 0o755


def test_parse_statfs() -> None:
    raw = struct.pack("<qqQQQQQQqqq", 0x794C7630, 1024, 1000, 600, 500, 0, 0, 0, 255, 4096, 7)
    raw += bytes(120 - len(raw))
    space = parse_statfs(raw)
    assert space.free_bytes == 500 * 4096
    assert space.total_bytes == 1000 * 4096
    with pytest.raises(ValueError, match="expected 120"):
        parse_statfs(raw[:50])


@pytest.mark.skipif(platform.machine() != "x86_64", reason="runs the native amd64 probe")
def test_native_probe_runs_and_reports_this_disk(tmp_path: Path) -> None:
    exe = tmp_path / "probe"
    exe.write_bytes(probe_elf(Arch.AMD64))
    exe.chmod(0o755)
    out = subprocess.run([str(exe)], capture_output=True, check=True).stdout
    stat = os.statvfs("/")
    assert parse_statfs(out).total_bytes == stat.f_blocks * stat.f_frsize


# -- engine kinds: what the adapter reads and decides without an engine --------------

DOCKER_VERSION = {
    "Version": "20.10.24+dfsg1",
    "ApiVersion": "1.41",
    "Components": [{"Name": "Engine"}, {"Name": "containerd"}],
}
PODMAN_VERSION = {
    "Version": "4.3.1",
    "ApiVersion": "1.41",
    "Components": [{"Name": "Podman Engine"}, {"Name": "Conmon"}],
}


def test_the_kind_is_read_from_the_version_answer() -> None:
    assert kind_of(DOCKER_VERSION) is EngineKind.DOCKER
    assert kind_of(PODMAN_VERSION) is EngineKind.PODMAN
    assert kind_of({"Version": "19.03"}) is EngineKind.DOCKER  # no components: old Docker


def test_container_limits_are_the_matrixs_else_the_kinds() -> None:
    declared = DockerEngine(EngineSpec(name="p", kind=EngineKind.PODMAN))
    assert declared.kind is EngineKind.PODMAN  # declared: no engine asked
    assert declared.ulimits == {"nofile": 1024, "nproc": 1024}
    assert DockerEngine(EngineSpec(name="d", kind=EngineKind.DOCKER)).ulimits == {}
    given = EngineSpec(name="p", kind=EngineKind.PODMAN, ulimits={"nofile": 4096})
    assert DockerEngine(given).ulimits == {"nofile": 4096}
    none = EngineSpec(name="p", kind=EngineKind.PODMAN, ulimits={})
    assert DockerEngine(none).ulimits == {}  # an empty mapping: the engine's own limits


@pytest.mark.parametrize(
    ("ref", "parts"),
    [
        (
            "127.0.0.1:5000/o/builder:debian-bookworm-amd64",
            ("127.0.0.1:5000/o/builder", "debian-bookworm-amd64"),
        ),
        ("127.0.0.1:5000/o/builder", ("127.0.0.1:5000/o/builder", "latest")),
        (
            "127.0.0.1:5000/o/builder@sha256:" + "a" * 64,
            ("127.0.0.1:5000/o/builder", "sha256:" + "a" * 64),
        ),
    ],
)
def test_a_reference_splits_into_repository_and_tag_or_digest(
    ref: str, parts: tuple[str, str]
) -> None:
    assert split_ref(ref) == parts
