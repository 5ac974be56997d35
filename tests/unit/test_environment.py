"""The build environment made on the host, and the dpkg facts of the smoke test's fast
path: pure logic on real wheels, sdists and a real dpkg status file's shape."""

from __future__ import annotations

import contextlib
import io
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag
from packaging.utils import canonicalize_name

from orchestrator.core.tars import joined
from orchestrator.engines import RunRequest
from orchestrator.jobs.environment import (
    BUILD_USER,
    best_dists,
    closure,
    installed_members,
    job_tar,
    parse_pyvenv,
    resolve_target,
    venv_members,
)
from orchestrator.jobs.prepare import EnvImages
from orchestrator.jobs.sdist import read_source, setup_requires, static_requires
from orchestrator.model import Arch
from orchestrator.plan.tags import TagSet
from orchestrator.trust.packages import PackageDb, parse_lists, parse_status
from orchestrator.trust.smoke import verdict
from tests.unit.fakes import FakeContainer, FakeEngine
from tests.wheelfactory import make_wheel

ENV = {
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "platform_machine": "aarch64",
    "sys_platform": "linux",
    "implementation_name": "cpython",
    "os_name": "posix",
    "platform_system": "Linux",
    "platform_python_implementation": "CPython",
}
ARM_TAGS = TagSet.of(
    "3.11",
    [
        Tag("cp311", "cp311", "manylinux_2_17_aarch64"),
        Tag("cp311", "abi3", "linux_aarch64"),
        Tag("py3", "none", "linux_aarch64"),
        Tag("py3", "none", "any"),
    ],
    "probe",
)
PYVENV = "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.2\n"


def _pool(tmp_path: Path) -> dict:  # type: ignore[type-arg]
    wheels = [
        make_wheel(tmp_path, "setuptools", "75.1.0"),
        make_wheel(
            tmp_path,
            "setuptools-scm",
            "8.1.0",
            requires=(
                "packaging>=20",
                "setuptools",
                "tomli>=1; python_version < '3.11'",
                "rich; extra == 'rich'",
                "arm-only; platform_machine == 'aarch64'",
            ),
        ),
        make_wheel(tmp_path, "packaging", "24.1"),
        make_wheel(tmp_path, "arm-only", "1.0", "py3-none-linux_aarch64"),
        make_wheel(tmp_path, "amd-only", "1.0", "py3-none-linux_x86_64"),
    ]
    return best_dists(wheels, ARM_TAGS)


def test_closure_follows_requires_dist_under_the_targets_markers(tmp_path: Path) -> None:
    pool = _pool(tmp_path)
    assert "amd-only" not in pool  # its tags do not fit arm64
    got = closure(["setuptools-scm>=8"], pool, ENV, {})
    assert isinstance(got, list)
    assert [d.pin for d in got] == [
        "arm-only==1.0",
        "packaging==24.1",
        "setuptools==75.1.0",
        "setuptools-scm==8.1.0",
    ]
    # On x86_64 the marker is false: arm-only is not needed there.
    x86 = closure(["setuptools-scm"], pool, {**ENV, "platform_machine": "x86_64"}, {})
    assert isinstance(x86, list)
    assert "arm-only" not in [d.name for d in x86]


def test_closure_says_why_the_pool_does_not_cover(tmp_path: Path) -> None:
    pool = _pool(tmp_path)
    assert "rich" in str(closure(["setuptools-scm[rich]"], pool, ENV, {}))
    assert "0 fitting" in str(closure(["setuptools>=80"], pool, ENV, {}))
    capped = {canonicalize_name("packaging"): SpecifierSet("<24")}
    assert "packaging" in str(closure(["setuptools-scm"], pool, ENV, capped))
    assert "not a requirement!" in str(closure(["not a requirement!"], pool, ENV, {}))


def test_static_requires_reads_build_system_like_build_does() -> None:
    assert static_requires(None) == ["setuptools >= 40.8.0"]
    assert static_requires(b"[tool.black]\n") == ["setuptools >= 40.8.0"]
    assert static_requires(b'[build-system]\nrequires = ["wheel", "setuptools>=61"]\n') == [
        "setuptools>=61",
        "wheel",
    ]
    assert static_requires(b"[build-system]\nbuild-backend = 'x'\n") is None  # build refuses
    assert static_requires(b"[build-system\n") is None
    assert static_requires(b"\xff\xfe") is None


