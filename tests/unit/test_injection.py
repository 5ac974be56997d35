"""Injection through the files we read: a matrix value that would add a Dockerfile
instruction, a shared report whose fields would run on the host through
`reproduce --print`. Each is refused (exit 2, naming the file) or quoted, and the
tests prove that no injected command ran, not only that an exit code came back."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config.bindep import BindepError
from orchestrator.core.errors import InputError
from orchestrator.images.sysdeps import base_dockerfile, install_dockerfile
from tests.conftest import CliRunner
from tests.unit.test_config_hostile import GOOD
from tests.unit.test_report import _report

PLATFORM = "debian-bookworm-arm64"


# -- the matrix -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addition", "words"),
    [
        # a trailing newline, then list items that read as a RUN instruction
        (
            'overrides:\n  - name: foo\n    packages: {deb: ["libfoo\\n", "run", "touch"]}\n',
            "deb package name",
        ),
        (
            'overrides:\n  - name: foo\n    runtime_packages: {deb: ["libfoo\\n", "run"]}\n',
            "deb package name",
        ),
        ('overrides:\n  - name: foo\n    env: {X: "a\\nRUN touch /x"}\n', "spans lines"),
    ],
)
def test_matrix_values_with_a_final_newline_are_refused(
    cli: CliRunner, tmp_path: Path, addition: str, words: str
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(GOOD + addition)
    result = cli("matrix", "validate", str(path))
    assert result.code == 2, result.err
    assert str(path) in result.err
    assert words in result.err
    assert "Traceback" not in result.err


def test_an_apt_source_with_a_final_newline_is_refused(cli: CliRunner, tmp_path: Path) -> None:
    source = "deb http://deb.debian.org/debian-security bookworm-security main"
    text = GOOD.replace(
        "    packages: []\n", f'    packages: []\n    apt_sources: ["{source}\\n"]\n'
    )
    (tmp_path / "m.yaml").write_text(text)
    result = cli("matrix", "validate", str(tmp_path / "m.yaml"))
    assert result.code == 2, result.err
    assert "one-line apt source" in result.err
    # the same line without the newline is fine, and reaches the Dockerfile quoted
    (tmp_path / "m.yaml").write_text(text.replace("\\n", ""))
    assert cli("matrix", "validate", str(tmp_path / "m.yaml")).code == 0
    out = tmp_path / "rendered"
    rendered = cli("images", "render", "-m", str(tmp_path / "m.yaml"), "--out", str(out))
    assert rendered.code == 0, rendered.err
    dockerfile = (out / "debian-bookworm-amd64" / "Dockerfile").read_text()
    assert f"RUN echo '{source}' >> /etc/apt/sources.list.d/orchestrate.list\n" in dockerfile


@pytest.mark.parametrize(
    "packages",
    [("libfoo\n", "run", "touch"), ("libfoo\nRUN touch /x",), ("libfoo\r",), ("a b",)],
)
def test_dockerfiles_refuse_what_the_edge_let_through(packages: tuple[str, ...]) -> None:
    """The last gate, for a value that reached the code some other way (a report)."""
    with pytest.raises((InputError, BindepError)):
        install_dockerfile("sha256:" + "a" * 64, "deb", packages)
    with pytest.raises((InputError, BindepError)):
        base_dockerfile("debian:bookworm", "deb", packages)
    with pytest.raises(InputError, match="control character"):
        install_dockerfile("sha256:a\nRUN touch /x", "deb", ("libfoo",))
    with pytest.raises(InputError, match="control character"):
        base_dockerfile("b", "deb", ("x1",), ("deb http://h/d s main\nRUN touch /x",))


# -- reports and reproduce --print ----------------------------------------------------


def _hostile(tmp_path: Path, marker: Path) -> list[tuple[str, Any]]:
    """(field path, value): each one puts `touch marker` on a line of its own."""
    evil = f"\ntouch {marker}\n"
    return [
        ("job", f"{PLATFORM}/bad==1.0{evil}"),
        ("status", f"failed{evil}"),
        ("exit_code", f"20{evil}"),
        ("phases.0.name", f"fetch{evil}"),
        ("phases.1.command.1", f"job.py{evil}"),
        ("phases.1.env.SOURCE_DATE_EPOCH", f"1{evil}"),
        (
            "system_packages",
            {"family": "deb", "packages": [f"libfoo{evil}"], "sources": [], "installed": []},
        ),
        ("image", f"sha256:{'a' * 64}\nDOCKERFILE\ntouch {marker}\n"),
        ("image_pull", f"r@sha256:{'a' * 64}\nDOCKERFILE\ntouch {marker}\n"),
        ("arch", f"arm64{evil}"),
        ("engine_kind", f"podman{evil}"),
        ("build_requires", [f"setuptools==1{evil}"]),
    ]


def _set(record: dict[str, Any], where: str, value: Any) -> None:
    *path, last = where.split(".")
    node: Any = record
    for part in path:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = value


@pytest.mark.parametrize("field", [f for f, _ in _hostile(Path(), Path("m"))])
def test_a_report_that_would_inject_a_line_is_refused(
    cli: CliRunner, tmp_path: Path, field: str
) -> None:
    marker = tmp_path / "pwned"
    value = dict(_hostile(tmp_path, marker))[field]
    report = _report(tmp_path)
    _set(report["jobs"][0], field, value)
    path = tmp_path / "shared-report.json"
    path.write_text(json.dumps(report))
    result = cli("reproduce", "--print", "--report", str(path), PLATFORM, "bad==1.0")
    assert result.code == 2, (result.out, result.err)
    assert str(path) in result.err
    assert "not a valid orchestrate report" in result.err
    assert result.out == ""  # no script at all
    assert not marker.exists()


def _stub_docker(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A `docker` on PATH that records each call's words, one per line, and runs nothing."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.txt"
    bin_dir.mkdir()
    stub = bin_dir / "docker"
    stub.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do printf "%s\\n" "$a"; done >> "$CALLS"; echo --- >> "$CALLS"\n'
        'case "$1" in create) echo c0ffee ;; build) echo sha256:beef ;; esac\n'
        "cat > /dev/null 2>&1 < /dev/null; exit 0\n"
    )
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls)}
    return env, calls


def test_shell_characters_in_a_report_stay_words_of_the_script(
    cli: CliRunner, tmp_path: Path
) -> None:
    """Values the schema allows (one line) but a shell would act on: the printed
    script runs with a stub docker, no injected command runs, and docker is handed
    each value verbatim."""
    marker = tmp_path / "pwned"
    sub = f"$(touch {marker})"
    report = _report(tmp_path)
    job = report["jobs"][0]
    job["job"] = f"{PLATFORM}/bad==1.0 {sub}; touch {marker}"
    job["phases"][1]["env"]["EVIL"] = f"{sub}`touch {marker}`'\"; touch {marker}"
    job["phases"][1]["command"].append(f"; touch {marker} #")
    job["phases"][0]["command"].append(f"'{sub}'")
    job["build_requires"] = [f"setuptools==1 {sub}"]
    job["image_pull"] = "127.0.0.1:5000/o/b@sha256:" + "b" * 64
    job["system_packages"] = {
        "family": "deb",
        "packages": ["libpq-dev"],
        "sources": [],
        "installed": [],
    }
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    result = cli("reproduce", "--print", "--report", str(path), PLATFORM, "bad==1.0")
    assert result.code == 0, result.err
    env, calls = _stub_docker(tmp_path)
    script = tmp_path / "repro.sh"
    script.write_text(result.out)
    ran = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, check=False)
    assert ran.returncode == 0, ran.stderr
    assert not marker.exists(), result.out
    words = calls.read_text().splitlines()
    assert "build" in words  # the system step's Dockerfile went to docker build
    assert f"EVIL={job['phases'][1]['env']['EVIL']}" in words
    assert f"; touch {marker} #" in words
    assert any(f"setuptools==1 {sub}" in w for w in words)  # inside the fetch's sh -c


def test_the_report_is_checked_before_use(cli: CliRunner, tmp_path: Path) -> None:
    report = _report(tmp_path)
    broken = copy.deepcopy(report)
    del broken["summary"]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(broken))
    result = cli("reproduce", "--print", "--report", str(path), PLATFORM, "bad==1.0")
    assert result.code == 2
    assert f"{path}: not a valid orchestrate report" in result.err
    assert "summary" in result.err
    assert "KeyError" not in result.err


HOSTILE = "boom\n::error file=x.py::pwned\r\x1b[2J\x9b31m\x00"


def _no_command_lines(text: str) -> None:
    assert not any(line.startswith("::") for line in text.splitlines()), text
    assert not any(c in text for c in "\x1b\x9b\x00\r"), repr(text)


def test_a_bundles_text_reaches_the_log_as_one_line_without_escapes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A record's error, hint and name come from a runner we do not control: they
    cannot start a line a CI system reads as a command, nor move the cursor."""
    from orchestrator.cli.build import _failures
    from orchestrator.core.errors import BadBundle
    from orchestrator.core.quoting import printable
    from orchestrator.jobs.records import WheelRecord
    from orchestrator.model import Category, JobStatus

    record = WheelRecord(
        job=f"p/{HOSTILE}==1",
        platform="p",
        python="3.11",
        name="x",
        version="1",
        status=JobStatus.FAILED,
        category=Category.COMPILE,
        error=HOSTILE,
        hint=HOSTILE,
    )
    cancelled = WheelRecord(
        job="p/y==1",
        platform="p",
        python="3.11",
        name="y",
        version="1",
        status=JobStatus.CANCELLED,
        error=HOSTILE,
    )
    _failures([record, cancelled])
    captured = capsys.readouterr()
    _no_command_lines(captured.out + captured.err)
    assert captured.err.count("\n") == 3  # FAILED, its hint, NOT BUILT
    _no_command_lines(BadBundle(HOSTILE, hint=HOSTILE).render(printable))
