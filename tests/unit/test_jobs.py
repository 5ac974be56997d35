"""The pure job graph: one job per build item, pure sdists shared from a native lead,
build-dependency jobs the items wait for, blocked items with a category."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from packaging.utils import canonicalize_name

from orchestrator.config import load_matrix
from orchestrator.config.matrix import expand, select
from orchestrator.images.facts import ImageFacts
from orchestrator.jobs.builddeps import BuildDepNeed, choose, needs_for, parse_constraints
from orchestrator.jobs.failures import Failure
from orchestrator.jobs.graph import (
    JobGraph,
    JobSettings,
    PoolSnapshot,
    SdistResult,
    WheelJob,
    job_graph,
)
from orchestrator.jobs.records import phases
from orchestrator.jobs.sources import SdistFacts, SdistRef
from orchestrator.model import Action, Arch, Category, JobKind
from orchestrator.plan.decide import Decision
from orchestrator.plan.tags import TagSet, derived_tags
from orchestrator.plan.upstream import IndexFile, ProjectPage
from orchestrator.scheduler import Job
from tests.conftest import REPO

PLATFORMS = {p.name: p for p in select(expand(load_matrix(REPO / "platforms.yaml")), ["debian-*"])}
AMD, ARM = "debian-bookworm-amd64", "debian-bookworm-arm64"
IMAGES = {
    n: ImageFacts(platform=n, ref=f"reg/builder:{n}", ids={"local": f"sha256:{n}"})
    for n in PLATFORMS
}
AMD_NATIVE = PoolSnapshot(frozenset({Arch.AMD64}))
SETTINGS = JobSettings(timeout=600, run_id="run")


def build(name: str, version: str, platform: str) -> Decision:
    sdist = f"{name}-{version}.tar.gz"
    return Decision(
        platform=platform,
        python="3.11",
        name=name,
        version=version,
        action=Action.BUILD,
        reason="sdist only",
        wheel=None,
        sdist=sdist,
        source="r.txt:1",
        sdist_url=f"https://files/{sdist}",
        sdist_sha256="0" * 64,
    )


def facts(
    name: str, version: str, *, pure: bool, requires: tuple[str, ...] = (), compiled: int = 0
) -> SdistFacts:
    ref = SdistRef(f"{name}-{version}.tar.gz", f"https://files/{name}-{version}.tar.gz", "0" * 64)
    return SdistFacts(
        ref=ref,
        path=Path("/nowhere"),
        sha256="0" * 64,
        pure=pure,
        build_requires=requires,
        compiled=compiled,
    )


def expected(name: str, arch: str, *, emulated: bool, guess: float) -> float:
    return {"crcmod": 10.0, "netifaces": 30.0}.get(name, guess) * (8 if emulated else 1)


def graph(
    decisions: list[Decision],
    sdists: dict[tuple[str, str], SdistResult],
    needs: list[BuildDepNeed] | None = None,
    pool: PoolSnapshot = AMD_NATIVE,
    *,
    images: dict[str, ImageFacts] | None = None,
    compiled: Callable[[str], bool] = lambda _name: False,
) -> JobGraph:
    return job_graph(
        decisions,
        PLATFORMS,
        IMAGES if images is None else images,
        sdists,
        needs=needs or [],
        pool=pool,
        expected=expected,
        settings=replace(SETTINGS, compiled=compiled),
    )


def test_one_job_per_build_item_with_its_sdist_and_expected_time() -> None:
    decisions = [build("crcmod", "1.7", AMD), build("crcmod", "1.7", ARM)]
    sdists: dict[tuple[str, str], SdistResult] = {
        ("crcmod", "1.7"): facts("crcmod", "1.7", pure=False)
    }
    jobs = graph(decisions, sdists, compiled=lambda name: name == "crcmod").by_id()
    assert set(jobs) == {f"{AMD}/crcmod==1.7", f"{ARM}/crcmod==1.7"}
    arm = jobs[f"{ARM}/crcmod==1.7"]
    assert arm.depends == ()  # known to give a platform wheel: platforms build in parallel
    assert arm.expected == 80.0  # emulated: no native arm64 engine
    assert jobs[f"{AMD}/crcmod==1.7"].expected == 10.0
    assert arm.payload.sdist.url == "https://files/crcmod-1.7.tar.gz"
    assert arm.payload.image_ref == f"reg/builder:{ARM}"
    assert arm.payload.kind == JobKind.WHEEL


def test_pure_sdist_is_built_once_on_a_native_platform() -> None:
    decisions = [build("simplegeneric", "0.8.1", ARM), build("simplegeneric", "0.8.1", AMD)]
    sdists: dict[tuple[str, str], SdistResult] = {
        ("simplegeneric", "0.8.1"): facts("simplegeneric", "0.8.1", pure=True)
    }
    jobs = graph(decisions, sdists).by_id()
    assert jobs[f"{AMD}/simplegeneric==0.8.1"].depends == ()  # the native platform leads
    assert jobs[f"{ARM}/simplegeneric==0.8.1"].depends == (f"{AMD}/simplegeneric==0.8.1",)
    # With a native arm64 engine only, arm64 leads instead.
    arm_native = graph(decisions, sdists, pool=PoolSnapshot(frozenset({Arch.ARM64}))).by_id()
    assert arm_native[f"{ARM}/simplegeneric==0.8.1"].depends == ()
    assert arm_native[f"{AMD}/simplegeneric==0.8.1"].depends == (f"{ARM}/simplegeneric==0.8.1",)
    # Its last native build gave a platform wheel all the same: the guess was wrong, so
    # the platforms build in parallel (with the native wheel taken if done by then).
    known = graph(decisions, sdists, compiled=lambda name: name == "simplegeneric").by_id()
    assert known[f"{ARM}/simplegeneric==0.8.1"].depends == ()
    assert known[f"{ARM}/simplegeneric==0.8.1"].payload.twin == ""


def test_an_emulated_job_waits_for_a_native_build_that_may_come_out_pure() -> None:
    """ovs and salt do not look pure and build `none-any`: the first night, and while
    the native build is expected to end before the emulated one would, arm64 waits."""
    decisions = [build("ovs", "3.7.1", ARM), build("ovs", "3.7.1", AMD)]
    sdists: dict[tuple[str, str], SdistResult] = {
        ("ovs", "3.7.1"): facts("ovs", "3.7.1", pure=False)
    }
    jobs = graph(decisions, sdists).by_id()
    assert jobs[f"{AMD}/ovs==3.7.1"].depends == ()
    assert jobs[f"{ARM}/ovs==3.7.1"].depends == (f"{AMD}/ovs==3.7.1",)

    def slow_native(name: str, arch: str, *, emulated: bool, guess: float) -> float:
        return 10.0 if emulated else 100.0  # waiting would cost more than building

    slow = job_graph(
        decisions,
        PLATFORMS,
        IMAGES,
        sdists,
        needs=[],
        pool=AMD_NATIVE,
        expected=slow_native,
        settings=SETTINGS,
    ).by_id()
    assert slow[f"{ARM}/ovs==3.7.1"].depends == ()
    # Many compiled sources (psycopg2 has 41): a platform wheel, so arm64 does not wait.
    many: dict[tuple[str, str], SdistResult] = {
        ("ovs", "3.7.1"): facts("ovs", "3.7.1", pure=False, compiled=41)
    }
    arm = graph(decisions, many).by_id()[f"{ARM}/ovs==3.7.1"]
    assert arm.depends == ()
    assert arm.payload.twin == f"{AMD}/ovs==3.7.1"  # its wheel is taken if done by then
    # Its last native build gave a platform wheel: no waiting either.
    known = graph(decisions, sdists, compiled=lambda name: name == "ovs").by_id()
    assert known[f"{ARM}/ovs==3.7.1"].depends == ()
    assert known[f"{ARM}/ovs==3.7.1"].payload.twin == ""
    # Both native: nobody waits.
    both = PoolSnapshot(frozenset({Arch.AMD64, Arch.ARM64}))
    assert graph(decisions, sdists, pool=both).by_id()[f"{ARM}/ovs==3.7.1"].depends == ()


def test_an_emulated_job_compiles_the_c_its_native_twins_cython_wrote() -> None:
    """krb5 runs Cython in its build: arm64 waits for the amd64 job, which keeps the
    C (job.py: ORCHESTRATE_KEEP_GENERATED), even when it is known to be compiled."""
    decisions = [build("krb5", "0.9.0", ARM), build("krb5", "0.9.0", AMD)]
    cython = replace(facts("krb5", "0.9.0", pure=False, compiled=56), portable_cython=True)
    sdists: dict[tuple[str, str], SdistResult] = {("krb5", "0.9.0"): cython}
    jobs = graph(decisions, sdists, compiled=lambda name: True).by_id()
    amd, arm = jobs[f"{AMD}/krb5==0.9.0"], jobs[f"{ARM}/krb5==0.9.0"]
    assert arm.depends == (amd.id,)
    assert (arm.payload.cython_from, amd.payload.cython_from) == (amd.id, "")
    assert (amd.payload.keeps_generated, arm.payload.keeps_generated) == (True, False)
    assert phases(amd.payload)[1].env["ORCHESTRATE_KEEP_GENERATED"] == "1"
    assert "ORCHESTRATE_KEEP_GENERATED" not in phases(arm.payload)[1].env
    # C that may differ by platform (no portable_cython): no waiting, nothing kept.
    plain = graph(decisions, {("krb5", "0.9.0"): replace(cython, portable_cython=False)})
    assert plain.by_id()[f"{ARM}/krb5==0.9.0"].depends == ()
    assert not plain.by_id()[f"{AMD}/krb5==0.9.0"].payload.keeps_generated
    # Another Python, or other build settings for one platform: no twin to take from.
    other = [build("krb5", "0.9.0", ARM), replace(build("krb5", "0.9.0", AMD), python="3.12")]
    assert graph(other, sdists).by_id()[f"{ARM}/krb5==0.9.0"].payload.cython_from == ""
    both = PoolSnapshot(frozenset({Arch.AMD64, Arch.ARM64}))
    assert graph(decisions, sdists, pool=both).by_id()[f"{ARM}/krb5==0.9.0"].depends == ()


def test_build_dependency_without_a_wheel_becomes_a_job_the_item_waits_for() -> None:
    decisions = [build("gssapi", "1.9.0", ARM), build("gssapi", "1.9.0", AMD)]
    old_cython = IndexFile(
        filename="Cython-0.29.0.tar.gz",
        url="https://files/Cython-0.29.0.tar.gz",
        sha256="1" * 64,
        requires_python=None,
        yanked=False,
    )
    needs = [
        BuildDepNeed(
            platform=ARM,
            python="3.11",
            name=canonicalize_name("cython"),
            version="0.29.0",
            sdist=old_cython,
            needed_by="gssapi==1.9.0",
        )
    ]
    sdists: dict[tuple[str, str], SdistResult] = {
        ("gssapi", "1.9.0"): facts("gssapi", "1.9.0", pure=False, requires=("Cython<0.30",))
    }
    jobs = graph(decisions, sdists, needs, compiled=lambda _name: True).by_id()
    dep_id = f"{ARM}/build-dep:cython==0.29.0"
    assert jobs[dep_id].payload.kind == JobKind.BUILD_DEP
    assert jobs[dep_id].payload.sdist.sha256 == "1" * 64
    assert jobs[f"{ARM}/gssapi==1.9.0"].depends == (dep_id,)
    assert jobs[f"{AMD}/gssapi==1.9.0"].depends == ()  # amd64 has a wheel: no need there


def test_blocked_items_name_their_category() -> None:
    decisions = [build("crcmod", "1.7", AMD), build("netifaces", "0.11.0", AMD)]
    sdists: dict[tuple[str, str], SdistResult] = {
        ("crcmod", "1.7"): Failure(Category.HASH_MISMATCH, "crcmod-1.7.tar.gz has sha256 …"),
        ("netifaces", "0.11.0"): facts("netifaces", "0.11.0", pure=False),
    }
    result = graph(decisions, sdists, images={ARM: IMAGES[ARM], AMD: IMAGES[AMD]})
    assert [j.id for j in result.jobs] == [f"{AMD}/netifaces==0.11.0"]
    assert [(b.job.id, b.failure.category) for b in result.blocked] == [
        (f"{AMD}/crcmod==1.7", Category.HASH_MISMATCH)
    ]
    no_image = graph(decisions[1:], sdists, images={})
    assert no_image.blocked[0].failure.category == Category.NO_BUILDER


def test_first_night_expectations_come_from_the_sdists_contents() -> None:
    """No job has been timed yet: a big C++ sdist is expected to take longest, so
    longest-first starts it first instead of last."""
    decisions = [build("libsass", "0.23.0", ARM), build("pydotplus", "2.0.2", ARM)]
    sdists: dict[tuple[str, str], SdistResult] = {
        ("libsass", "0.23.0"): facts("libsass", "0.23.0", pure=False, compiled=120),
        ("pydotplus", "2.0.2"): facts("pydotplus", "2.0.2", pure=True),
    }
    jobs = graph(decisions, sdists).by_id()
    heavy, light = jobs[f"{ARM}/libsass==0.23.0"], jobs[f"{ARM}/pydotplus==2.0.2"]
    assert heavy.expected > 10 * light.expected


def test_graph_jobs_are_frozen_values() -> None:
    job = graph(
        [build("crcmod", "1.7", AMD)], {("crcmod", "1.7"): facts("crcmod", "1.7", pure=False)}
    )
    node: Job[WheelJob] = job.jobs[0]
    assert node.payload.id == f"{AMD}/crcmod==1.7"
    try:
        node.payload.name = "other"  # type: ignore[misc]
    except AttributeError:
        pass
    else:  # pragma: no cover - the assertion below reports it
        raise AssertionError("WheelJob must be frozen")


# -- which build requirements need a job (mirrors pip --prefer-binary) ---------------
def page(*names: str) -> ProjectPage:
    return ProjectPage.of(
        IndexFile(
            filename=n,
            url=f"https://files/{n}",
            sha256="2" * 64,
            requires_python=None,
            yanked=False,
        )
        for n in names
    )


ARM_TAGS = TagSet.of("3.11", derived_tags("3.11", Arch.ARM64, "2.36"), "derived")
CYTHON = page(
    "Cython-3.0.0.tar.gz",
    "Cython-3.0.0-cp311-cp311-manylinux_2_17_x86_64.whl",
    "Cython-0.29.37.tar.gz",
    "Cython-0.29.37-cp311-cp311-manylinux_2_17_aarch64.whl",
    "Cython-0.29.36.tar.gz",
)


def test_choose_prefers_an_older_wheel_over_a_newer_sdist_like_pip() -> None:
    from packaging.specifiers import SpecifierSet

    assert choose(SpecifierSet(), CYTHON, "3.11", ARM_TAGS) is None  # 0.29.37 has a wheel
    chosen = choose(SpecifierSet("<0.29.37"), CYTHON, "3.11", ARM_TAGS)
    assert chosen is not None
    assert chosen[0] == "0.29.36"
    assert chosen[1].filename == "Cython-0.29.36.tar.gz"


def test_needs_for_applies_markers_and_build_constraints() -> None:
    arm = PLATFORMS[ARM]
    pages = {"cython": CYTHON, "setuptools": page("setuptools-80.0.0-py3-none-any.whl")}
    requires = ["setuptools>=40", "Cython", "Cython<1; python_version<'3'"]
    assert (
        needs_for(requires, "x==1", arm, "3.11", pages=pages, tags=ARM_TAGS, constraints={}) == []
    )
    pinned = parse_constraints(["Cython<0.29.37  # old sdist"], "bc.txt")
    found = needs_for(requires, "x==1", arm, "3.11", pages=pages, tags=ARM_TAGS, constraints=pinned)
    assert [(n.name, n.version, n.needed_by) for n in found] == [("cython", "0.29.36", "x==1")]


def test_build_dep_cache_puts_in_only_the_pinned_wheels(tmp_path: Path) -> None:
    from orchestrator.jobs.builddeps import BuildDepCache, requires_key
    from tests.wheelfactory import make_wheel

    cache = BuildDepCache(tmp_path / "deps")
    for name, version in (("setuptools", "80.0.0"), ("setuptools", "75.0.0"), ("Cython", "3.1.0")):
        cache.add_wheel(make_wheel(tmp_path / "made", name, version))
    chosen = cache.wheels_for(["setuptools==80.0", "cython==3.1.0"])
    assert sorted(p.name for p in chosen) == [
        "Cython-3.1.0-py3-none-any.whl",
        "setuptools-80.0.0-py3-none-any.whl",
    ]
    # One resolution serves every sdist with the same static requirements, in any order.
    assert requires_key(["wheel", "setuptools"], []) == requires_key(["setuptools", "wheel"], [])
    assert requires_key(["setuptools"], []) != requires_key(["setuptools"], ["Cython<3"])
    cache.save_pins("k", ["setuptools==80.0.0"])
    assert cache.pins("k", max_age=3600) == ["setuptools==80.0.0"]
    assert cache.pins("k", max_age=-1) is None  # too old: resolved again
