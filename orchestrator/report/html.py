"""The build report as one static HTML page: a view of the JSON report.

Built for production scale (575 requirements x 15 platforms, ~8,600 cells) in
one file with no network: a per-platform summary first, then the failures with
their category, first error line, log and the exact reproduce command, what
changed since the previous report, and the requirements x platforms matrix
with a filter, a search box and each cell's details (wheel, sha256, reason)
on click.
"""

from __future__ import annotations

import os
import re
import shlex
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from orchestrator.core.errors import InputError
from orchestrator.core.redact import redact
from orchestrator.jobs.records import WheelRecord
from orchestrator.model import JobKind, JobStatus
from orchestrator.report.data import job_records, plan_records, write_text_atomic

OUTCOMES = (
    "built",
    "shared",
    "upstream",
    "cached",
    "rebuild",
    "failed",
    "smoke-failed",
    "timeout",
    "cancelled",
    "excluded",
    "unavailable",
    "unsupported",
)
INTERESTING = frozenset({"built", "shared", "failed", "smoke-failed", "timeout", "cancelled"})
FAILED = (JobStatus.FAILED, JobStatus.TIMEOUT, JobStatus.SMOKE_FAILED)


@dataclass(kw_only=True, frozen=True)
class Cell:
    outcome: str
    reason: str
    duration: float | None
    mode: str
    log: str
    category: str = ""  # why it failed, with the first error line and a hint
    error: str = ""
    hint: str = ""
    wheel: str = ""
    sha256: str = ""


def cells(report: dict[str, Any], html_path: Path) -> dict[tuple[str, str], Cell]:
    """One cell per (requirement, platform): the job's outcome, else the plan's."""
    out: dict[tuple[str, str], Cell] = {}
    for d in plan_records(report):
        out[(_pin(d.name, d.version), d.platform)] = Cell(
            outcome=d.action.value,
            reason=d.reason,
            duration=None,
            mode="",
            log="",
            wheel=d.wheel or "",
        )
    for j in job_records(report):
        out[(_requirement(j), j.platform)] = _job_cell(j, html_path)
    return out


def branches_of(report: dict[str, Any]) -> dict[str, str]:
    """requirement -> the branches that want it (on any platform), for its row's name."""
    out: dict[str, list[str]] = {}
    for d in plan_records(report):
        req = _pin(d.name, d.version)
        for branch in d.branches:
            out.setdefault(req, [])
            if branch not in out[req]:
                out[req].append(branch)
    return {req: ", ".join(names) for req, names in out.items()}


def _pin(name: str, version: str) -> str:
    return f"{name}=={version}" if version else name


def _requirement(job: WheelRecord) -> str:
    req = f"{job.name}=={job.version}"
    return req + " (build dependency)" if job.kind == JobKind.BUILD_DEP else req


def _job_cell(j: WheelRecord, html_path: Path) -> Cell:
    mode = j.mode or ("emulated" if j.emulated else ("native" if j.engine else ""))
    if j.status == JobStatus.SHARED:
        mode = "shared build"
    return Cell(
        outcome=j.status.value,
        reason=j.detail,
        duration=j.duration,
        mode=f"{mode} on {j.engine}" if j.engine else mode,
        log=_relative(j.log, html_path) if j.log else "",
        category=j.category or "",
        error=j.error,
        hint=j.hint,
        wheel=j.wheel or "",
        sha256=j.sha256 or "",
    )


def _relative(log: str, html_path: Path) -> str:
    """A link only to a log inside the run's folder (reports/ and logs/ side by side),
    as a relative path, so it works wherever the folder is copied; anything else
    (another place, a `javascript:` or other URL) gets no link."""
    if not isinstance(log, str) or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", log):
        return ""
    workdir = html_path.resolve().parent.parent
    target = Path(log).resolve()
    if workdir not in target.parents:
        return ""
    return urllib.parse.quote(os.path.relpath(target, html_path.resolve().parent))


def platform_rows(
    report: dict[str, Any], grid: dict[tuple[str, str], Cell]
) -> list[dict[str, Any]]:
    """Per platform: counts by outcome, emulated job time, the published release."""
    counts = Counter((platform, c.outcome) for (_req, platform), c in grid.items())
    emulated: dict[str, float] = {}
    for j in job_records(report):
        if j.emulated and j.status != JobStatus.SHARED:
            emulated[j.platform] = emulated.get(j.platform, 0.0) + j.duration
    releases = {p["platform"]: p["release"] for p in report.get("published") or []}
    return [
        {
            "platform": p,
            "counts": {o: counts[(p, o)] for o in OUTCOMES},
            "emulated": emulated.get(p, 0.0),
            "release": releases.get(p, ""),
            "error": (report.get("publish_errors") or {}).get(p, ""),
        }
        for p in report["platforms"]
    ]


def failures(report: dict[str, Any], html_path: Path) -> list[dict[str, Any]]:
    """The failures, one row per problem: a package that fails on several platforms
    for one reason (its category and first error line) reads as one problem with
    those platforms, each with its log and its reproduce command."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for j in job_records(report):
        if j.status not in FAILED:
            continue
        requirement = f"{j.name}=={j.version}"
        category = str(j.category or j.status)
        error = j.error or j.detail
        fresh = {"requirement": requirement, "category": category, "error": error}
        row = rows.setdefault((requirement, category, error), {**fresh, "platforms": []})
        row.setdefault("hint", j.hint)
        row["platforms"].append(
            {
                "platform": j.platform,
                "log": _relative(j.log, html_path) if j.log else "",
                "reproduce": shlex.join(["orchestrate", "reproduce", j.platform, requirement]),
            }
        )
    return sorted(rows.values(), key=lambda r: (r["requirement"], r["category"], r["error"]))


def render_html(report: dict[str, Any], html_path: Path) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).with_name("templates"))),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    grid = cells(report, html_path)
    present = {c.outcome for c in grid.values()}
    interesting = {req for (req, _p), c in grid.items() if c.outcome in INTERESTING}
    # What was built, shared or failed first; what the index served, after it.
    requirements = sorted({req for req, _ in grid}, key=lambda r: (r not in interesting, r))
    return env.get_template("report.html.j2").render(
        r=report,
        s=report["summary"],
        platforms=report["platforms"],
        requirements=requirements,
        interesting=interesting,
        cells=grid,
        outcomes=[o for o in OUTCOMES if o in present],
        platform_rows=platform_rows(report, grid),
        branches=branches_of(report),
        failures=failures(report, html_path),
        previous=_previous(report.get("previous")),
        changes=report.get("changes") or {},
    )


def _previous(said: object) -> dict[str, str]:
    """The previous report's link: a relative path or an http(s) URL, nothing else (a
    report is a shared file, and `javascript:` in an href runs when clicked)."""
    if not isinstance(said, dict):
        return {}
    return {"html": safe_href(str(said.get("html") or "")), "run_id": str(said.get("run_id", ""))}


def safe_href(link: str) -> str:
    """`link` when it is a relative path or an http(s) URL, else ""."""
    scheme = urllib.parse.urlsplit(link).scheme.lower() if link.isprintable() else "bad"
    if scheme in ("http", "https"):
        return link
    return "" if scheme or link.startswith(("/", "\\")) else link


def write_html(report: dict[str, Any], html_path: Path) -> Path:
    try:
        page = render_html(report, html_path)
    except (KeyError, TypeError, ValueError, AttributeError, jinja2.TemplateError) as exc:
        raise InputError(
            f"the report does not have the shape of an orchestrate build report: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    write_text_atomic(html_path, redact(page))
    return html_path
