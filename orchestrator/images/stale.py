"""Which builder images are stale, and why. Pure: labels and hashes in, a reason out."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

LABEL_INPUTS = "org.orchestrate.inputs"
LABEL_PLATFORM = "org.orchestrate.platform"
LABEL_BASE = "org.orchestrate.base"
LABEL_CREATED = "org.opencontainers.image.created"
LABEL_REVISION = "org.opencontainers.image.revision"


def stale_reason(
    labels: Mapping[str, str] | None,
    inputs: str,
    now: datetime,
    max_age: timedelta | None = None,
    *,
    force: bool = False,
) -> str | None:
    """None when the existing image is fresh; otherwise why it must be rebuilt."""
    if force:
        return "--force"
    if labels is None:
        return "no image yet"
    if labels.get(LABEL_INPUTS) != inputs:
        return "inputs changed (template, context files or base image)"
    if max_age is not None:
        created = _parse_time(labels.get(LABEL_CREATED, ""))
        if created is None or now - created > max_age:
            return f"older than {max_age.days} days"
    return None


def reuses_layers(reason: str) -> bool:
    """Whether a build for `reason` may take the engine's cached layers. Not for
    --force or age: with its inputs unchanged, every cached layer matches, so the
    build would reuse the old `apt-get install` layer and pick up no update."""
    return reason != "--force" and not reason.startswith("older than")


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
