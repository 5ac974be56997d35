"""Which of our wheels the upstream index now serves for the same platform."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from orchestrator.config import Matrix
from orchestrator.config.matrix import Platform
from orchestrator.plan.decide import best_wheel, usable
from orchestrator.plan.gather import Probed, tagsets_for
from orchestrator.plan.upstream import Upstream
from orchestrator.store import Store, StoredWheel


@dataclass(kw_only=True, frozen=True)
class PruneCandidate:
    platform: str
    key: str
    filename: str
    upstream: str  # the upstream file that replaces it ("" for an unwanted one)
    reason: str = "the upstream index serves it"


def prune_candidates(
    matrix: Matrix,
    store: Store,
    platforms: Sequence[Platform],
    upstream: Upstream,
    *,
    probed: Probed | None = None,
) -> list[PruneCandidate]:
    records = store.records()
    pages = upstream.projects({r.project for r in records.values()})
    tagsets = tagsets_for(platforms, probed or {})
    found = []
    for platform in platforms:
        for key, record in sorted(records.items()):
            page = pages.get(record.project)
            if platform.name not in record.platforms or page is None:
                continue
            for python in platform.python:
                files, _ = usable(page.files(record.version), python, exact=True)
                wheels = [f for f in files if f.filename.endswith(".whl")]
                best = best_wheel(wheels, tagsets[(platform.name, python)])
                if best is not None:
                    found.append(
                        PruneCandidate(
                            platform=platform.name,
                            key=key,
                            filename=record.filename,
                            upstream=best.filename,
                        )
                    )
                    break
    return found


UNWANTED = "no branch wants it on this platform"


def unwanted_candidates(
    records: Mapping[str, StoredWheel],
    platforms: Sequence[Platform],
    wanted: Collection[tuple[str, str, str]],
) -> list[PruneCandidate]:
    """Our wheels whose (platform, project, version) no branch's plan has any more: what
    a platform that dropped a branch (or a pin a branch dropped) left published.
    `wanted` holds (platform, normalized name, canonical version)."""
    found = []
    for platform in platforms:
        for key, record in sorted(records.items()):
            if platform.name in record.platforms and (
                (platform.name, record.project, record.version) not in wanted
            ):
                found.append(
                    PruneCandidate(
                        platform=platform.name,
                        key=key,
                        filename=record.filename,
                        upstream="",
                        reason=UNWANTED,
                    )
                )
    return found
