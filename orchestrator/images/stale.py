"""Which builder images are stale, and why. Pure: labels and hashes in, a reason out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

LABEL_INPUTS = "org.orchestrate.inputs"
LABEL_PLATFORM = "org.orchestrate.platform"
LABEL_BASE = "org.orchestrate.base"
LABEL_CREATED = "org.opencontainers.image.created"
LABEL_REVISION = "org.opencontainers.image.revision"


@dataclass(frozen=True, kw_only=True)
class Stale:
    """Why a builder must be built, and whether that build may take the engine's
    cached layers. Not for --force or age: with its inputs unchanged, every cached
    layer matches, so the build would reuse the old `apt-get install` layer and pick
    up no update."""

    why: str
    reuses_layers: bool


def stale_reason(
    labels: Mapping[str, str] | None,
    inputs: str,
    now: datetime,
    max_age: timedelta | None = None,
    *,
    force: bool = False,
) -> Stale | None:
    """None when the existing image is fresh; otherwise why it must be rebuilt."""
    if force:
        return Stale(why="--force", reuses_layers=False)
    if labels is None:
        return Stale(why="no image yet", reuses_layers=True)
    if labels.get(LABEL_INPUTS) != inputs:
        why = "inputs changed (template, context files or base image)"
        return Stale(why=why, reuses_layers=True)
    if max_age is not None:
        created = _parse_time(labels.get(LABEL_CREATED, ""))
        if created is None or now - created > max_age:
            return Stale(why=f"older than {max_age.days} days", reuses_layers=False)
    return None


def _parse_time(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def build_labels(
    platform: str, inputs: str, base: str, revision: str, *, now: datetime
) -> dict[str, str]:
    return {
        LABEL_PLATFORM: platform,
        LABEL_INPUTS: inputs,
        LABEL_BASE: base,
        LABEL_CREATED: now.isoformat(timespec="seconds"),
        LABEL_REVISION: revision,
    }
