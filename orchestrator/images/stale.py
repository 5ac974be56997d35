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
LABEL_RECIPE = "org.orchestrate.recipe"  # the inputs without the base image
LABEL_UPGRADES = "org.orchestrate.upgrades"  # refreshes in place since built from the base
# Each in-place refresh adds a layer over the files it replaces; past this many the
# next refresh starts from the base again, so a builder does not grow without end.
MAX_UPGRADES = 8


@dataclass(frozen=True, kw_only=True)
class Stale:
    """Why a builder must be built, and whether that build may take the engine's
    cached layers. Not for --force or age: with its inputs unchanged, every cached
    layer matches, so the build would reuse the old `apt-get install` layer and pick
    up no update."""

    why: str
    reuses_layers: bool
    upgrade: bool = False  # refresh the previous builder in place (`apt-get dist-upgrade`)


def stale_reason(
    labels: Mapping[str, str] | None,
    inputs: str,
    now: datetime,
    max_age: timedelta | None = None,
    *,
    force: bool = False,
    recipe: str = "",
) -> Stale | None:
    """None when the existing image is fresh; otherwise why it must be rebuilt. With
    a `recipe` (the inputs without the base; only for families that can upgrade in
    place), a builder whose only change is its base or its age is upgraded."""
    if force:
        return Stale(why="--force", reuses_layers=False)
    if labels is None:
        return Stale(why="no image yet", reuses_layers=True)
    upgradable = bool(recipe) and labels.get(LABEL_RECIPE) == recipe
    if labels.get(LABEL_INPUTS) != inputs:
        if upgradable:
            return _upgrade("the base image moved", labels)
        why = "inputs changed (template, context files or base image)"
        return Stale(why=why, reuses_layers=True)
    if max_age is not None:
        created = _parse_time(labels.get(LABEL_CREATED, ""))
        if created is None or now - created > max_age:
            why = f"older than {max_age.days} days"
            return _upgrade(why, labels) if upgradable else Stale(why=why, reuses_layers=False)
    return None


def upgrades(labels: Mapping[str, str]) -> int:
    """How many in-place refreshes the image has had since it was built from its base."""
    text = labels.get(LABEL_UPGRADES, "0")
    return int(text) if text.isdigit() else MAX_UPGRADES


def _upgrade(why: str, labels: Mapping[str, str]) -> Stale:
    if upgrades(labels) >= MAX_UPGRADES:
        why = f"{why}; refreshed in place {MAX_UPGRADES} times: from the base"
        return Stale(why=why, reuses_layers=False)
    return Stale(why=f"{why}: upgrading the previous builder", reuses_layers=False, upgrade=True)


def _parse_time(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def build_labels(
    platform: str,
    inputs: str,
    base: str,
    revision: str,
    *,
    now: datetime,
    recipe: str = "",
    upgraded: int = 0,
) -> dict[str, str]:
    return {
        LABEL_PLATFORM: platform,
        LABEL_INPUTS: inputs,
        LABEL_BASE: base,
        LABEL_CREATED: now.isoformat(timespec="seconds"),
        LABEL_REVISION: revision,
        LABEL_RECIPE: recipe,
        LABEL_UPGRADES: str(upgraded),
    }
