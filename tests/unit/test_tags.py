"""Compatible tags per platform and python (issue acceptance cases)."""

from __future__ import annotations

import platform
import sys

import pytest
from packaging.tags import Tag, parse_tag, sys_tags

from orchestrator.model import Arch
from orchestrator.plan.tags import TagSet, derived_tags, platform_tags, tags_from_probe

ARM = TagSet.of("3.11", derived_tags("3.11", Arch.ARM64, "2.36"), "derived")


@pytest.mark.parametrize(
    "tag",
    [
        "cp311-cp311-manylinux_2_17_aarch64",
        "cp311-cp311-manylinux2014_aarch64",
        "cp37-abi3-manylinux_2_17_aarch64",
        "cp37-abi3-manylinux2014_aarch64",
        "py3-none-any",
        "py2.py3-none-any",
        "cp311-cp311-manylinux_2_36_aarch64",
    ],
)
def test_glibc_236_aarch64_cp311_accepts(tag: str) -> None:
    assert ARM.accepts(parse_tag(tag))


@pytest.mark.parametrize(
    "tag",
    [
        "cp311-cp311-musllinux_1_1_aarch64",
        "cp311-cp311-manylinux_2_17_x86_64",
        "cp312-cp312-manylinux_2_17_aarch64",
        "cp311-cp311-manylinux_2_39_aarch64",
        "cp311-cp311-manylinux_2_16_aarch64",  # no aarch64 manylinux below glibc 2.17
        "cp311-cp311-win_arm64",
        "py2-none-any",
    ],
)
def test_glibc_236_aarch64_cp311_rejects(tag: str) -> None:
    assert not ARM.accepts(parse_tag(tag))


def test_x86_64_legacy_aliases() -> None:
    tags = platform_tags(Arch.AMD64, "2.36")
    assert tags[0] == "manylinux_2_36_x86_64"
    for alias in ("manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"):
        assert alias in tags
    arm = platform_tags(Arch.ARM64, "2.36")
    assert "manylinux2014_aarch64" in arm
    assert not any("2010" in t or "manylinux1" in t for t in arm)


def test_better_tags_rank_first() -> None:
    specific = ARM.rank([Tag("cp311", "cp311", "manylinux_2_28_aarch64")])
    older = ARM.rank([Tag("cp311", "cp311", "manylinux_2_17_aarch64")])
    abi3 = ARM.rank([Tag("cp37", "abi3", "manylinux_2_28_aarch64")])
    pure = ARM.rank([Tag("py3", "none", "any")])
    ranks = [specific, older, abi3, pure]
    assert None not in ranks
    assert ranks == sorted(ranks)  # type: ignore[type-var]
    assert len(set(ranks)) == 4


@pytest.mark.skipif(
    not (
        sys.version_info[:2] == (3, 11)
        and platform.machine() == "x86_64"
        and platform.libc_ver() == ("glibc", "2.36")
    ),
    reason="compares with what pip accepts here, on CPython 3.11, glibc 2.36, x86_64",
)
def test_derived_equals_what_this_interpreter_accepts() -> None:
    ours = [str(t) for t in derived_tags("3.11", Arch.AMD64, "2.36")]
    assert set(ours) == {str(t) for t in sys_tags()}
    # Order matters where it picks between platform wheels, and there pip's own
    # (vendored) packaging decides. Standalone packaging 26.3 moved linux_<arch>
    # ahead of manylinux; pip's has not, and neither do we.
    from pip._vendor.packaging.tags import sys_tags as pip_sys_tags

    def specific(tags: list[str]) -> list[str]:
        return [t for t in tags if t.startswith("cp311-cp311-")]

    assert specific(ours) == specific([str(t) for t in pip_sys_tags()])


def test_probe_tags_take_the_probe_order() -> None:
    tags = tags_from_probe("3.11", ["cp311-cp311-manylinux_2_36_aarch64", "py3-none-any"])
    assert tags.source == "probe"
    assert tags.accepts([Tag("py3", "none", "any")])
    assert not tags.accepts([Tag("cp311", "cp311", "manylinux_2_17_aarch64")])


@pytest.mark.parametrize(
    ("arch", "glibc", "newest", "oldest"),
    [
        (Arch.PPC64LE, "2.36", "manylinux_2_36_ppc64le", "manylinux_2_17_ppc64le"),
        (Arch.S390X, "2.36", "manylinux_2_36_s390x", "manylinux_2_17_s390x"),
        # riscv64 has manylinux tags from glibc 2.31 on only (auditwheel's policies).
        (Arch.RISCV64, "2.41", "manylinux_2_41_riscv64", "manylinux_2_31_riscv64"),
    ],
)
def test_the_new_arches(arch: Arch, glibc: str, newest: str, oldest: str) -> None:
    tags = platform_tags(arch, glibc)
    manylinux = [t for t in tags if t.startswith("manylinux_")]
    assert (manylinux[0], manylinux[-1]) == (newest, oldest)
    assert tags[-1] == f"linux_{arch.machine}"
    legacy = "manylinux2014_" + arch.machine
    assert (legacy in tags) == (arch is not Arch.RISCV64)
    assert not any("manylinux1" in t or "2010" in t for t in tags)


def test_riscv64_before_glibc_231_has_no_manylinux_tag() -> None:
    assert platform_tags(Arch.RISCV64, "2.28") == ["linux_riscv64"]
