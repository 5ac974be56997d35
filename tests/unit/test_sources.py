"""Sdists by hash: a content-addressed cache that downloads once, refuses a wrong
file, notices a tampered copy; and what an sdist says (purity, build requirements)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from orchestrator.jobs.sources import (
    CYTHON_HEADER,
    LEGACY_REQUIRES,
    HashMismatch,
    SdistCache,
    SdistRef,
    cython_pin,
    facts,
    generated_members,
)


def make_sdist(folder: Path, name: str, files: dict[str, bytes]) -> Path:
    path = folder / f"{name}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member, data in files.items():
            info = tarfile.TarInfo(f"{name}/{member}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def ref_of(path: Path, sha256: str | None = None) -> SdistRef:
    digest = sha256 or hashlib.sha256(path.read_bytes()).hexdigest()
    return SdistRef(path.name, path.as_uri(), digest)


@pytest.fixture
def sdist(tmp_path: Path) -> Path:
    pyproject = b'[build-system]\nrequires = ["setuptools>=61", "Cython<3"]\n'
    setup = b"from Cython.Build import cythonize\nsetup(ext_modules=cythonize('demo/_x.pyx'))\n"
    files = {"pyproject.toml": pyproject, "setup.py": setup, "demo/_x.pyx": b""}
    return make_sdist(tmp_path, "demo-1.0", files)


def test_downloads_once_for_every_platform_and_run(tmp_path: Path, sdist: Path) -> None:
    cache = SdistCache(tmp_path / "cache")
    first = cache.get(ref_of(sdist))
    again = cache.get(ref_of(sdist))
    assert first == again
    assert first.read_bytes() == sdist.read_bytes()
    assert cache.downloads == 1
    later_run = SdistCache(tmp_path / "cache")
    later_run.get(ref_of(sdist))
    assert later_run.downloads == 0


def test_a_file_that_does_not_match_the_index_hash_is_refused(tmp_path: Path, sdist: Path) -> None:
    cache = SdistCache(tmp_path / "cache", backoff=0)
    with pytest.raises(HashMismatch, match="the index says"):
        cache.get(ref_of(sdist, sha256="0" * 64))
    assert cache.downloads == 1  # not retried
    assert not list((tmp_path / "cache").rglob("*.tar.gz"))  # nothing kept


def test_a_tampered_cached_copy_is_noticed_and_fetched_again(tmp_path: Path, sdist: Path) -> None:
    lines: list[str] = []
    cache = SdistCache(tmp_path / "cache", log=lines.append)
    path = cache.get(ref_of(sdist))
    path.write_bytes(b"tampered")
    assert cache.get(ref_of(sdist)).read_bytes() == sdist.read_bytes()
    assert cache.downloads == 2
    assert "does not match sha256" in lines[0]


def test_facts_read_build_requirements_and_purity(tmp_path: Path, sdist: Path) -> None:
    got = facts(ref_of(sdist), sdist)
    assert got.build_requires == ("setuptools>=61", "Cython<3")
    assert got.pure is False  # a .pyx
    assert got.compiled == 1

    legacy = make_sdist(tmp_path, "old-0.1", {"setup.py": b"", "old/__init__.py": b""})
    old = facts(ref_of(legacy), legacy)
    assert old.build_requires == LEGACY_REQUIRES  # no pyproject: setuptools, as pip assumes
    assert old.pure is True
    assert old.expected_native < got.expected_native  # compiled code takes longer


@pytest.mark.parametrize(
    ("files", "pure"),
    [
        # salt 3008.0: a .c and two .go files for packaging tools, which no script builds
        ({"setup.py": b"setup(name='salt')", "pkg/old/grab.c": b"", "pkg/w/main.go": b""}, True),
        ({"setup.py": b"setup(ext_modules=[Extension('x', ['x.c'])])", "x.c": b""}, False),
        ({"pyproject.toml": b"[tool.setuptools]\next-modules = [{name='x'}]", "x.c": b""}, False),
        ({"setup.cfg": b"[options]\ncffi_modules = build.py:ffi", "x.c": b""}, False),
        ({"pyproject.toml": b"[build-system]\nrequires=['maturin']", "src/lib.rs": b""}, False),
        ({"setup.py": b"setup()", "meson.build": b"", "x.c": b""}, False),  # a build file
        ({"PKG-INFO": b"", "x.c": b""}, False),  # no script to read: compiled, as before
    ],
)
def test_compiled_files_no_build_script_names_leave_an_sdist_pure(
    tmp_path: Path, files: dict[str, bytes], *, pure: bool
) -> None:
    path = make_sdist(tmp_path, "p-1.0", files)
    assert facts(ref_of(path), path).pure is pure


CYTHONIZE = b"from Cython.Build import cythonize\nsetup(ext_modules=cythonize('x.pyx'))\n"


@pytest.mark.parametrize(
    ("files", "portable"),
    [
        ({"setup.py": CYTHONIZE, "x.pyx": b"def f(): return 1\n"}, True),  # krb5, gssapi
        ({"setup.py": CYTHONIZE, "x.pyx": b"", "x.c": b"/* shipped */"}, False),  # C shipped
        ({"setup.py": CYTHONIZE, "x.pyx": b'IF UNAME_SYSNAME == "Linux":\n    pass\n'}, False),
        ({"setup.py": CYTHONIZE, "x.pyx": b"", "c.pxi": b"DEF BIG = 1\n"}, False),
        ({"setup.py": CYTHONIZE + b"# compile_time_env={'X': 1}\n", "x.pyx": b""}, False),
        ({"setup.py": b"setup()", "x.c": b""}, False),  # no Cython at all
    ],
)
def test_cython_output_is_shared_only_when_it_cannot_depend_on_the_platform(
    tmp_path: Path, files: dict[str, bytes], *, portable: bool
) -> None:
    path = make_sdist(tmp_path, "c-1.0", files)
    assert facts(ref_of(path), path).portable_cython is portable


def test_kept_cython_output_goes_under_the_source_folder_and_nothing_else() -> None:
    """What a build wrote into generated.tar may be anything: only regular C files with
    Cython's header at plain relative paths are taken, dated as asked."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, body in {
            "src/m.c": CYTHON_HEADER + b"3.2.1 */\nint x;\n",
            "src/m_api.h": CYTHON_HEADER + b"3.2.1 */\n",
            "src/hand.c": b"/* written by hand */\n",
            "../evil.c": CYTHON_HEADER + b"*/",
            "/etc/evil.c": CYTHON_HEADER + b"*/",
            "src/m.py": CYTHON_HEADER + b"*/",
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        link = tarfile.TarInfo("src/link.c")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    got = generated_members(buffer.getvalue(), under="job/build/p-1.0", mtime=2e9)
    assert [info.name for info, _data in got] == [
        "job/build/p-1.0/src/m.c",
        "job/build/p-1.0/src/m_api.h",
    ]
    assert {info.mtime for info, _data in got} == {2_000_000_000}
    assert got[0][1].endswith(b"int x;\n")
    assert generated_members(b"not a tar", under="job/build", mtime=0) == []
    assert cython_pin(["setuptools==80.0", "cython==3.2.1"]) == "Cython==3.2.1"
    assert cython_pin(["setuptools==80.0"]) == ""


@pytest.mark.parametrize("name", ["../../evil.tar.gz", ".hidden.tar.gz", "a\0b.tar.gz", "x" * 300])
def test_crafted_sdist_names_are_refused(tmp_path: Path, sdist: Path, name: str) -> None:
    from orchestrator.core.errors import UnsafeName

    with pytest.raises(UnsafeName):
        SdistCache(tmp_path / "cache").get(SdistRef(name, sdist.as_uri(), None))
    assert not (tmp_path / "evil.tar.gz").exists()
