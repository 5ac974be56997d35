"""Requirements files as users have them: other encodings, a BOM, quoted includes,
pip's own options (followed or ignored with a notice), --require-hashes and markers
that exclude a pin. Through `orchestrate plan`, against a local file:// index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.plan.requirements import read
from tests.conftest import CliRunner
from tests.matrices import local_matrix_copy
from tests.wheelfactory import make_sdist, simple_index


@pytest.fixture
def matrix(tmp_path: Path) -> Path:
    files = [make_sdist(tmp_path / "sdists", "demo", "1.0"), make_sdist(tmp_path / "s", "x", "2")]
    index = simple_index(tmp_path / "simple", files)
    return local_matrix_copy(
        tmp_path / "m.yaml",
        tmp_path / "wheels",
        {"upstream: https://pypi.org/simple/": f"upstream: {index}"},
    )


def plan(cli: CliRunner, matrix: Path, reqs: Path) -> tuple[int, list[dict[str, str]], str]:
    result = cli("plan", "-m", str(matrix), "-r", str(reqs), "--format", "json")
    assert "Traceback" not in result.err
    return result.code, json.loads(result.out) if result.code == 0 else [], result.err


@pytest.mark.parametrize(
    "encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32", "latin-1"]
)
def test_encodings(cli: CliRunner, matrix: Path, tmp_path: Path, encoding: str) -> None:
    text = "# café, naïve\ndemo==1.0\n"
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    (tmp_path / "r.txt").write_bytes(data)
    code, rows, err = plan(cli, matrix, tmp_path / "r.txt")
    assert code == 0, err
    assert {r["name"] for r in rows} == {"demo"}


def test_quoted_include_with_a_space(cli: CliRunner, matrix: Path, tmp_path: Path) -> None:
    (tmp_path / "my reqs.txt").write_text("demo==1.0\n")
    (tmp_path / "r.txt").write_text('-r "my reqs.txt"\n')
    code, rows, err = plan(cli, matrix, tmp_path / "r.txt")
    assert code == 0, err
    assert {r["name"] for r in rows} == {"demo"}


def test_pip_options_are_ignored_with_a_notice(
    cli: CliRunner, matrix: Path, tmp_path: Path
) -> None:
    (tmp_path / "r.txt").write_text(
        "--index-url https://example.invalid/simple\n--no-index\n--prefer-binary\n"
        "--trusted-host example.invalid\ndemo==1.0\n"
    )
    code, rows, err = plan(cli, matrix, tmp_path / "r.txt")
    assert code == 0, err
    assert "r.txt:1: --index-url is ignored: the matrix's index.upstream is the index" in err
    assert "r.txt:2: --no-index is ignored" in err
    assert {r["name"] for r in rows} == {"demo"}


def test_require_hashes_is_honoured(cli: CliRunner, matrix: Path, tmp_path: Path) -> None:
    (tmp_path / "r.txt").write_text("--require-hashes\ndemo==1.0\n")
    code, _rows, err = plan(cli, matrix, tmp_path / "r.txt")
    assert code == 2
    assert "r.txt:2: demo==1.0 has no --hash" in err
    (tmp_path / "r.txt").write_text(f"--require-hashes\ndemo==1.0 --hash=sha256:{'0' * 64}\n")
    code, rows, err = plan(cli, matrix, tmp_path / "r.txt")
    assert code == 0, err
    assert {r["action"] for r in rows} == {"unavailable"}  # no sdist has that hash
    assert "--hash" in rows[0]["reason"]


def test_a_marker_that_excludes_a_pin_gives_an_excluded_row(
    cli: CliRunner, matrix: Path, tmp_path: Path
) -> None:
    (tmp_path / "r.txt").write_text(
        "demo==1.0; platform_machine == 'x86_64'\nx==2; python_version < '3'\n"
    )
    code, rows, err = plan(cli, matrix, tmp_path / "r.txt")
    assert code == 0, err
    got = {(r["platform"].rsplit("-", 1)[1], r["name"]): r for r in rows}
    assert got[("amd64", "demo")]["action"] == "build"
    assert got[("arm64", "demo")]["action"] == "excluded"
    assert "platform_machine" in got[("arm64", "demo")]["reason"]
    assert got[("amd64", "x")]["action"] == "excluded"


def test_nul_bytes_are_refused(tmp_path: Path) -> None:
    from orchestrator.core.errors import RequirementsError

    (tmp_path / "r.txt").write_bytes(b"demo==1.0\n\x00\x01binary")
    with pytest.raises(RequirementsError, match="NUL"):
        read([tmp_path / "r.txt"], [])


def test_pins_the_index_does_not_have_are_exit_1(
    cli: CliRunner, matrix: Path, tmp_path: Path
) -> None:
    (tmp_path / "r.txt").write_text("demo==1.0\nthis-pkg-does-not-exist==1.0\ndemo2==9\nx==99.0\n")
    result = cli("plan", "-m", str(matrix), "-r", str(tmp_path / "r.txt"))
    assert result.code == 1, result.err
    assert "not on the index: this-pkg-does-not-exist==1.0 (" in result.err
    assert "not on the index: x==99.0" in result.err
    assert "--allow-unavailable" in result.err
    allowed = cli("plan", "-m", str(matrix), "-r", str(tmp_path / "r.txt"), "--allow-unavailable")
    assert allowed.code == 0, allowed.err
    assert "not on the index: x==99.0" in allowed.err  # still said


def test_yanked_exact_pins_and_resolve_latest_through_the_cli(
    cli: CliRunner, tmp_path: Path
) -> None:
    """PEP 592: an exact pin of a yanked release is planned as pip installs it; and
    --resolve-latest skips yanked releases and those the Python cannot install."""
    made = tmp_path / "made"
    files = [
        make_sdist(made, "demo", "1.0"),
        make_sdist(made, "demo", "2.0"),
        make_sdist(made, "demo", "3.0"),
    ]
    index = simple_index(
        tmp_path / "simple",
        files,
        yanked=("demo-2.0.tar.gz",),
        requires_python={"demo-3.0.tar.gz": ">=3.13"},
    )
    matrix = local_matrix_copy(
        tmp_path / "m.yaml",
        tmp_path / "wheels",
        {"upstream: https://pypi.org/simple/": f"upstream: {index}"},
    )
    (tmp_path / "pinned.txt").write_text("demo==2.0\n")
    code, rows, err = plan(cli, matrix, tmp_path / "pinned.txt")
    assert code == 0, err
    assert {r["action"] for r in rows} == {"build"}
    assert "PEP 592" in rows[0]["reason"]
    (tmp_path / "open.txt").write_text("demo>=1\n")
    result = cli(
        "plan",
        "-m",
        str(matrix),
        "-r",
        str(tmp_path / "open.txt"),
        "--resolve-latest",
        "--format",
        "json",
    )
    assert result.code == 0, result.err
    assert {r["version"] for r in json.loads(result.out)} == {"1.0"}  # 3.0 needs 3.13, 2.0 yanked


def test_an_unreadable_include_names_the_file_and_line_that_included_it(
    cli: CliRunner, matrix: Path, tmp_path: Path
) -> None:
    (tmp_path / "inner.txt").write_text("six==1.16.0\n-r /dev/zero\n")
    (tmp_path / "outer.txt").write_text("# top\n-r inner.txt\n")
    result = cli("plan", "-m", str(matrix), "-r", str(tmp_path / "outer.txt"))
    assert result.code == 2, result.err
    assert "/dev/zero: cannot read" in result.err
    assert f"(included by {tmp_path / 'inner.txt'}:2)" in result.err
    assert f"(included by {tmp_path / 'outer.txt'}:2)" in result.err
    assert "Traceback" not in result.err
