"""CI-native views of a build report: JUnit XML and Prometheus text-format metrics.

Like the summary table and the HTML page, both are views of the report's job
records, read back into `WheelRecord`s. JUnit: one test case per job (a failed job
carries its category, first error line and the end of its log). Metrics: for
node_exporter's textfile collector, written atomically so it never reads half a
file.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import junit_xml as junit
from prometheus_client import CollectorRegistry, Gauge, generate_latest, write_to_textfile

from orchestrator.core.redact import redact
from orchestrator.jobs.records import WheelRecord
from orchestrator.model import JobStatus
from orchestrator.report.data import job_records, unwritable, write_text_atomic

LOG_TAIL = 64 * 1024
BAD = (JobStatus.FAILED, JobStatus.TIMEOUT, JobStatus.SMOKE_FAILED)
# Colour and cursor codes: junit-xml drops the bytes XML cannot hold, this drops the
# rest of each sequence, so a CI page shows the log's words, not `[31m`.
ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")


def junit_xml(report: dict[str, Any]) -> str:
    """One test case per job, built and escaped by junit-xml (which also removes the
    characters XML 1.0 forbids, such as ESC and NUL from a log's tail)."""
    cases = []
    for job in job_records(report):
        case = junit.TestCase(
            _plain(job.job.split("/", 1)[-1]),
            classname=_plain(job.platform),
            elapsed_sec=job.duration,
        )
        if job.status in BAD:
            case.add_failure_info(
                message=_plain(job.error or job.detail or job.status),
                output=_plain(_log_tail(job.log)),
                failure_type=str(job.category or job.status),
            )
        elif job.status == JobStatus.CANCELLED:
            case.add_skipped_info(message=_plain(job.detail or "cancelled"))
        cases.append(case)
    suite = junit.TestSuite(
        f"orchestrate build {report['run_id']}", cases, timestamp=str(report.get("started", ""))
    )
    return str(junit.to_xml_report_string([suite], prettyprint=True, encoding="utf-8"))


def _plain(text: str) -> str:
    return ANSI.sub("", text)


def _log_tail(path: str) -> str:
    try:
        with Path(path).open("rb") as log:
            log.seek(0, 2)
            log.seek(max(0, log.tell() - LOG_TAIL))
            return log.read().decode(errors="replace")
    except OSError:
        return f"(log not readable: {path})"


def metrics(report: dict[str, Any], index: dict[str, tuple[int, int]]) -> str:
    """The metrics in Prometheus' text format."""
    return generate_latest(metrics_registry(report, index)).decode()


def metrics_registry(
    report: dict[str, Any], index: dict[str, tuple[int, int]]
) -> CollectorRegistry:
    """`index`: platform -> (wheels, bytes) our index serves for it."""
    registry = CollectorRegistry()
    jobs = job_records(report)
    _jobs_by_status(registry, jobs)
    seconds = Gauge(
        "orchestrate_job_seconds",
        "Wall time of each wheel job of the last build.",
        ["platform", "job", "emulated"],
        registry=registry,
    )
    emulated: dict[str, float] = {}
    for j in jobs:
        if j.status == JobStatus.SHARED:
            continue
        seconds.labels(j.platform, j.job, str(j.emulated).lower()).set(j.duration)
        if j.emulated:
            arch = j.arch or j.platform.rsplit("-", 1)[-1]
            emulated[arch] = emulated.get(arch, 0.0) + j.duration
    by_arch = Gauge(
        "orchestrate_emulated_seconds",
        "Job time spent under emulation, per arch.",
        ["arch"],
        registry=registry,
    )
    for arch, total in sorted(emulated.items()):
        by_arch.labels(arch).set(total)
    _index_gauges(registry, index)
    Gauge(
        "orchestrate_last_run_ok", "1 when the last build had no failed job.", registry=registry
    ).set(0 if report["summary"].get("failed") else 1)
    return registry


def _jobs_by_status(registry: CollectorRegistry, jobs: Sequence[WheelRecord]) -> None:
    gauge = Gauge(
        "orchestrate_jobs",
        "Wheel jobs of the last build, by status.",
        ["platform", "status"],
        registry=registry,
    )
    for (platform, status), n in sorted(
        Counter((j.platform, j.status.value) for j in jobs).items()
    ):
        gauge.labels(platform, status).set(n)


def _index_gauges(registry: CollectorRegistry, index: dict[str, tuple[int, int]]) -> None:
    wheels = Gauge(
        "orchestrate_index_wheels",
        "Wheels our index serves, per platform.",
        ["platform"],
        registry=registry,
    )
    size = Gauge(
        "orchestrate_index_bytes",
        "Bytes of wheels our index serves, per platform.",
        ["platform"],
        registry=registry,
    )
    for platform, (count, total) in sorted(index.items()):
        wheels.labels(platform).set(count)
        size.labels(platform).set(total)


def write_junit(report: dict[str, Any], path: Path) -> None:
    write_text_atomic(path, redact(junit_xml(report)))  # a bundle's record may hold one


def write_metrics(report: dict[str, Any], index: dict[str, tuple[int, int]], path: Path) -> None:
    """prometheus_client's own writer: a temporary file renamed into place, which is how
    node_exporter's textfile collector expects a file to appear."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), metrics_registry(report, index))
    except OSError as exc:
        raise unwritable(path, exc) from None
