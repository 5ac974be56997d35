"""JUnit XML and Prometheus metrics: views of the report's job records."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from orchestrator.report.ci import junit_xml, metrics


def report(tmp_path: Path) -> dict[str, Any]:
    log = tmp_path / "ldap.log"
    log.write_text("gcc ...\nModules/common.h:15:10: fatal error: lber.h: No such file\n")
    base = {"duration": 2.0, "emulated": False, "engine": "local", "detail": "", "log": ""}
    return {
        "run_id": "r1",
        "started": "2026-11-22T00:00:00+00:00",
        "summary": {"failed": 1},
        "jobs": [
            {**base, "job": "p-amd64/crcmod==1.7", "platform": "p-amd64", "status": "built"},
            {**base, "job": "p-arm64/crcmod==1.7", "platform": "p-arm64", "status": "built",
             "emulated": True, "arch": "arm64", "duration": 30.5},
            {**base, "job": 'p-amd64/python-ldap==3.4.4', "platform": "p-amd64",
             "status": "failed", "category": "missing-system-library",
             "error": "missing header lber.h", "log": str(log)},
            {**base, "job": "p-amd64/six==1", "platform": "p-amd64", "status": "cancelled",
             "detail": "not started: the run deadline passed"},
        ],
    }  # fmt: skip


def test_junit_has_a_case_per_job_with_failures_and_logs(tmp_path: Path) -> None:
    suite = ET.fromstring(junit_xml(report(tmp_path)))
    assert suite.get("tests") == "4"
    assert suite.get("failures") == "1"
    assert suite.get("skipped") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    failure = cases["python-ldap==3.4.4"].find("failure")
    assert failure is not None
    assert failure.get("type") == "missing-system-library"
    assert failure.get("message") == "missing header lber.h"
    assert "fatal error: lber.h" in (failure.text or "")
    skipped = cases["six==1"].find("skipped")
    assert skipped is not None
    assert "deadline" in (skipped.get("message") or "")
    assert cases["crcmod==1.7"].find("failure") is None


def test_metrics_are_prometheus_text(tmp_path: Path) -> None:
    text = metrics(report(tmp_path), {"p-amd64": (3, 4096), "p-arm64": (1, 100)})
    lines = text.splitlines()
    assert 'orchestrate_jobs{platform="p-amd64",status="failed"} 1' in lines
    assert 'orchestrate_emulated_seconds{arch="arm64"} 30.5' in lines
    assert 'orchestrate_index_bytes{platform="p-amd64"} 4096' in lines
    assert "orchestrate_last_run_ok 0" in lines
    assert "# TYPE orchestrate_job_seconds gauge" in lines
    for line in lines:  # every sample line: name{labels} value
        if not line.startswith("#"):
            name_labels, value = line.rsplit(" ", 1)
            float(value)
            assert name_labels.startswith("orchestrate_")


def test_progress_shows_each_running_jobs_phase_and_elapsed_time() -> None:
    import io

    from rich.console import Console

    from orchestrator.config import Arch
    from orchestrator.progress import Progress
    from orchestrator.scheduler import Job, Placement
    from tests.unit.fakes import FakeEngine

    progress = Progress(Console(file=io.StringIO(), width=120), 0, "jobs")
    job: Job[object] = Job("p-arm64/crcmod==1.7", Arch.ARM64, 1.0, None)
    progress.event("queued", job, None)
    progress.event("start", job, Placement(FakeEngine("local", Arch.AMD64), True, "no arm64"))
    progress.event("phase", job, "build")
    out = io.StringIO()
    Console(file=out, width=120).print(progress._table())
    row = next(line for line in out.getvalue().splitlines() if "crcmod" in line)
    assert "build" in row
    assert "emulated" in row
    assert "0s" in row
