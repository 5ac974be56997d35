"""Report views and job lookup, from a synthetic report (no Docker)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from orchestrator.core.errors import InputError
from orchestrator.report.data import SCHEMA_PATH, SCHEMA_VERSION, load_report
from orchestrator.report.html import cells, failures, render_html
from orchestrator.reproduce import find_job, print_script


def _report(tmp_path: Path) -> dict[str, Any]:
    log = tmp_path / "logs" / "run" / "debian-bookworm-arm64" / "bad-1.0.log"
    log.parent.mkdir(parents=True)
    log.write_text("error: <boom>\n")
    phases = [
        {
            "name": "fetch",
            "command": ["py", "job.py", "fetch", "bad==1.0"],
            "network": True,
            "env": {},
        },
        {
            "name": "build",
            "command": ["py", "job.py", "build"],
            "network": False,
            "env": {"SOURCE_DATE_EPOCH": "315532800"},
        },
    ]
    job = {
        "job": "debian-bookworm-arm64/bad==1.0",
        "platform": "debian-bookworm-arm64",
        "python": "3.11",
        "name": "bad",
        "version": "1.0",
        "status": "failed",
        "kind": "wheel",
        "duration": 12.5,
        "engine": "local",
        "emulated": True,
        "wheel": None,
        "sha256": None,
        "size": 0,
        "log": str(log),
        "image": "sha256:" + "a" * 64,
        "image_ref": "127.0.0.1:5000/o/b:debian-bookworm-arm64",
        "arch": "arm64",
        "phases": phases,
        "detail": "build exited 20",
        "exit_code": 20,
        "attempts": 1,
    }
    plan = [
        {
            "platform": "debian-bookworm-arm64",
            "python": "3.11",
            "name": "bad",
            "version": "1.0",
            "action": "build",
            "reason": "sdist only",
            "wheel": None,
            "sdist": "bad-1.0.tar.gz",
            "source": "r.txt:1",
        },
        {
            "platform": "debian-bookworm-arm64",
            "python": "3.11",
            "name": "six",
            "version": "1.16.0",
            "action": "upstream",
            "reason": "wheel <ok>",
            "wheel": "six-1.16.0-py2.py3-none-any.whl",
            "sdist": None,
            "source": "r.txt:2",
        },
    ]
    summary = {
        "built": 0,
        "shared": 0,
        "failed": 1,
        "timeout": 0,
        "cancelled": 0,
        "upstream": 1,
        "cached": 0,
        "unavailable": 0,
        "excluded": 0,
        "emulated_seconds": 12.5,
        "mismatches": 0,
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": "run",
        "started": "2026-11-21T00:00:00",
        "finished": "2026-11-21T00:01:00",
        "matrix": "m.yaml",
        "platforms": ["debian-bookworm-arm64"],
        "summary": summary,
        "images": [],
        "plan": plan,
        "jobs": [job],
        "store": [],
        "published": [],
        "publish_errors": {},
    }


def test_synthetic_report_matches_schema(tmp_path: Path) -> None:
    jsonschema.validate(_report(tmp_path), json.loads(SCHEMA_PATH.read_text()))


def test_cells_prefer_job_outcome_and_link_logs_relatively(tmp_path: Path) -> None:
    report = _report(tmp_path)
    grid = cells(report, tmp_path / "reports" / "run.html")
    bad = grid[("bad==1.0", "debian-bookworm-arm64")]
    assert bad.outcome == "failed"
    assert bad.mode == "emulated on local"
    assert bad.log == "../logs/run/debian-bookworm-arm64/bad-1.0.log"
    assert grid[("six==1.16.0", "debian-bookworm-arm64")].outcome == "upstream"


def test_html_escapes_and_marks_cells(tmp_path: Path) -> None:
    html = render_html(_report(tmp_path), tmp_path / "reports" / "run.html")
    assert 'data-outcome="failed"' in html
    assert "wheel &lt;ok&gt;" in html
    assert "<ok>" not in html
    assert "emulation cost <b>12 s</b>" in html


def test_find_job_and_print_line(tmp_path: Path) -> None:
    report = _report(tmp_path)
    spec = find_job(report, "debian-bookworm-arm64", "Bad==1.0")
    assert spec.exit_code == 20
    script = print_script(spec)
    fetch, build = script.split("# phase build", 1)
    assert "docker create --platform linux/arm64 --user 1000:1000 --workdir /job" in fetch
    assert "--network none" not in fetch
    assert "--network none" in build
    assert "-e SOURCE_DATE_EPOCH=315532800" in build
    assert 'docker cp - "$c":/ < "$job/job.tar"' in build
    assert script.rstrip().endswith('exit "$rc"')
    with pytest.raises(InputError, match="no job for"):
        find_job(report, "debian-bookworm-amd64", "bad")


def test_a_podman_job_prints_podman_lines_with_its_limits(tmp_path: Path) -> None:
    report = _report(tmp_path)
    for job in report["jobs"]:
        job["engine_kind"] = "podman"
    job["system_packages"] = {
        "family": "deb",
        "packages": ["libpq-dev"],
        "sources": [],
        "installed": [],
    }
    spec = find_job(report, "debian-bookworm-arm64", "Bad==1.0")
    script = print_script(spec)
    assert "docker" not in script.replace("Dockerfile", "")
    limits = "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024"
    assert f"podman create --platform linux/arm64 --user 1000:1000 --workdir /job {limits}" in (
        script
    )
    assert 'podman cp - "$c":/ < "$job/job.tar"' in script
    assert 'rc=0; podman start -a "$c" || rc=$?' in script
    assert "| podman build -q --platform linux/arm64 -)" in script
    # A report from before the engine kind was recorded reads as Docker's.
    del report["jobs"][0]["engine_kind"]
    assert "docker create" in print_script(find_job(report, "debian-bookworm-arm64", "Bad==1.0"))


def test_load_report_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such report"):
        load_report(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text('{"schema_version": 99}')
    with pytest.raises(InputError, match="not an orchestrate build report"):
        load_report(tmp_path / "x.json")


def test_one_failure_on_two_platforms_reads_as_one_problem(tmp_path: Path) -> None:
    """A package failing on both arches for one reason is one row naming both platforms
    (each with its log and reproduce command); the grid lists what was built or failed
    before what the index served, and shows only those at first."""
    report = _report(tmp_path)
    (bad,) = [j for j in report["jobs"] if j["name"] == "bad"]
    twin = {**bad, "job": "debian-bookworm-amd64/bad==1.0", "platform": "debian-bookworm-amd64"}
    report["jobs"].append(twin)
    rows = failures(report, tmp_path / "reports" / "run.html")
    assert len(rows) == 1
    assert [p["platform"] for p in rows[0]["platforms"]] == [
        "debian-bookworm-arm64",
        "debian-bookworm-amd64",
    ]
    assert rows[0]["platforms"][1]["reproduce"] == (
        "orchestrate reproduce debian-bookworm-amd64 bad==1.0"
    )
    html = render_html(report, tmp_path / "reports" / "run.html")
    assert html.index('data-name="bad==1.0"') < html.index('data-name="six==1.16.0"')
    assert '<input type="checkbox" id="only" checked>' in html
