"""The build report: one JSON document, versioned, with a published schema.

The summary table, this JSON and the HTML page are all views of the same
typed records (plan decisions, job records, image results, store outcomes): the
JSON is written from them, and the views read them back (`job_records`,
`plan_records`).
"""

from __future__ import annotations

import errno
import functools
import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.core.errors import EnvironmentProblem, InputError, OrchestrateError
from orchestrator.core.files import symlink_atomic, write_atomic
from orchestrator.core.redact import redact
from orchestrator.jobs.execute import emulated_seconds
from orchestrator.jobs.records import WheelRecord
from orchestrator.plan.decide import Decision
from orchestrator.run import NightResult

SCHEMA_VERSION = 1
SCHEMA_ID = "https://orchestrate.invalid/schemas/build-report-1.json"
SCHEMA_PATH = Path(__file__).with_name("schema.json")


def report_of(run: NightResult, matrix_path: str) -> dict[str, Any]:
    actions = Counter(d.action.value for d in run.plan)
    statuses = Counter(str(j.status) for j in run.jobs)
    return {
        "$schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "run_id": run.run_id,
        "started": run.started,
        "finished": run.finished,
        "matrix": matrix_path,
        "platforms": list(run.platforms),
        "summary": {
            "built": statuses.get("built", 0),
            "shared": statuses.get("shared", 0),
            "failed": statuses.get("failed", 0),
            "timeout": statuses.get("timeout", 0),
            "cancelled": statuses.get("cancelled", 0),
            "smoke_failed": statuses.get("smoke-failed", 0),
            "upstream": actions.get("upstream", 0),
            "cached": actions.get("cached", 0),
            "rebuild": actions.get("rebuild", 0),
            "unavailable": actions.get("unavailable", 0),
            "excluded": actions.get("excluded", 0),
            "emulated_seconds": round(emulated_seconds(run.jobs), 1),
            "mismatches": len(run.mismatches),
            "categories": dict(Counter(str(j.category) for j in run.jobs if j.category)),
            "sdist_downloads": run.sdist_downloads,
        },
        "error": run.error,
        "stages": dict(run.stages),
        "images": [r.as_dict() for r in run.images.results],
        "plan": [d.as_dict() for d in run.plan],
        "jobs": [j.as_dict() for j in run.jobs],
        "store": [s.__dict__ for s in run.store],
        "published": [p.__dict__ for p in run.published],
        "publish_errors": dict(run.publish_errors),
        **({"shards": [s.as_dict() for s in run.shards]} if run.shards else {}),
    }


def job_records(report: Mapping[str, Any]) -> tuple[WheelRecord, ...]:
    """The report's jobs read back into the records they were written from: what the
    views (HTML, JUnit, metrics) read."""
    return tuple(WheelRecord.from_dict(j) for j in report["jobs"])


def plan_records(report: Mapping[str, Any]) -> tuple[Decision, ...]:
    """The report's plan read back into its decisions."""
    return tuple(Decision.from_dict(d) for d in report["plan"])


DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)


def write_text_atomic(path: Path, text: str) -> None:
    """Write next to `path`, then rename: readers see the old file or the new one.
    An output path that cannot be written is the user's to fix: exit 2, no traceback."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
    except OSError as exc:
        raise unwritable(path, exc) from None


def unwritable(path: Path, exc: OSError) -> OrchestrateError:
    """An output that cannot be written: the machine's problem (exit 3) or the path's (2)."""
    if exc.errno in DISK_ERRORS:
        return EnvironmentProblem(
            f"{path}: cannot write it ({exc.strerror or exc})", hint="free some space"
        )
    return InputError(
        f"{path}: cannot write it ({exc.strerror or exc})",
        hint="choose a path in a folder you can write to",
    )


def with_previous(report: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The report, linked to the previous one in `folder` and saying what changed:
    jobs failing now that did not before, and jobs built now that failed before."""
    try:
        previous = load_report(folder / "latest.json")
    except InputError:
        return report
    if previous.get("run_id") == report["run_id"]:
        return report
    before = {str(j["job"]): str(j["status"]) for j in previous.get("jobs") or []}
    bad = ("failed", "timeout", "smoke-failed")
    now = {str(j["job"]): str(j["status"]) for j in report["jobs"]}
    return {
        **report,
        "previous": {"run_id": previous["run_id"], "html": f"{previous['run_id']}.html"},
        "changes": {
            "newly_failing": sorted(
                j for j, s in now.items() if s in bad and before.get(j) not in bad
            ),
            "newly_fixed": sorted(
                j for j, s in now.items() if s == "built" and before.get(j) in bad
            ),
        },
    }


def write_report(report: dict[str, Any], path: Path) -> None:
    write_text_atomic(path, redact(json.dumps(report, indent=1)))


def save_run_report(report: dict[str, Any], folder: Path) -> Path:
    """<folder>/<run>.json plus <folder>/latest.json, which `reproduce` reads by default."""
    path = folder / f"{report['run_id']}.json"
    write_report(report, path)
    symlink_atomic(folder / "latest.json", path.name)
    return path


def load_report(path: Path) -> dict[str, Any]:
    """A report read back and checked against the published schema: its top level
    here (cheap for a report of any size), each job before it is used (`checked_job`)."""
    try:
        data = json.loads(path.read_text())
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the report ({exc})") from None
    except FileNotFoundError:
        raise InputError(
            f"{path}: no such report", hint="run `orchestrate build` first, or pass --report"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{path}: not a JSON report: {str(exc)[:200]}") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{path}: not an orchestrate build report (schema {SCHEMA_VERSION})")
    _validate(data, _top_level_schema(), path)
    return data


def checked_job(record: object, path: Path | str) -> dict[str, Any]:
    """One job record of a report, checked against the schema's job definition: a
    report is a file people share, and its fields reach scripts and Dockerfiles."""
    return checked_item(record, "jobs", path)


def checked_item(record: object, section: str, path: Path | str) -> dict[str, Any]:
    """One item of a report's list `section` (jobs, images, ...), checked against the
    schema's definition of it before it is used."""
    schema = _schema()
    items = schema["properties"][section]["items"]
    _validate(record, {**items, "$defs": schema["$defs"]}, path)
    assert isinstance(record, dict)
    return record


@functools.cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


@functools.cache
def _top_level_schema() -> dict[str, Any]:
    """The schema with its long lists' items unchecked: those are checked one by one."""
    schema = _schema()
    properties = dict(schema["properties"])
    for name in ("jobs", "plan", "images", "store", "published"):
        properties[name] = {"type": "array", "items": {"type": "object"}}
    return {**schema, "properties": properties}


def _validate(data: object, schema: dict[str, Any], path: Path | str) -> None:
    import jsonschema

    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(data)
    )
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise InputError(
            f"{path}: not a valid orchestrate report at {where}: {error.message[:200]}",
            hint="pass a report written by `orchestrate build`",
        )
