"""The pure decision: upstream, build, cached, unavailable, excluded; with reasons."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from orchestrator.config import SkipSpec, load_matrix
from orchestrator.config.matrix import expand, select
from orchestrator.core.errors import RequirementsError
from orchestrator.model import Action
from orchestrator.plan.decide import AbiCheck, Decision, Rules, decide
from orchestrator.plan.gather import resolve_unpinned
from orchestrator.plan.requirements import read
from orchestrator.plan.tags import TagSet, derived_tags
from orchestrator.plan.upstream import IndexFile, ProjectPage, parse_html, parse_json
from tests.conftest import REPO

PLATFORMS = select(expand(load_matrix(REPO / "platforms.yaml")), ["debian-*"])
TAGS = {
    (p.name, py): TagSet.of(py, derived_tags(py, p.arch, p.glibc), "derived")
    for p in PLATFORMS
    for py in p.python
}
Write = Callable[[str, str], Path]


def page(*names: str, yanked: tuple[str, ...] = (), rp: str | None = None) -> ProjectPage:
    return ProjectPage.of(
        IndexFile(
            filename=n,
            url=f"https://files/{n}",
            sha256=None,
            requires_python=rp,
            yanked=n in yanked,
        )
        for n in names
    )


def plan(
    write: Write,
    text: str,
    pages: Mapping[str, ProjectPage | None],
    cached: dict[str, dict[tuple[str, str], str]] | None = None,
    *,
    skip: tuple[SkipSpec, ...] = (),
    from_source: frozenset[str] = frozenset(),
    abi: AbiCheck | None = None,
) -> dict[tuple[str, str], Decision]:
    reqs = read([write("r.txt", text)], [])
    out = decide(
        PLATFORMS,
        reqs,
        pages,
        TAGS,
        cached=cached or {},
        rules=Rules(skip=skip, from_source=from_source, overrides=None, abi=abi),
    )
    return {(d.platform.rsplit("-", 1)[1], d.name): d for d in out}


def test_upstream_names_the_best_wheel(write: Write) -> None:
    files = page(
        "pyyaml-6.0.1.tar.gz",
        "PyYAML-6.0.1-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "PyYAML-6.0.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "PyYAML-6.0.1-cp311-cp311-musllinux_1_1_x86_64.whl",
        "PyYAML-6.0.1-cp311-cp311-win_amd64.whl",
    )
    got = plan(write, "PyYAML==6.0.1\n", {"pyyaml": files})
    assert got[("amd64", "pyyaml")].action == Action.UPSTREAM
    assert got[("amd64", "pyyaml")].wheel == (
        "PyYAML-6.0.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    )
    assert "aarch64" in (got[("arm64", "pyyaml")].wheel or "")


def test_build_reasons(write: Write) -> None:
    pages = {
        "netifaces": page(
            "netifaces-0.11.0.tar.gz", "netifaces-0.11.0-cp39-cp39-manylinux1_x86_64.whl"
        ),
        "libsass": page(
            "libsass-0.23.0.tar.gz", "libsass-0.23.0-cp38-abi3-manylinux_2_17_x86_64.whl"
        ),
        "python-ldap": page("python-ldap-3.4.7.tar.gz"),
        "newglibc": page(
            "newglibc-1.0.tar.gz",
            "newglibc-1.0-cp311-cp311-manylinux_2_39_x86_64.whl",
            "newglibc-1.0-cp311-cp311-manylinux_2_39_aarch64.whl",
        ),
        "muslonly": page(
            "muslonly-1.0.tar.gz",
            "muslonly-1.0-cp311-cp311-musllinux_1_2_aarch64.whl",
            "muslonly-1.0-cp311-cp311-musllinux_1_2_x86_64.whl",
        ),
    }
    text = "netifaces==0.11.0\nlibsass==0.23.0\npython-ldap==3.4.7\nnewglibc==1.0\nmuslonly==1.0\n"
    got = plan(write, text, pages)
    assert got[("amd64", "netifaces")].reason == "no cp311 wheel (has cp39)"
    assert got[("arm64", "netifaces")].reason == "wheels only for x86_64"
    assert got[("amd64", "libsass")].action == Action.UPSTREAM
    assert got[("arm64", "libsass")].reason == "wheels only for x86_64"
    assert got[("arm64", "python-ldap")].reason == "sdist only"
    assert got[("arm64", "python-ldap")].sdist == "python-ldap-3.4.7.tar.gz"
    assert got[("amd64", "newglibc")].reason == "wheels need glibc 2.39, platform has 2.36"
    assert got[("arm64", "muslonly")].reason == "only musllinux wheels for aarch64"
    assert all(
        got[(a, n)].action == Action.BUILD
        for a in ("arm64",)
        for n in ("netifaces", "python-ldap", "newglibc", "muslonly")
    )


def test_unavailable_cases(write: Write) -> None:
    pages: dict[str, ProjectPage | None] = {
        # protobuf 3.12.0 shipped wheels for x86 only and no sdist
        "protobuf": page("protobuf-3.12.0-cp38-cp38-manylinux1_x86_64.whl"),
        "ghost": None,
        "six": page("six-1.16.0.tar.gz"),
        "gone": page("gone-1.0.tar.gz", yanked=("gone-1.0.tar.gz",)),
        "future": page("future-1.0.tar.gz", rp=">=3.12"),
    }
    text = "protobuf==3.12.0\nghost==1.0\nsix==9.9\ngone==1.0\nfuture==1.0\n"
    got = plan(write, text, pages)
    assert got[("arm64", "protobuf")].action == Action.UNAVAILABLE
    assert got[("arm64", "protobuf")].reason == "no sdist and wheels only for x86_64"
    assert got[("arm64", "ghost")].reason == "project not found on the index"
    assert got[("arm64", "six")].reason == "no version 9.9 on the index"
    assert got[("arm64", "future")].reason == "no sdist and requires-python >=3.12 excludes 3.11"


def test_an_exact_pin_of_a_yanked_release_is_planned_as_pip_installs_it(write: Write) -> None:
    """PEP 592: pip installs a yanked file when the pin is exact (numpy==2.4.0's case)."""
    pages: dict[str, ProjectPage | None] = {
        "gone": page("gone-1.0.tar.gz", yanked=("gone-1.0.tar.gz",)),
        "numpy": page(
            "numpy-2.4.0-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl",
            "numpy-2.4.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
            yanked=(
                "numpy-2.4.0-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl",
                "numpy-2.4.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
            ),
        ),
    }
    got = plan(write, "gone==1.0\nnumpy==2.4.0\n", pages)
    assert got[("arm64", "gone")].action == Action.BUILD
    assert "PEP 592" in got[("arm64", "gone")].reason
    assert got[("arm64", "numpy")].action == Action.UPSTREAM
    assert "yanked" in got[("arm64", "numpy")].reason


def test_cached_excluded_and_upstream_beats_cache(write: Write) -> None:
    pages = {
        "python-ldap": page("python-ldap-3.4.7.tar.gz"),
        "six": page("six-1.16.0-py2.py3-none-any.whl"),
    }
    cached = {
        "debian-bookworm-arm64": {
            ("python-ldap", "3.4.7"): "python_ldap-3.4.7-cp311-cp311-linux_aarch64.whl",
            ("six", "1.16"): "six-1.16.0-py2.py3-none-any.whl",
        }
    }
    skip = (SkipSpec(platform="*-amd64", name="Python_LDAP", reason="built by distro"),)
    got = plan(write, "python-ldap==3.4.7\nsix==1.16.0\n", pages, cached, skip=skip)
    assert got[("arm64", "python-ldap")].action == Action.CACHED
    assert got[("arm64", "six")].action == Action.UPSTREAM
    assert got[("amd64", "python-ldap")].action == Action.EXCLUDED
    assert got[("amd64", "python-ldap")].reason == "built by distro"


def test_from_source_builds_what_the_index_has_a_wheel_for(write: Write) -> None:
    pages = {
        "greenlet": page(
            "greenlet-3.5.5.tar.gz",
            "greenlet-3.5.5-cp311-cp311-manylinux_2_24_aarch64.manylinux_2_28_aarch64.whl",
            "greenlet-3.5.5-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
        )
    }
    text = "greenlet==3.5.5\n"
    assert plan(write, text, pages)[("arm64", "greenlet")].action == Action.UPSTREAM
    got = plan(write, text, pages, from_source=frozenset({"greenlet"}))
    assert got[("arm64", "greenlet")].action == Action.BUILD
    assert got[("arm64", "greenlet")].sdist == "greenlet-3.5.5.tar.gz"
    assert "from_source" in got[("amd64", "greenlet")].reason
    cached = {"debian-bookworm-arm64": {("greenlet", "3.5.5"): "greenlet-3.5.5-x.whl"}}
    again = plan(write, text, pages, cached, from_source=frozenset({"greenlet"}))
    assert again[("arm64", "greenlet")].action == Action.CACHED  # built once, then reused


def test_markers_per_platform(write: Write) -> None:
    pages = {"a": page("a-1.0.tar.gz"), "b": page("b-2.0.tar.gz")}
    got = plan(
        write, 'a==1.0 ; platform_machine == "aarch64"\nb==2.0 ; python_version < "3.9"\n', pages
    )
    built = {k for k, d in got.items() if d.action == Action.BUILD}
    assert built == {("arm64", "a")}
    excluded = {k for k, d in got.items() if d.action == Action.EXCLUDED}
    assert excluded == {("amd64", "a"), ("amd64", "b"), ("arm64", "b")}  # a row, not silence
    assert "platform_machine" in got[("amd64", "a")].reason


def test_conflicting_pins_for_one_platform(write: Write) -> None:
    with pytest.raises(RequirementsError, match="conflicts with"):
        plan(write, "a==1.0\na==2.0\n", {"a": page("a-1.0.tar.gz")})


def test_unpinned_needs_constraint_or_resolve_latest(write: Write) -> None:
    reqs = read([write("r.txt", "six>=1.10\n")], [])
    pages: dict[str, ProjectPage | None] = {
        "six": page("six-1.15.0.tar.gz", "six-1.16.0.tar.gz", "six-1.17.0rc1.tar.gz")
    }
    with pytest.raises(RequirementsError, match="not pinned"):
        resolve_unpinned(reqs, pages, resolve_latest=False)
    assert resolve_unpinned(reqs, pages, resolve_latest=True).pins[0].version == "1.16.0"


def test_index_parsers_html_and_json() -> None:
    html = (
        '<a href="../../p/six-1.16.0.tar.gz#sha256=ab12" data-requires-python="&gt;=2.7">'
        'six-1.16.0.tar.gz</a><a href="x/six-1.0.tar.gz" data-yanked="">six-1.0.tar.gz</a>'
    )
    files = parse_html(html, "https://idx/simple/six/")
    assert files[0] == IndexFile(
        filename="six-1.16.0.tar.gz",
        url="https://idx/p/six-1.16.0.tar.gz",
        sha256="ab12",
        requires_python=">=2.7",
        yanked=False,
    )
    assert files[1].yanked
    data = {
        "files": [
            {
                "filename": "six-1.16.0.tar.gz",
                "url": "../p/six.tgz",
                "hashes": {"sha256": "ab"},
                "requires-python": ">=2.7",
                "yanked": "bad",
            }
        ]
    }
    parsed = parse_json(data, "https://idx/simple/six/")[0]
    assert parsed.url == "https://idx/simple/p/six.tgz"
    assert parsed.yanked
    assert parsed.sha256 == "ab"


def test_resolve_latest_picks_what_each_python_can_install(write: Write) -> None:
    """numpy 2.5.5 needs python >= 3.12: a 3.11 platform gets the newest that fits."""
    reqs = read([write("r.txt", "numpy>=2\n")], [])
    files = [
        IndexFile(
            filename="numpy-2.5.5.tar.gz",
            url="https://f/numpy-2.5.5.tar.gz",
            sha256=None,
            requires_python=">=3.12",
            yanked=False,
        ),
        IndexFile(
            filename="numpy-2.3.0.tar.gz",
            url="https://f/numpy-2.3.0.tar.gz",
            sha256=None,
            requires_python=">=3.11",
            yanked=False,
        ),
        IndexFile(
            filename="numpy-2.4.0.tar.gz",
            url="https://f/numpy-2.4.0.tar.gz",
            sha256=None,
            requires_python=">=3.11",
            yanked=True,
        ),
    ]
    pages: dict[str, ProjectPage | None] = {"numpy": ProjectPage.of(files)}
    one = resolve_unpinned(reqs, pages, resolve_latest=True, pythons=["3.11"]).pins
    assert [(p.version, p.marker) for p in one] == [("2.3.0", None)]  # 2.4.0 is yanked
    two = resolve_unpinned(reqs, pages, resolve_latest=True, pythons=["3.11", "3.12"]).pins
    assert sorted((p.version, str(p.marker)) for p in two) == [
        ("2.3.0", 'python_version == "3.11"'),
        ("2.5.5", 'python_version == "3.12"'),
    ]


@pytest.mark.parametrize(
    ("project", "filename", "version"),
    [
        ("pybbox", "pybbox-0.0.5-alpha.zip", "0.0.5a0"),
        ("pyyeelight", "pyyeelight-1.0-beta.tar.gz", "1b0"),
        ("Zope.Interface", "zope_interface-5.5.2.tar.gz", "5.5.2"),
        ("python-ldap", "python-ldap-3.4.7.tar.gz", "3.4.7"),
    ],
)
def test_sdist_versions_are_read_after_the_project_name(
    project: str, filename: str, version: str
) -> None:
    """As pip reads them: a version with a hyphen of its own is not cut at its last one."""
    from orchestrator.plan.upstream import file_version

    assert file_version(filename, project) == version
    files = [
        IndexFile(
            filename=filename,
            url=f"https://files/{filename}",
            sha256=None,
            requires_python=None,
            yanked=False,
        )
    ]
    found = ProjectPage.of(files, project)
    assert [f.filename for f in found.files(version)] == [filename]
    assert len(found.versions()) == 1


def test_html_parser_reads_what_browsers_read_of_an_anchor() -> None:
    """Quoting styles, case, entities, comments, nested markup, bare attributes."""
    html = """<!DOCTYPE html><html><body><!-- <a href="gone-1.0.tar.gz">gone</a> -->
    <A HREF='../x/a-1.0.tar.gz#sha256=aa' data-requires-python="&gt;=3.8" >a-1.0.tar.gz</A>
    <a href=b-1.0.tar.gz data-yanked>b&amp;c-1.0.tar.gz</a><br/>
    <a href="c-1.0.tar.gz" data-yanked="why &quot;x&quot;"><span>c-1.0.tar.gz</span></a>
    <a href="https://files.example/p/d-1.0.whl">
      d-1.0.whl
    </a><abbr>not a link</abbr><area href="e-1.0.tar.gz">
    <a href="https://h/p/f-1.0.tar.gz?x=1">f-1.0.tar.gz</a></body></html>"""
    files = parse_html(html, "https://idx/simple/p/")
    assert [f.filename for f in files] == [
        "a-1.0.tar.gz",
        "b&c-1.0.tar.gz",
        "c-1.0.tar.gz",
        "d-1.0.whl",
        "f-1.0.tar.gz",
    ]
    assert files[0] == IndexFile(
        filename="a-1.0.tar.gz",
        url="https://idx/simple/x/a-1.0.tar.gz",
        sha256="aa",
        requires_python=">=3.8",
        yanked=False,
    )
    assert [f.yanked for f in files] == [False, True, True, False, False]
    assert files[1].url == "https://idx/simple/p/b-1.0.tar.gz"
    assert files[3].url == "https://files.example/p/d-1.0.whl"
    assert files[4].url == "https://h/p/f-1.0.tar.gz?x=1"


@pytest.mark.parametrize(
    "page",
    [
        "<a " * 200_000,
        "<a x>" + "<" * 600_000,
        "<!--" * 150_000,
        '<a href="' * 60_000,
        "<a x='" + "<a '" * 150_000,
    ],
)
def test_html_parser_stays_linear_on_hostile_pages(page: str) -> None:
    """Unclosed tags, quotes and comments: each anchor is read only up to the next
    one (a backtracking pattern took 12 s on 96 kB of '<a ')."""
    started = time.monotonic()
    parse_html(page, "https://idx/simple/p/")
    assert time.monotonic() - started < 5
