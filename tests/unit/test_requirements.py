"""pip-format requirements and constraints files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.core.errors import EXIT_INPUT, RequirementsError
from orchestrator.plan.requirements import Pin, read
from tests.conftest import CONSTRAINTS, REPO, CliRunner

Write = Callable[[str, str], Path]


def test_pins_markers_extras_hashes_includes(write: Write) -> None:
    write("base.txt", "six==1.16.0\n")
    write("cons.txt", "netifaces==0.11.0\n")
    path = write(
        "reqs.txt",
        """
        # comment
        -r base.txt
        -c cons.txt
        --index-url https://example.org/simple
        Routes===2.5.1  # trailing comment
        requests[socks]==2.31.0 ; python_version >= "3.8"
        PyYAML==6.0.1 \\
            --hash=sha256:0123abcd \\
            --hash=sha256:4567ef
        netifaces
        """,
    )
    reqs = read([path], [])
    by_name: dict[str, Pin] = {p.name: p for p in reqs.pins}
    assert set(by_name) == {"six", "routes", "requests", "pyyaml"}
    assert by_name["routes"].version == "2.5.1"
    assert by_name["requests"].extras == frozenset({"socks"})
    assert str(by_name["requests"].marker) == 'python_version >= "3.8"'
    assert by_name["pyyaml"].hashes == ("sha256:0123abcd", "sha256:4567ef")
    assert by_name["pyyaml"].source.line == 7  # a continued line keeps its first line
    assert [c.name for c in reqs.constraints] == ["netifaces"]
    assert [u.name for u in reqs.unpinned] == ["netifaces"]


def test_url_vcs_and_editable_are_reported_not_dropped(write: Write) -> None:
    path = write(
        "reqs.txt",
        """
        six==1.16.0
        -e git+https://github.com/x/y.git#egg=y
        git+https://github.com/x/z.git
        pkg @ https://example.org/pkg-1.0.tar.gz
        ./local/dir
        """,
    )
    reqs = read([path], [])
    assert [u.source.line for u in reqs.unsupported] == [2, 3, 4, 5]
    assert "editable" in reqs.unsupported[0].why


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("six=1.0", "not a valid requirement"),
        ("six==1.0 --hash=md5:abc", "malformed --hash"),
        ("--bogus-option x", "unknown option"),
    ],
)
def test_malformed_line_names_file_and_line(write: Write, line: str, fragment: str) -> None:
    path = write("reqs.txt", f"six==1.16.0\n{line}\n")
    with pytest.raises(RequirementsError) as info:
        read([path], [])
    assert f"{path}:2:" in info.value.message
    assert fragment in info.value.message


def test_missing_include_names_the_including_line(write: Write) -> None:
    path = write("reqs.txt", "six==1.16.0\n-r other.txt\n")
    with pytest.raises(RequirementsError, match=r"reqs.txt:2: included file .*other.txt"):
        read([path], [])


def test_openstack_constraints_parse() -> None:
    reqs = read([CONSTRAINTS], [])
    assert len(reqs.pins) == 575
    assert not reqs.unpinned
    assert not reqs.unsupported


def test_bad_requirement_through_cli_is_exit_2(write: Write, cli: CliRunner) -> None:
    path = write("reqs.txt", "six==1.16.0\nthis is not valid\n")
    result = cli("plan", "-m", str(REPO / "platforms.yaml"), "-r", str(path))
    assert result.code == EXIT_INPUT
    assert f"{path}:2: not a valid requirement" in result.err
    assert "Traceback" not in result.err
