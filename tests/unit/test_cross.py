"""The native compiler under emulation, without Docker: which builders get a cross
toolchain, how its layer renders, and which mode a job placed on an engine gets."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.config import load_matrix
from orchestrator.config.matrix import expand
from orchestrator.core.errors import EXIT_INPUT, InternalError, OrchestrateError
from orchestrator.images.cross import (
    NativePart,
    NativePartError,
    keep_root,
    repacked,
    unavailable_reason,
)
from orchestrator.images.facts import NativeCompiler, parse_native_compiler
from orchestrator.images.render import CrossToolchain, render
from orchestrator.jobs.graph import WheelJob
from orchestrator.jobs.records import WheelRecord, compiler_mode
from orchestrator.jobs.sources import SdistRef
from orchestrator.model import Arch, JobKind, JobStatus, Mode
from tests.conftest import REPO, CliRunner

PRODUCTION = load_matrix(REPO / "platforms.yaml")
PLATFORMS = {p.name: p for p in expand(PRODUCTION)}
USABLE = NativeCompiler(host="x86_64", gcc="12.2.0", builder_gcc="12.2.0", usable=True)


TOOLCHAIN = CrossToolchain(host=Arch.AMD64, target=Arch.ARM64, key="0123456789abcdef")


def test_only_foreign_debian_family_builders_get_a_toolchain() -> None:
    arm = PLATFORMS["debian-bookworm-arm64"]
    assert unavailable_reason(arm, Arch.AMD64) is None
    assert unavailable_reason(PLATFORMS["ubuntu-noble-arm64"], Arch.AMD64) is None
    assert "natively" in str(unavailable_reason(arm, Arch.ARM64))
    centos = unavailable_reason(PLATFORMS["centos-stream9-arm64"], Arch.AMD64)
    assert centos is not None
    assert "no user-space cross compiler" in centos


def test_the_toolchain_renders_as_its_own_layer_before_the_probe() -> None:
    arm = PLATFORMS["debian-bookworm-arm64"]
    plain = render(arm, PRODUCTION)
    crossed = render(arm, PRODUCTION, toolchain=TOOLCHAIN)
    assert "cross" not in plain.dockerfile
    assert "cross-toolchain.tar.gz" not in plain.files
    text = crossed.dockerfile
    assert "ADD cross-toolchain.tar.gz /opt/orchestrate/" in text
    assert (
        "ln -sf /opt/orchestrate/cross/lib/ld-linux-x86-64.so.2 /lib64/ld-linux-x86-64.so.2" in text
    )
    assert text.index("cross-toolchain.tar.gz") < text.index("orchestrate-probe")
    assert text.index("apt-get install") < text.index("cross-toolchain.tar.gz")
    # Named by its key, not its bytes: freshness is known before the archive is made.
    assert "cross-toolchain.tar.gz" not in crossed.files
    assert crossed.native == {"cross-toolchain.tar.gz": TOOLCHAIN.key}
    assert crossed.inputs_hash("base") != plain.inputs_hash("base")  # a new toolchain rebuilds
    other = render(arm, PRODUCTION, toolchain=dataclasses.replace(TOOLCHAIN, key="f" * 16))
    assert other.inputs_hash("base") != crossed.inputs_hash("base")
    assert other.dockerfile == crossed.dockerfile
    # The context takes the archive, and only the one it names.
    context = crossed.context({"cross-toolchain.tar.gz": b"archive"})
    with tarfile.open(fileobj=io.BytesIO(context)) as tar:
        member = tar.extractfile("cross-toolchain.tar.gz")
        assert member is not None
        assert member.read() == b"archive"
    with pytest.raises(InternalError, match="the context takes"):
        crossed.context()


def test_a_native_part_is_made_once_and_kept_under_its_key(tmp_path: Path) -> None:
    made: list[str] = []

    def make(line: Callable[[str], None]) -> bytes:
        made.append("once")
        return b"archive"

    path = tmp_path / "cross" / "part-0123.tar.gz"
    part = NativePart(name="part.tar.gz", key="0123", what="the part", path=path, make=make)
    lines: list[str] = []
    assert part.archive(lines.append) == b"archive"
    assert part.archive(lines.append) == b"archive"
    assert made == ["once"]
    assert lines == ["making the part"]
    assert path.read_bytes() == b"archive"


def test_a_native_part_that_fails_names_itself_and_keeps_nothing(tmp_path: Path) -> None:
    def make(line: Callable[[str], None]) -> bytes:
        raise OrchestrateError("apt-get failed (exit 100)")

    path = tmp_path / "part.tar.gz"
    part = NativePart(name="part.tar.gz", key="k", what="the part", path=path, make=make)
    with pytest.raises(NativePartError) as raised:
        part.archive(lambda _line: None)
    assert (raised.value.part, raised.value.message) == ("part.tar.gz", "apt-get failed (exit 100)")
    assert not path.exists()


def test_the_mode_of_a_job() -> None:
    assert compiler_mode(
        emulated=False, engine_machine="x86_64", compiler=USABLE, allowed=True
    ) == (Mode.NATIVE, "")
    assert compiler_mode(emulated=True, engine_machine="x86_64", compiler=USABLE, allowed=True) == (
        Mode.NATIVE_COMPILER,
        "",
    )
    mode, why = compiler_mode(emulated=True, engine_machine="x86_64", compiler=None, allowed=True)
    assert mode is Mode.EMULATED
    assert "no native cross compiler" in why
    mode, why = compiler_mode(
        emulated=True, engine_machine="ppc64le", compiler=USABLE, allowed=True
    )
    assert mode is Mode.EMULATED
    assert "runs on x86_64, the engine is ppc64le" in why
    mode, why = compiler_mode(
        emulated=True, engine_machine="x86_64", compiler=USABLE, allowed=False
    )
    assert (mode, "turns the native compiler off" in why) == (Mode.EMULATED, True)
    stale = NativeCompiler(
        host="x86_64",
        gcc="12.2.0",
        builder_gcc="13.1.0",
        usable=False,
        reason="cross gcc 12.2 != gcc 13.1",
    )
    assert compiler_mode(emulated=True, engine_machine="x86_64", compiler=stale, allowed=True) == (
        Mode.EMULATED,
        "cross gcc 12.2 != gcc 13.1",
    )


def test_a_native_engine_never_gets_the_wrappers() -> None:
    """The same arm64 image on a native arm64 engine: mode native, no wrapper variable."""
    arm = PLATFORMS["debian-bookworm-arm64"]
    job = WheelJob(
        kind=JobKind.WHEEL,
        platform=arm,
        python="3.11",
        name="crcmod",
        version="1.7",
        sdist=SdistRef("c.tar.gz", "u", "0"),
        image_ref="i",
    )
    mode, _ = compiler_mode(emulated=False, engine_machine="aarch64", compiler=USABLE, allowed=True)
    record = WheelRecord.for_job(job, JobStatus.BUILT, native_compiler=mode is Mode.NATIVE_COMPILER)
    build = record.phases[1]
    assert isinstance(build["env"], dict)
    assert "ORCHESTRATE_NATIVE_COMPILER" not in build["env"]
    emulated = WheelRecord.for_job(job, JobStatus.BUILT, native_compiler=True)
    env = emulated.phases[1]["env"]
    assert isinstance(env, dict)
    assert env["ORCHESTRATE_NATIVE_COMPILER"] == "1"
    assert "ORCHESTRATE_NATIVE_COMPILER" not in dict(emulated.phases[0]["env"])  # type: ignore[call-overload]


def test_probe_entries() -> None:
    assert parse_native_compiler('{"tags": {}}') is None
    found = parse_native_compiler(
        json.dumps(
            {
                "native_compiler": {
                    "host": "x86_64",
                    "gcc": "12.2.0",
                    "builder_gcc": "12.2.0",
                    "usable": True,
                }
            }
        )
    )
    assert found == USABLE


def test_the_matrix_switches(tmp_path: Path, cli: CliRunner) -> None:
    text = (REPO / "examples" / "local.yaml").read_text()
    good = tmp_path / "good.yaml"
    good.write_text(
        text.replace(
            "builder:\n",
            "builder:\n  native_compiler: true\n  native_compiler_except: [pyzmq, libsass]\n",
        )
    )
    assert load_matrix(good).builder.native_compiler_except == ("pyzmq", "libsass")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("builder:\n", "builder:\n  native_compiler_except: [PyZMQ]\n"))
    result = cli("matrix", "validate", "-m", str(bad))
    assert result.code == EXIT_INPUT
    assert "normalized project name" in result.err
    typo = tmp_path / "typo.yaml"
    typo.write_text(text.replace("builder:\n", "builder:\n  native_compilers: false\n"))
    result = cli("matrix", "validate", "-m", str(typo))
    assert result.code == EXIT_INPUT
    assert "native_compiler" in result.err


@pytest.mark.parametrize("arch", list(Arch))
def test_triplets(arch: Arch) -> None:
    names = {
        "amd64": "x86_64-linux-gnu",
        "arm64": "aarch64-linux-gnu",
        "ppc64le": "powerpc64le-linux-gnu",  # Debian's cross packages use this one
        "s390x": "s390x-linux-gnu",
        "riscv64": "riscv64-linux-gnu",
    }
    assert arch.triplet == names[arch.value]


def test_crosstoolchain_paths() -> None:
    assert (TOOLCHAIN.loader_dir, TOOLCHAIN.loader_name) == ("/lib64", "ld-linux-x86-64.so.2")
    arm = CrossToolchain(host=Arch.ARM64, target=Arch.AMD64, key="k")
    assert (arm.loader_dir, arm.loader_name) == ("/lib", "ld-linux-aarch64.so.1")


def test_the_hosts_arch_names_the_loader_its_programs_use() -> None:
    """What the builder links the toolchain's loader to: the interpreter every
    program of the arch names (a toolchain made with another is refused)."""
    arch = Arch.parse(os.uname().machine)
    with Path("/bin/true").open("rb") as program:
        elf = program.read()
    assert f"{arch.loader}\0".encode() in elf


def _engine_tar(order: list[str], mtime: int) -> bytes:
    """A folder as an engine hands it over: its own member order and real times."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in order:
            member = tarfile.TarInfo(name)
            member.mtime = mtime
            if name.endswith("/"):
                member.type, member.mode = tarfile.DIRTYPE, 0o755
            elif name.endswith("link"):
                member.type, member.linkname = tarfile.SYMTYPE, "gcc"
            else:
                member.size, member.mode = len(name), 0o755
            tar.addfile(member, io.BytesIO(name.encode()) if member.isfile() else None)
    return buf.getvalue()