def _sdist_tar(path: Path, members: dict[str, tuple[bytes | None, int]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, (data, mode) in members.items():
            info = tarfile.TarInfo(name)
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_read_source_keeps_the_builders_modes_and_finds_the_project(tmp_path: Path) -> None:
    sdist = _sdist_tar(
        tmp_path / "p-1.0.tar.gz",
        {
            "p-1.0/setup.py": (b"x", 0o664),
            "p-1.0/bin/tool": (b"#!/bin/sh\n", 0o775),
            "p-1.0/pyproject.toml": (b"[build-system]\nrequires=['flit_core']\n", 0o644),
        },
    )
    source = read_source(sdist)
    assert source is not None
    assert source.source == "build/p-1.0"
    assert static_requires(source.pyproject) == ["flit_core"]
    modes = {i.name: i.mode for i, _ in source.members}
    assert modes["job/build/p-1.0/bin/tool"] == 0o775  # as tarfile writes it, exactly
    assert modes["job/build/p-1.0/setup.py"] == 0o664
    with tarfile.open(fileobj=io.BytesIO(job_tar(source.members))) as tar:
        owners = {(m.uid, m.gid) for m in tar.getmembers()}
        names = tar.getnames()
    assert owners == {(1000, 1000)}
    assert names[:3] == ["job", "job/build", "job/build/p-1.0"]  # parents first


def _setup_source(tmp_path: Path, files: dict[str, bytes]) -> list[str]:
    members: dict[str, tuple[bytes | None, int]] = {
        f"p-1.0/{name}": (data, 0o644) for name, data in files.items()
    }
    source = read_source(_sdist_tar(tmp_path / "p-1.0.tar.gz", members))
    assert source is not None
    return setup_requires(source)


@pytest.mark.parametrize(
    ("files", "expected"),
    [  # pact 1.12.0 and confspirator 0.3.0, as OpenStack pins them
        (
            {
                "setup.py": b"setuptools.setup(setup_requires=['pbr>=3.0', 'setuptools>=17.1'],"
                b" pbr=True)\n"
            },
            ["pbr>=3.0", "setuptools>=17.1"],
        ),
        (
            {"setup.py": b"from setuptools import setup\nsetup(setup_requires=['pbr'], pbr=True)"},
            ["pbr"],
        ),
        ({"setup.py": b"setup(setup_requires='cffi>=1.0\\n# c\\nsix')"}, ["cffi>=1.0", "six"]),
        (
            {"setup.py": b"setup()", "setup.cfg": b"[options]\nsetup_requires =\n  pbr\n  six\n"},
            ["pbr", "six"],
        ),
        # the backend is setuptools' only when pyproject.toml names it or names none
        (
            {
                "setup.py": b"setup(setup_requires=['pbr'])",
                "pyproject.toml": b"[build-system]\nbuild-backend = 'setuptools.build_meta'\n",
            },
            ["pbr"],
        ),
        (
            {
                "setup.py": b"setup(setup_requires=['pbr'])",
                "pyproject.toml": b"[build-system]\nbuild-backend = 'flit_core.buildapi'\n",
            },
            [],
        ),
        # not literal, not valid, not Python: left to the build's own round
        ({"setup.py": b"setup(setup_requires=REQS)"}, []),
        ({"setup.py": b"setup(setup_requires=['pbr', 'not a requirement!'])"}, []),
        ({"setup.py": b"setup(setup_requires=['pbr'"}, []),
        ({"setup.py": b"x = " + b"(" * 5000 + b")" * 5000 + b"\nsetup(setup_requires=['p'])"}, []),
        ({"setup.py": b"setup(setup_requires=[1, 2])"}, []),
        ({"setup.cfg": b"[options\nsetup_requires = pbr"}, []),
        ({}, []),
    ],
)
def test_setup_requires_known_before_the_build(
    tmp_path: Path, files: dict[str, bytes], expected: list[str]
) -> None:
    assert _setup_source(tmp_path, files) == expected


def test_read_source_zip_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "z-1.0.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("z-1.0/setup.py", "x")
        archive.writestr("z-1.0/README", "y")
    source = read_source(path)
    assert source is not None
    assert source.source == "build/z-1.0"
    assert source.pyproject is None
    assert {i.mode for i, d in source.members if d is not None} == {0o644}
    two = _sdist_tar(tmp_path / "t.tar.gz", {"a/x": (b"1", 0o644), "b/y": (b"2", 0o644)})
    found = read_source(two)
    assert found is not None
    assert found.source == "build"
    out = _sdist_tar(tmp_path / "o.tar.gz", {"../evil": (b"1", 0o644)})
    assert read_source(out) is None
    link = tmp_path / "l.tar.gz"
    with tarfile.open(link, "w:gz") as tar:
        info = tarfile.TarInfo("l-1/x")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    assert read_source(link) is None
    (tmp_path / "bad.tar.gz").write_bytes(b"not a tar")
    assert read_source(tmp_path / "bad.tar.gz") is None


def test_venv_and_installed_wheels_look_like_the_builders(tmp_path: Path) -> None:
    interp = parse_pyvenv(PYVENV)
    assert interp is not None
    assert interp.executable == "/usr/bin/python3.11"
    assert parse_pyvenv("home = relative\nversion = 3\n") is None
    members = {i.name: i for i, _ in venv_members(interp, "3.11")}
    assert members["job/env/bin/python3.11"].linkname == "/usr/bin/python3.11"
    assert members["job/env/bin/python"].linkname == "python3.11"
    assert members["job/env/lib64"].linkname == "lib"
    tool = make_wheel(tmp_path, "tool", "1.0", entry_points="[console_scripts]\ntool = tool:main\n")
    dists = best_dists([tool], ARM_TAGS)[canonicalize_name("tool")]
    files = {i.name: (i, d) for i, d in installed_members(dists, "3.11")}
    script_info, script = files["job/env/bin/tool"]
    assert script is not None
    assert script.startswith(b"#!/job/env/bin/python")
    assert script_info.mode & stat.S_IXUSR
    site = "job/env/lib/python3.11/site-packages"
    assert f"{site}/tool/__init__.py" in files
    assert files[f"{site}/tool-1.0.dist-info/INSTALLER"][1] == b"orchestrate\n"


def test_resolve_target_gives_pip_the_tags_in_rank_order() -> None:
    interp = parse_pyvenv(PYVENV)
    assert interp is not None
    target = resolve_target(ARM_TAGS, interp)
    assert target == {
        "platforms": ["manylinux_2_17_aarch64", "linux_aarch64"],
        "abis": ["cp311", "abi3", "none"],
        "implementation": "cp",
        "python_version": "3.11.2",
    }


STATUS = """\
Package: libc6
Status: install ok installed
Priority: required
Architecture: arm64
Depends: libgcc-s1

Package: libgcc-s1
Status: install ok installed
Priority: optional
Depends: gcc-12-base (= 12.2.0-14), libc6 (>= 2.35)

Package: gcc-12-base
Status: install ok installed

Package: libpq5
Status: install ok installed
Depends: libc6 (>= 2.34), libssl3 (>= 3.0.0) | libssl-alt,
 libldap-2.5-0 (>= 2.5.4)

Package: libssl3
Status: install ok installed
Provides: libssl-alt

Package: libldap-2.5-0
Status: install ok installed

Package: libxml2
Status: install ok installed
Depends: libicu72

Package: libicu72
Status: install ok installed

Package: gone
Status: deinstall ok config-files
"""


def _db() -> PackageDb:
    depends, base = parse_status(STATUS)
    buffer = io.BytesIO()
    lists = {
        "info/libc6:arm64.list": "/lib/aarch64-linux-gnu/libc.so.6\n/usr/share/doc/libc6\n",
        "info/libpq5:arm64.list": "/usr/lib/aarch64-linux-gnu/libpq.so.5\n",
        "info/libssl3:arm64.list": "/usr/lib/aarch64-linux-gnu/libssl.so.3\n",
        "info/libxml2:arm64.list": "/usr/lib/aarch64-linux-gnu/libxml2.so.2.9.14\n",
        "info/libicu72.list": "/usr/lib/aarch64-linux-gnu/libicuuc.so.72\n",
        "info/libxml2.md5sums": "x\n",
    }
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in lists.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return PackageDb(depends=depends, base=base, libraries=parse_lists(buffer.getvalue()))


def test_package_closure_follows_depends_alternatives_and_provides() -> None:
    db = _db()
    assert "gone" not in db.depends  # not installed
    assert db.base == frozenset({"libc6"})
    assert db.depends["libpq5"] == ("libc6", "libldap-2.5-0", "libssl3")  # continuation line
    assert db.closure(["libpq5"]) == {
        "libc6",
        "libgcc-s1",
        "gcc-12-base",
        "libpq5",
        "libssl3",
        "libldap-2.5-0",
    }
    allowed = db.allowed_libraries(["libxml2"])
    assert "/usr/lib/aarch64-linux-gnu/libicuuc.so.72" in allowed  # what libxml2 loads too
    assert "/usr/lib/aarch64-linux-gnu/libpq.so.5" not in allowed
    assert "/usr/share/doc/libc6" not in db.allowed_libraries([])
    assert db.owner("/usr/lib/aarch64-linux-gnu/libpq.so.5") == "libpq5"


@pytest.mark.parametrize("foreign", [["/usr/lib/x/libpq.so.5"], []])
def test_a_foreign_library_fails_the_verdict(foreign: list[str]) -> None:
    said = {"passed": not foreign, "checks": [{"module": "m", "status": "ok"}], "foreign": foreign}
    result = verdict(said, 0, timed_out=False, timeout=60)
    assert result.passed is (not foreign)
    assert result.foreign == foreign
    if foreign:
        assert "libpq.so.5" in result.error
        assert "runtime packages" in result.error


class _Recording(FakeContainer):
    def put(self, path: str, tar: bytes) -> None:
        assert isinstance(self.engine, _Committing)
        self.engine.puts.append(tar)


class _Committing(FakeEngine):
    """Counts what EnvImages asks of an engine."""

    def __init__(self) -> None:
        super().__init__("local", Arch.AMD64, slots=2)
        self.puts: list[bytes] = []
        self.removed: list[str] = []

    @contextlib.contextmanager
    def container(self, request: RunRequest) -> Iterator[FakeContainer]:
        assert request.network is False
        assert request.user == BUILD_USER
        yield _Recording(self, request)

    def remove_image(self, image: str) -> None:
        self.removed.append(image)


def test_env_images_made_once_per_builder_and_environment_then_removed() -> None:
    engine, images = _Committing(), EnvImages()
    first = images.image(engine, "sha256:builder", Arch.AMD64, b"env one", run="r")
    assert images.image(engine, "sha256:builder", Arch.AMD64, b"env one", run="r") == first
    other = images.image(engine, "sha256:builder", Arch.AMD64, b"env two", run="r")
    again = images.image(engine, "sha256:other-builder", Arch.AMD64, b"env one", run="r")
    assert len({first, other, again}) == 3
    assert engine.puts == [b"env one", b"env two", b"env one"]
    images.close()
    assert sorted(engine.removed) == sorted([first, other, again])
    images.close()  # nothing left to remove
    assert len(engine.removed) == 3


def test_joined_tars_hold_every_member_of_each() -> None:
    def tar_of(name: str, data: bytes) -> bytes:
        return job_tar([(_regular(name, len(data)), data)])

    whole = joined(tar_of("job/env/a.py", b"a"), tar_of("job/build/b.py", b"bb"))
    with tarfile.open(fileobj=io.BytesIO(whole)) as tar:
        names = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile("job/build/b.py").read() == b"bb"  # type: ignore[union-attr]
    assert {"job/env/a.py", "job/build/b.py"} <= set(names)
    assert names["job/env/a.py"].uid == 1000


def _regular(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, 0o644
    return info
