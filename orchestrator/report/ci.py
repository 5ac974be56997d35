"""CI-native views of a build report: JUnit XML and Prometheus text-format metrics.

Like the summary table and the HTML page, both are views of the report's job
records. JUnit: one test case per job (a failed job carries its category,
first error line and the end of its log). Metrics: for node_exporter's
textfile collector, written atomically so it never reads half a file.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from .data import write_text_atomic

LOG_TAIL = 64 * 1024


def junit_xml(report: dict[str, Any]) -> str:
    jobs = report["jobs"]
    failed = [j for j in jobs if j["status"] in ("failed", "timeout", "smoke-failed")]
    skipped = [j for j in jobs if j["status"] == "cancelled"]
    suite = ET.Element(
        "testsuite",
        name=f"orchestrate build {report['run_id']}",
        tests=str(len(jobs)),
        failures=str(len(failed)),
        skipped=str(len(skipped)),
        time=f"{sum(float(j['duration']) for j in jobs):.2f}",
        timestamp=str(report.get("started", "")),
    )
    for job in jobs:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=str(job["platform"]),
            name=str(job["job"]).split("/", 1)[-1],
            time=f"{float(job['duration']):.2f}",
        )
        if job["status"] in ("failed", "timeout", "smoke-failed"):
            failure = ET.SubElement(
                case,
                "failure",
                message=str(job.get("error") or job.get("detail") or job["status"]),
                type=str(job.get("category") or job["status"]),
            )
            failure.text = _log_tail(str(job.get("log") or ""))
        elif job["status"] == "cancelled":
            ET.SubElement(case, "skipped", message=str(job.get("detail") or "cancelled"))
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode")


def _log_tail(path: str) -> str:
    try:
        with Path(path).open("rb") as log:
            log.seek(0, 2)
            log.seek(max(0, log.tell() - LOG_TAIL))
            return log.read().decode(errors="replace")
    except OSError:
        return f"(log not readable: {path})"


Sample = tuple[dict[str, str], float]


def metrics(report: dict[str, Any], index: dict[str, tuple[int, int]]) -> str:
    """`index`: platform -> (wheels, bytes) our index serves for it."""
    jobs = report["jobs"]
    statuses = Counter((j["platform"], j["status"]) for j in jobs)
    emulated: dict[str, float] = {}
    for j in jobs:
        if j["emulated"] and j["status"] != "shared":
            arch = str(j.get("arch") or j["platform"].rsplit("-", 1)[-1])
            emulated[arch] = emulated.get(arch, 0.0) + float(j["duration"])
    ran = [j for j in jobs if j["status"] != "shared"]
    return "".join(
        [
            _gauge(
                "orchestrate_jobs",
                "Wheel jobs of the last build, by status.",
                [({"platform": p, "status": st}, n) for (p, st), n in sorted(statuses.items())],
            ),
            _gauge(
                "orchestrate_job_seconds",
                "Wall time of each wheel job of the last build.",
                [
                    (
                        {
                            "platform": j["platform"],
                            "job": j["job"],
                            "emulated": str(j["emulated"]).lower(),
                        },
                        float(j["duration"]),
                    )
                    for j in ran
                ],
            ),
            _gauge(
                "orchestrate_emulated_seconds",
                "Job time spent under emulation, per arch.",
                [({"arch": a}, sec) for a, sec in sorted(emulated.items())],
            ),
            _gauge(
                "orchestrate_index_wheels",
                "Wheels our index serves, per platform.",
                [({"platform": p}, w) for p, (w, _b) in sorted(index.items())],
            ),
            _gauge(
                "orchestrate_index_bytes",
                "Bytes of wheels our index serves, per platform.",
                [({"platform": p}, b) for p, (_w, b) in sorted(index.items())],
            ),
            _gauge(
                "orchestrate_last_run_ok",
                "1 when the last build had no failed job.",
                [({}, 0 if report["summary"].get("failed") else 1)],
            ),
        ]
    )


def _gauge(name: str, text: str, samples: list[Sample]) -> str:
    lines = [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
    for labels, value in samples:
        inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{inner}}} {value:g}" if inner else f"{name} {value:g}")
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def write_junit(report: dict[str, Any], path: Path) -> None:
    write_text_atomic(path, junit_xml(report))


def write_metrics(report: dict[str, Any], index: dict[str, tuple[int, int]], path: Path) -> None:
    write_text_atomic(path, metrics(report, index))
