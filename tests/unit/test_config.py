"""The matrix loader: valid files load; every bad input names file, line and key, exit 2."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.config import Bootstrap, load_matrix
from orchestrator.config.matrix import expand
from orchestrator.core.errors import EXIT_INPUT, ConfigError
from orchestrator.model import Arch, Family
from tests.conftest import REPO, CliRunner

Write = Callable[[str, str], Path]

VALID = """
version: 1
registry: {url: 127.0.0.1:5000, repository: orchestrate/builder}
engines:
  - {name: local, slots: 2}
distros:
  - name: debian
    release: bookworm
    family: deb
    base: debian:bookworm
    python: ["3.11"]
    glibc: "2.36"
    arches: [x86_64, aarch64]
"""


def test_production_matrix_has_six_platforms() -> None:
    matrix = load_matrix(REPO / "platforms.yaml")
    names = [p.name for p in expand(matrix)]
    assert names == [
        "centos-stream9-amd64",
        "centos-stream9-arm64",
        "debian-bookworm-amd64",
        "debian-bookworm-arm64",
        "ubuntu-noble-amd64",
        "ubuntu-noble-arm64",
    ]
    families = {p.distro: p.family for p in expand(matrix)}
    assert families == {"centos": Family.RPM, "debian": Family.DEB, "ubuntu": Family.DEB}


def test_local_example_bootstraps_debian(write: Write) -> None:
    matrix = load_matrix(REPO / "examples" / "local.yaml")
    platforms = expand(matrix)
    assert [p.arch for p in platforms] == [Arch.AMD64, Arch.ARM64]
    assert all(isinstance(p.base, Bootstrap) and p.base.suite == "bookworm" for p in platforms)
    # Relative paths resolve against the matrix file, not the working directory.
    assert matrix.index.root == (REPO / "examples" / ".orchestrate" / "wheelhouse").resolve()
    assert matrix.warnings == ()  # the root stays beside the file


def test_arch_aliases_and_frozen_objects(write: Write) -> None:
    matrix = load_matrix(write("m.yaml", VALID))
    assert matrix.distros[0].arches == (Arch.AMD64, Arch.ARM64)
    with pytest.raises(Exception, match="frozen"):
        matrix.distros[0].release = "trixie"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("given", "arch", "debian", "triplet"),
    [
        ("ppc64el", Arch.PPC64LE, "ppc64el", "powerpc64le-linux-gnu"),
        ("powerpc64le", Arch.PPC64LE, "ppc64el", "powerpc64le-linux-gnu"),
        ("ppc64le", Arch.PPC64LE, "ppc64el", "powerpc64le-linux-gnu"),
        ("s390x", Arch.S390X, "s390x", "s390x-linux-gnu"),
        ("riscv64", Arch.RISCV64, "riscv64", "riscv64-linux-gnu"),
        ("aarch64", Arch.ARM64, "arm64", "aarch64-linux-gnu"),
    ],
)
def test_the_five_arches_and_their_names(
    write: Write, given: str, arch: Arch, debian: str, *, triplet: str
) -> None:
    matrix = load_matrix(write("m.yaml", VALID.replace("[x86_64, aarch64]", f"[{given}]")))
    assert matrix.distros[0].arches == (arch,)
    assert (arch.debian, arch.triplet) == (debian, triplet)


def test_an_unknown_arch_names_the_five(write: Write, cli: CliRunner) -> None:
    path = write("m.yaml", VALID.replace("[x86_64, aarch64]", "[mips64el]"))
    result = cli("matrix", "validate", "-m", str(path))
    assert result.code == 2
    for arch in ("amd64", "arm64", "ppc64le", "s390x", "riscv64"):
        assert arch in result.err


def test_matrix_show_json_lists_the_six_platforms(cli: CliRunner) -> None:
    import json

    result = cli("matrix", "show", "--matrix", str(REPO / "platforms.yaml"), "--format", "json")
    assert result.code == 0
    rows = json.loads(result.out)
    assert len(rows) == 6
    assert {"name", "distro", "release", "arch", "family", "python"} <= set(rows[0])
    assert rows[3] == {
        **rows[3],
        "name": "debian-bookworm-arm64",
        "arch": "arm64",
        "family": "deb",
        "python": ["3.11"],
    }


BAD_CASES = {
    # name: (text, expected line, expected key fragment, expected message fragment)
    "yaml syntax": (VALID.replace("family: deb", "family: [deb"), 9, None, "YAML syntax error"),
    "unknown top key": (VALID + "enginez: []\n", 13, "enginez", "did you mean 'engines'"),
    "unknown nested key": (
        VALID.replace("    glibc:", "    glibcc: '2.36'\n    glibc:"),
        11,
        "distros[0].glibcc",
        "did you mean 'glibc'",
    ),
    "unknown key in list item": (
        VALID.replace("{name: local, slots: 2}", "{name: local, slot: 2}"),
        4,
        "engines[0].slot",
        "did you mean 'slots'",
    ),
    "unknown engine kind": (
        VALID.replace("{name: local, slots: 2}", "{name: local, kind: containerd}"),
        4,
        "engines[0].kind",
        "'docker' or 'podman'",
    ),
    "unknown ulimit": (
        VALID.replace("{name: local, slots: 2}", "{name: local, ulimits: {nofiles: 1024}}"),
        4,
        "engines[0].ulimits.nofiles",
        "'nofile'",
    ),
    "unknown key in base": (
        VALID.replace("base: debian:bookworm", "base: {bootstrap: debootstrap, suit: bookworm}"),
        9,
        "distros[0].base.suit",
        "did you mean 'suite'",
    ),
    "unknown arch": (
        VALID.replace("aarch64]", "mips64el]"),
        12,
        "distros[0].arches[1]",
        "unknown arch 'mips64el'",
    ),
    "unknown family": (
        VALID.replace("family: deb", "family: apk"),
        8,
        "distros[0].family",
        "unknown package family 'apk'",
    ),
    "duplicate platform": (
        VALID + "  - {name: debian, release: bookworm, family: deb, base: debian:bookworm,"
        " python: ['3.11'], glibc: '2.36', arches: [amd64]}\n",
        13,
        "distros[1]",
        "duplicate platform 'debian-bookworm'",
    ),
    "duplicate arch": (
        VALID.replace("aarch64]", "amd64]"),
        12,
        "distros[0].arches",
        "an arch is listed twice",
    ),
    "duplicate python": (
        VALID.replace('python: ["3.11"]', 'python: ["3.11", "3.11"]'),
        10,
        "distros[0].python",
        "python 3.11 is listed twice",
    ),
    "duplicate engine": (
        VALID.replace("  - {name: local, slots: 2}", "  - {name: local}\n  - {name: local}"),
        5,
        "engines[1]",
        "duplicate engine name 'local'",
    ),
    "duplicate yaml key": (
        VALID.replace("    glibc:", "    release: trixie\n    glibc:"),
        11,
        "distros[0].release",
        "key appears twice",
    ),
    "wrong type int": (
        VALID.replace("slots: 2", "slots: two"),
        4,
        "engines[0].slots",
        "must be a whole number",
    ),
    "wrong type python": (
        VALID.replace('["3.11"]', "[3.11]"),
        10,
        "distros[0].python[0]",
        "must be a quoted string",
    ),
    "wrong type list": (
        VALID.replace("arches: [x86_64, aarch64]", "arches: amd64"),
        12,
        "distros[0].arches",
        "must be a list",
    ),
    "empty list": (
        VALID.replace("arches: [x86_64, aarch64]", "arches: []"),
        12,
        "distros[0].arches",
        "needs at least 1 item",
    ),
    "missing base": (
        VALID.replace("    base: debian:bookworm\n", ""),
        6,
        "distros[0].base",
        "missing required key 'base'",
    ),
    "empty distros": (
        VALID.split("distros:", maxsplit=1)[0] + "distros: []\n",
        5,
        "distros",
        "at least 1 item",
    ),
    "empty file": ("# nothing here\n", 1, None, "the matrix is empty"),
    "not a mapping": ("- a\n- b\n", 1, None, "must be a mapping"),
    "bad engine url": (
        VALID.replace("{name: local, slots: 2}", "{name: local, url: http://x}"),
        4,
        "engines[0].url",
        "unix://, tcp:// or ssh://",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_matrix_names_file_line_and_key(case: str, write: Write, cli: CliRunner) -> None:
    text, line, key, fragment = BAD_CASES[case]
    path = write("bad.yaml", text)
    result = cli("matrix", "validate", str(path))
    assert result.code == EXIT_INPUT
    assert f"{path}:{line}:" in result.err
    if key:
        assert f": {key}:" in result.err
    assert fragment in result.err
    assert "Traceback" not in result.err + result.out
    for pydantic_words in ("should be", "after validation", "Input should", "valid tuple"):
        assert pydantic_words not in result.err  # our words, not the validator's


def test_missing_file_is_exit_2(tmp_path: Path, cli: CliRunner) -> None:
    result = cli("matrix", "show", "--matrix", str(tmp_path / "nope.yaml"))
    assert result.code == EXIT_INPUT
    assert f"{tmp_path / 'nope.yaml'}: file does not exist" in result.err


def test_all_problems_reported_at_once(write: Write) -> None:
    text = VALID.replace("family: deb", "family: apk").replace("aarch64]", "sparc]")
    with pytest.raises(ConfigError) as info:
        load_matrix(write("m.yaml", text))
    assert "apk" in info.value.message
    assert "also" in info.value.message
    assert "sparc" in info.value.message


def test_missing_ca_certificate_is_named(write: Write, cli: CliRunner) -> None:
    path = write("m.yaml", VALID + "builder: {ca_certificates: [corp-ca.pem]}\n")
    result = cli("matrix", "validate", str(path))
    assert result.code == EXIT_INPUT
    assert "builder.ca_certificates[0]" in result.err
    assert "corp-ca.pem" in result.err


def test_debug_shows_traceback(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.cli import main

    path = write("m.yaml", "distros: []\n")
    with pytest.raises(SystemExit) as exited:
        main(["--debug", "matrix", "validate", str(path)])
    assert exited.value.code == 2  # --debug adds the traceback, not another exit code
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "ConfigError" in err
