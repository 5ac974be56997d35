"""A real failure, reproduced; the HTML report in real headless Chromium."""

from __future__ import annotations

import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest

from orchestrator.images.pipeline import ImagesReport
from orchestrator.report.data import SCHEMA_PATH
from tests.conftest import REPO, CliRunner

from .conftest import Local

AMD = "debian-bookworm-amd64"
# The compiler's own complaint: python-ldap needs OpenLDAP headers these builders lack.
ERROR_LINE = re.compile(r"fatal error: (lber|ldap)\.h: No such file or directory")


@pytest.fixture(scope="session")
def failed_run(
    built_images: ImagesReport, local: Local, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A build that fails on purpose; returns its workdir (reports/latest.json in it).
    The builder is pushed first, so the job can name it by its registry digest."""
    pushed = subprocess.run(
        [
            "orchestrate",
            "images",
            "build",
            "--push",
            "-m",
            str(local.path),
            "--workdir",
            str(tmp_path_factory.mktemp("push")),
        ],  # both: the manifest list stays whole
        capture_output=True,
        text=True,
        check=False,
    )
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    built = local.build(
        "python-ldap==3.4.4\nsix==1.16.0\n", tmp_path_factory.mktemp("failing"), "-p", "*-amd64"
    )
    assert built.process.returncode == 1, built.process.stdout + built.process.stderr
    return built.workdir


def test_report_validates_against_the_published_schema(failed_run: Path) -> None:
    report = json.loads((failed_run / "reports" / "latest.json").read_text())
    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text()))
    assert report["summary"]["failed"] == 1


def test_reproduce_fails_the_same_way(failed_run: Path, cli: CliRunner) -> None:
    report = json.loads((failed_run / "reports" / "latest.json").read_text())
    job = next(j for j in report["jobs"] if j["name"] == "python-ldap")
    original = Path(job["log"]).read_text()
    assert ERROR_LINE.search(original)
    result = cli("reproduce", AMD, "python-ldap", "--workdir", str(failed_run))
    assert result.code == job["exit_code"] == 20
    assert "native" in result.err
    match = ERROR_LINE.search(result.out)
    assert match is not None
    assert match.group(0) in original


def test_printed_phases_fail_the_same_way_by_themselves(failed_run: Path, cli: CliRunner) -> None:
    """The printed script is the job: fetch with network, then the build with no
    network as the build user; run as it is, it fails as the job did."""
    result = cli("reproduce", AMD, "python-ldap==3.4.4", "--print", "--workdir", str(failed_run))
    assert result.code == 0
    script = result.out
    fetch, build = script.split("# phase build", 1)
    assert "--network none" in build
    assert "--network none" not in fetch
    assert "--user 1000:1000" in build
    report = json.loads((failed_run / "reports" / "latest.json").read_text())
    job = next(j for j in report["jobs"] if j["name"] == "python-ldap")
    pinned = [r for r in job["build_requires"] if r.startswith("setuptools==")]
    assert pinned
    assert pinned[0] in fetch  # the recorded versions, not whatever is newest today
    assert "/orchestrate/builder@sha256:" in job["image_pull"]  # pushed: by digest
    assert f"image={job['image_pull']}" in script
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == job["exit_code"] == 20, done.stdout[-2000:] + done.stderr[-2000:]
    assert ERROR_LINE.search(done.stdout + done.stderr)


def test_reproduce_unknown_job_is_a_clear_error(failed_run: Path, cli: CliRunner) -> None:
    result = cli("reproduce", AMD, "nope", "--workdir", str(failed_run))
    assert result.code == 2
    assert "no job for debian-bookworm-amd64 nope" in result.err
    assert "python-ldap==3.4.4" in result.err


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[tuple[str, str | None]] = []
        self._outcome: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "td" and values.get("data-outcome"):
            self._outcome = values["data-outcome"]
            self.cells.append((str(self._outcome), None))
        elif tag == "a" and self._outcome and self.cells:
            self.cells[-1] = (self.cells[-1][0], values.get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._outcome = None


def _chromium(*args: str, user_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={user_dir}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_html_report_in_headless_chromium(failed_run: Path, tmp_path: Path) -> None:
    html = next((failed_run / "reports").glob("*.html"))
    dom = _chromium("--dump-dom", html.as_uri(), user_dir=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-500:]
    parser = _Cells()
    parser.feed(dom.stdout)
    failed = [href for outcome, href in parser.cells if outcome == "failed"]
    assert len(failed) == 1
    assert failed[0] is not None
    log = (html.parent / failed[0]).resolve()
    assert log.is_file()
    assert ERROR_LINE.search(log.read_text())
    assert ("upstream", None) in parser.cells  # six: served by the index
    # The docs' picture of the report is this screenshot, made here on every run.
    shot = REPO / "docs" / "assets" / "report.png"
    shot.unlink(missing_ok=True)
    done = _chromium(
        f"--screenshot={shot}",
        "--window-size=1300,700",
        html.as_uri(),
        user_dir=tmp_path / "profile2",
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert shot.stat().st_size > 10_000
