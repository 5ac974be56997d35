"""The pages of a published platform: PEP 503 HTML and PEP 691 JSON per project,
each file with its hashes, PEP 658 metadata, Requires-Python, the runtime
packages to install beside it and its provenance; and the simple root page."""

from __future__ import annotations

import html
import json

from packaging.utils import parse_wheel_filename

from orchestrator.store import StoredWheel

API_VERSION = "1.1"


def project_html(project: str, files: list[StoredWheel]) -> str:
    rows = []
    for w in sorted(files, key=lambda w: w.filename):
        attrs = (
            f' data-dist-info-metadata="sha256={w.metadata_sha256}"'
            f' data-core-metadata="sha256={w.metadata_sha256}"'
        )
        if w.requires_python:
            attrs += f' data-requires-python="{html.escape(w.requires_python)}"'
        href = html.escape(f"{w.filename}#sha256={w.sha256}")
        about = runtime_text(w)
        note = f' <span class="runtime">{html.escape(about)}</span>' if about else ""
        rows.append(f'    <a href="{href}"{attrs}>{html.escape(w.filename)}</a>{note}<br/>')
    body = "\n".join(rows)
    return (
        f'<!DOCTYPE html>\n<html>\n  <head>\n    <meta name="pypi:repository-version" '
        f'content="{API_VERSION}">\n    <title>Links for {project}</title>\n  </head>\n'
        f"  <body>\n    <h1>Links for {project}</h1>\n{body}\n  </body>\n</html>\n"
    )


def project_json(project: str, files: list[StoredWheel]) -> str:
    entries: list[dict[str, object]] = []
    versions = set()
    for w in sorted(files, key=lambda w: w.filename):
        versions.add(str(parse_wheel_filename(w.filename)[1]))
        entries.append(
            {
                "filename": w.filename,
                "url": w.filename,
                "hashes": {"sha256": w.sha256},
                "requires-python": w.requires_python,
                "size": w.size,
                "yanked": False,
                # PEP 714: only the new key. pip 23.0 (Debian 12's) crashes on the old
                # `dist-info-metadata` key when it is a mapping, as PEP 714 explains.
                "core-metadata": {"sha256": w.metadata_sha256},
            }
        )
        if w.runtime is not None:  # private keys (PEP 691): what to install beside it
            entries[-1]["_runtime"] = {
                "packages": w.runtime_packages,
                "glibc": w.runtime.get("glibc", ""),
                "python": w.runtime.get("python", ""),
            }
        if w.attestation:
            entries[-1]["_provenance"] = w.attestation
    return json.dumps(
        {
            "meta": {"api-version": API_VERSION},
            "name": project,
            "versions": sorted(versions),
            "files": entries,
        },
        indent=1,
    )


def runtime_text(wheel: StoredWheel) -> str:
    """What a person reads beside a file: the runtime packages it needs, the newest
    glibc symbol version, and its provenance file."""
    parts = []
    if wheel.runtime is not None:
        packages = wheel.runtime_packages
        listed = ", ".join(f"{k} {v}" for k, v in packages.items()) or "none beyond the C library"
        parts.append(f"runtime packages: {listed}")
        if wheel.runtime.get("glibc"):
            parts.append(f"glibc >= {wheel.runtime['glibc']}")
    if wheel.attestation:
        parts.append(f"provenance: {wheel.attestation}")
    return "; ".join(parts)


def root_html(projects: list[str]) -> str:
    links = "\n".join(f'    <a href="{p}/">{p}</a><br/>' for p in projects)
    return (
        f'<!DOCTYPE html>\n<html>\n  <head>\n    <meta name="pypi:repository-version" '
        f'content="{API_VERSION}">\n    <title>Simple index</title>\n  </head>\n'
        f"  <body>\n{links}\n  </body>\n</html>\n"
    )


def root_json(projects: list[str]) -> str:
    return json.dumps(
        {"meta": {"api-version": API_VERSION}, "projects": [{"name": n} for n in projects]}
    )
