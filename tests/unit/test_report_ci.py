"""JUnit XML and Prometheus metrics: views of the report's job records."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from orchestrator.report.ci import junit_xml, metrics, write_junit, write_metrics


def report(tmp_path: Path) -> dict[str, Any]:
    """A report whose jobs name their pin as a job record does."""
    data = _jobs(tmp_path)
    for job in data["jobs"]:
        name, version = str(job["job"]).split("/", 1)[1].split("==")
        job.update(python="3.11", name=name, version=version, kind="wheel")
    return data


def _jobs(tmp_path: Path) -> dict[str, Any]:
    log = tmp_path / "ldap.log"
    log.write_text("gcc ...\nModules/common.h:15:10: fatal error: lber.h: No such file\n")
    base = {"duration": 2.0, "emulated": False, "engine": "local", "detail": "", "log": ""}
    return {
        "run_id": "r1",
        "started": "2026-11-22T00:00:00+00:00",
        "summary": {"failed": 1},
        "jobs": [
            {**base, "job": "p-amd64/crcmod==1.7", "platform": "p-amd64", "status": "built"},
            {
                **base,
                "job": "p-arm64/crcmod==1.7",
                "platform": "p-arm64",
                "status": "built",
                "emulated": True,
                "arch": "arm64",
                "duration": 30.5,
            },
            {
                **base,
                "job": "p-amd64/python-ldap==3.4.4",
                "platform": "p-amd64",
                "status": "failed",
                "category": "missing-system-library",
                "error": "missing header lber.h",
                "log": str(log),
            },
            {
                **base,
                "job": "p-amd64/six==1",
                "platform": "p-amd64",
                "status": "cancelled",
                "detail": "not started: the run deadline passed",
            },
        ],
    }


def _suite(text: str) -> ET.Element:
    root = ET.fromstring(text)
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    return suite


def test_junit_has_a_case_per_job_with_failures_and_logs(tmp_path: Path) -> None:
    suite = _suite(junit_xml(report(tmp_path)))
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
    from prometheus_client.parser import text_string_to_metric_families

    text = metrics(report(tmp_path), {"p-amd64": (3, 4096), "p-arm64": (1, 100)})
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("orchestrate_jobs", (("platform", "p-amd64"), ("status", "failed")))] == 1
    assert samples[("orchestrate_emulated_seconds", (("arch", "arm64"),))] == 30.5
    assert samples[("orchestrate_index_bytes", (("platform", "p-amd64"),))] == 4096
    assert samples[("orchestrate_last_run_ok", ())] == 0
    assert "# TYPE orchestrate_job_seconds gauge" in text.splitlines()
    assert all(name.startswith("orchestrate_") for name, _ in samples)


# The worst log tails we have: colour codes, cursor moves, a bell, NUL, a form feed,
# bytes that are not UTF-8, and XML's own characters.
WORST_TAIL = (
    b"\x1b[31merror:\x1b[0m fatal \x1b[1;33m<lber.h>\x1b[K & ]]> \x07\x00\x0c\x1b]0;title\x07"
    b"\xff\xfe not utf-8 \x1bc\r\n"
)


def test_the_worst_log_tails_still_make_valid_junit_and_metrics(tmp_path: Path) -> None:
    """Parsed with real parsers: xml.etree for JUnit (CI systems drop a malformed
    file and with it the whole night's results), prometheus_client's for metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    data = report(tmp_path)
    Path(data["jobs"][2]["log"]).write_bytes(WORST_TAIL)
    data["jobs"][2]["error"] = "\x1b[31merror:\x1b[0m <lber.h> \x00 & more"
    data["jobs"][2]["job"] = 'p-amd64/we"ird\x1b[0m==1'
    out = tmp_path / "junit.xml"
    write_junit(data, out)
    suite = _suite(out.read_text(encoding="utf-8"))
    failed = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert len(failed) == 1
    failure = failed[0].find("failure")
    assert failure is not None
    assert failure.get("message") == "error: <lber.h>  & more"
    assert "fatal <lber.h> & ]]>" in (failure.text or "")
    assert "\x1b" not in (failure.text or "")
    path = tmp_path / "metrics.prom"
    write_metrics(data, {"p-amd64": (1, 1)}, path)
    families = list(text_string_to_metric_families(path.read_text()))
    labels = [s.labels.get("job") for f in families for s in f.samples if s.labels.get("job")]
    assert 'p-amd64/we"ird\x1b[0m==1' in labels


def test_progress_shows_each_running_jobs_phase_and_elapsed_time() -> None:
    import io

    from rich.console import Console

    from orchestrator.cli.progress import LiveProgress
    from orchestrator.model import Arch
    from orchestrator.scheduler import Job, Placement
    from tests.unit.fakes import FakeEngine

    progress = LiveProgress(Console(file=io.StringIO(), width=120), 0, "jobs")
    job: Job[object] = Job("p-arm64/crcmod==1.7", Arch.ARM64, 1.0, None)
    progress.queued(job)
    progress.started(
        job, Placement(engine=FakeEngine("local", Arch.AMD64), emulated=True, reason="no arm64")
    )
    progress.phase(job.id, "build")
    out = io.StringIO()
    Console(file=out, width=120).print(progress._table())
    row = next(line for line in out.getvalue().splitlines() if "crcmod" in line)
    assert "build" in row
    assert "emulated" in row
    assert "0s" in row


def test_junit_redacts_a_password_a_record_carries(tmp_path: Path) -> None:
    """A merged night's records come from bundles: a password in one never reaches
    the JUnit file, as it reaches no other output."""
    data = report(tmp_path)
    data["jobs"][2]["error"] = "cannot fetch https://ci:S3cr3t@pypi.example/simple/x/"
    write_junit(data, tmp_path / "junit.xml")
    text = (tmp_path / "junit.xml").read_text()
    assert "S3cr3t" not in text
    assert "https://ci:****@pypi.example/simple/x/" in text