def test_a_folder_made_again_packs_to_the_same_bytes() -> None:
    names = ["cross/", "cross/bin/", "cross/bin/gcc", "cross/bin/cc-link", "cross/lib.so"]
    first = repacked(_engine_tar(names, mtime=1796516517))
    again = repacked(_engine_tar(list(reversed(names)), mtime=1796516681))
    assert first == again
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == sorted(n.rstrip("/") for n in names)
        assert {m.mtime for m in members} == {0}
        link = tar.getmember("cross/bin/cc-link")
        assert (link.issym(), link.linkname) == (True, "gcc")
        gcc = tar.extractfile("cross/bin/gcc")
        assert gcc is not None
        assert gcc.read() == b"cross/bin/gcc"
        assert tar.getmember("cross/bin/gcc").mode == 0o755


def test_the_host_keeps_one_foreign_root_per_platform(tmp_path: Path) -> None:
    """A root whose inputs changed replaces the platform's copy (each is hundreds of
    MB); another platform's copy stays."""
    cross = tmp_path / "cross"
    other = cross / "root-debian-bookworm-ppc64le-on-amd64-1111111111111111.tar"
    keep_root(other, b"ppc64le")
    keep_root(cross / "root-debian-bookworm-arm64-on-amd64-2222222222222222.tar", b"old")
    newer = cross / "root-debian-bookworm-arm64-on-amd64-3333333333333333.tar"
    keep_root(newer, b"new")
    assert sorted(p.name for p in cross.iterdir()) == sorted([other.name, newer.name])
    assert newer.read_bytes() == b"new"
    assert other.read_bytes() == b"ppc64le"
