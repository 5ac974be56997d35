"""The build report as one static HTML page: a view of the JSON report."""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from orchestrator.errors import InputError
from orchestrator.redact import redact
from orchestrator.report.data import write_text_atomic

OUTCOMES = (
    "built",
    "shared",
    "upstream",
    "cached",
    "failed",
    "timeout",
    "cancelled",
    "excluded",
    "unavailable",
    "unsupported",
)


@dataclass(frozen=True)
class Cell:
    outcome: str
    reason: str
    duration: float | None
    mode: str
    log: str
    category: str = ""  # why it failed, with the first error line and a hint
    error: str = ""
    hint: str = ""


def cells(report: dict[str, Any], html_path: Path) -> dict[tuple[str, str], Cell]:
    """One cell per (requirement, platform): the job's outcome, else the plan's."""
    out: dict[tuple[str, str], Cell] = {}
    for d in report["plan"]:
        req = f"{d['name']}=={d['version']}" if d["version"] else d["name"]
        out[(req, d["platform"])] = Cell(d["action"], d["reason"], None, "", "")
    for j in report["jobs"]:
        mode = "emulated" if j["emulated"] else ("native" if j["engine"] else "")
        if j["status"] == "shared":
            mode = "shared build"
        req = f"{j['name']}=={j['version']}"
        if j.get("kind") == "build-dep":
            req += " (build dependency)"
        out[(req, j["platform"])] = Cell(
            j["status"],
            j.get("detail") or "",
            j["duration"],
            f"{mode} on {j['engine']}" if j["engine"] else mode,
            _relative(j["log"], html_path) if j["log"] else "",
            j.get("category") or "",
            j.get("error") or "",
            j.get("hint") or "",
        )
    return out


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


def render_html(report: dict[str, Any], html_path: Path) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).with_name("templates"))),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    grid = cells(report, html_path)
    requirements = sorted({req for req, _ in grid})
    return env.get_template("report.html.j2").render(
        r=report,
        s=report["summary"],
        platforms=report["platforms"],
        requirements=requirements,
        cells=grid,
        outcomes=OUTCOMES,
    )


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
