"""Refreshing a builder in place: when, with what Dockerfile, and what it reports."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.config import Bootstrap, load_matrix
from orchestrator.config.matrix import expand
from orchestrator.core.errors import TemplateError
from orchestrator.images.build import ImageResult
from orchestrator.images.facts import PackageChange, parse_changes
from orchestrator.images.render import (
    bootstrap_sources,
    bootstrap_tag,
    render,
    render_upgrade,
    upgrade_template,
)
from orchestrator.images.stale import (
    LABEL_CREATED,
    LABEL_INPUTS,
    LABEL_RECIPE,
    LABEL_UPGRADES,
    MAX_UPGRADES,
    build_labels,
    stale_reason,
)
from orchestrator.model import ImageStatus
from tests.conftest import REPO

MATRIX = load_matrix(REPO / "platforms.yaml")
PLATFORMS = {p.name: p for p in expand(MATRIX)}
NOW = datetime(2026, 12, 5, tzinfo=UTC)
WEEK = timedelta(days=7)


def _labels(
    *, inputs: str = "in", recipe: str = "r", age_days: int = 1, upgrades: int = 0
) -> dict[str, str]:
    created = (NOW - timedelta(days=age_days)).isoformat()
    return {
        LABEL_INPUTS: inputs,
        LABEL_RECIPE: recipe,
        LABEL_CREATED: created,
        LABEL_UPGRADES: str(upgrades),
    }


def test_an_old_builder_with_its_recipe_unchanged_is_upgraded() -> None:
    stale = stale_reason(_labels(age_days=9), "in", NOW, WEEK, recipe="r")
    assert stale is not None
    assert stale.upgrade
    assert stale.why == "older than 7 days: upgrading the previous builder"


def test_a_moved_base_under_the_same_recipe_is_upgraded() -> None:
    stale = stale_reason(_labels(), "new-base", NOW, recipe="r")
    assert stale is not None
    assert stale.upgrade
    assert stale.why.startswith("the base image moved")


def test_a_changed_recipe_or_a_family_without_upgrades_builds_from_the_base() -> None:
    changed = stale_reason(_labels(), "other", NOW, recipe="other-recipe")
    assert changed is not None
    assert not changed.upgrade
    assert changed.reuses_layers
    no_template = stale_reason(_labels(age_days=9), "in", NOW, WEEK, recipe="")
    assert no_template is not None
    assert not no_template.upgrade
    assert not no_template.reuses_layers


def test_force_and_a_builder_from_before_recipes_build_from_the_base() -> None:
    forced = stale_reason(_labels(), "in", NOW, recipe="r", force=True)
    assert forced is not None
    assert not forced.upgrade
    unlabelled = {LABEL_INPUTS: "in", LABEL_CREATED: "2026-01-01T00:00:00+00:00"}
    old = stale_reason(unlabelled, "in", NOW, WEEK, recipe="r")
    assert old is not None
    assert not old.upgrade


def test_after_enough_upgrades_the_next_refresh_starts_from_the_base() -> None:
    many = stale_reason(_labels(age_days=9, upgrades=MAX_UPGRADES), "in", NOW, WEEK, recipe="r")
    assert many is not None
    assert not many.upgrade
    assert f"{MAX_UPGRADES} times" in many.why
    fewer = stale_reason(
        _labels(age_days=9, upgrades=MAX_UPGRADES - 1), "in", NOW, WEEK, recipe="r"
    )
    assert fewer is not None
    assert fewer.upgrade


def test_a_fresh_builder_stays() -> None:
    assert stale_reason(_labels(), "in", NOW, WEEK, recipe="r") is None


def test_labels_carry_the_recipe_and_the_count() -> None:
    labels = build_labels("p", "in", "sha256:b", "rev", now=NOW, recipe="r")
    assert labels[LABEL_RECIPE] == "r"
    assert labels[LABEL_UPGRADES] == "0"


def test_the_recipe_ignores_the_base_image_but_not_the_template() -> None:
    platform = PLATFORMS["debian-bookworm-arm64"]
    rendered = render(platform, MATRIX)
    assert rendered.inputs_hash("sha256:a") != rendered.inputs_hash("sha256:b")
    assert rendered.recipe_hash() == render(platform, MATRIX).recipe_hash()
    other = dataclasses.replace(platform, packages=("libfoo-dev",))
    assert render(other, MATRIX).recipe_hash() != rendered.recipe_hash()


def test_the_upgrade_dockerfile_upgrades_records_and_probes_again() -> None:
    platform = PLATFORMS["debian-bookworm-arm64"]
    text = render_upgrade(platform, MATRIX, "sha256:" + "a" * 64)
    lines = text.splitlines()
    assert f"FROM sha256:{'a' * 64}" in lines
    assert lines.index("USER root") < lines.index(f"USER {MATRIX.builder.user}")
    assert "apt-get -y --no-install-recommends dist-upgrade" in text
    assert "> /etc/orchestrate/changes.txt" in text
    assert "orchestrate-probe \\\n       --write /etc/orchestrate 3.11" in text  # both files
    # A builder from its base runs the same dist-upgrade, so both reach the same state.
    assert "apt-get -y --no-install-recommends dist-upgrade" in render(platform, MATRIX).dockerfile


def test_only_families_with_an_upgrade_template_refresh_in_place() -> None:
    assert upgrade_template(PLATFORMS["debian-bookworm-amd64"]) == "deb-upgrade.Dockerfile.j2"
    rpm = PLATFORMS["centos-stream9-amd64"]
    assert upgrade_template(rpm) is None
    with pytest.raises(TemplateError, match="no upgrade template for the rpm family"):
        render_upgrade(rpm, MATRIX, "sha256:x")


def test_changes_parse_from_the_joined_listing() -> None:
    text = b"tzdata 2026b-0+deb12u1 2026f-0+deb12u1\nlibnew:arm64 - 1.0-1\n\n"
    changes = parse_changes(text)
    assert changes == (
        PackageChange(package="tzdata", old="2026b-0+deb12u1", new="2026f-0+deb12u1"),
        PackageChange(package="libnew:arm64", old="-", new="1.0-1"),
    )
    assert str(changes[0]) == "tzdata 2026b-0+deb12u1 -> 2026f-0+deb12u1"


def test_an_image_result_keeps_its_changes_through_the_report() -> None:
    change = PackageChange(package="tzdata", old="a", new="b")
    result = ImageResult(platform="p", status=ImageStatus.BUILT, in_place=True, changes=(change,))
    data = result.as_dict()
    assert data["changes"] == [{"package": "tzdata", "old": "a", "new": "b"}]
    assert ImageResult.from_dict(data).changes == (change,)


def test_a_bootstrapped_base_reads_the_updates_and_security_pockets() -> None:
    debian = Bootstrap(bootstrap="debootstrap", suite="bookworm")
    assert bootstrap_sources(debian).splitlines() == [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]
    ubuntu = Bootstrap(
        bootstrap="debootstrap", suite="noble", mirror="http://archive.ubuntu.com/ubuntu"
    )
    assert "deb http://archive.ubuntu.com/ubuntu noble-security main" in bootstrap_sources(ubuntu)
    sid = Bootstrap(bootstrap="debootstrap", suite="sid")
    assert bootstrap_sources(sid) == "deb http://deb.debian.org/debian sid main\n"
    plain = Bootstrap(bootstrap="debootstrap", suite="bookworm", updates=False)
    assert bootstrap_sources(plain) == "deb http://deb.debian.org/debian bookworm main\n"
    # Other pockets make another base image.
    assert bootstrap_tag(debian, "arm64") != bootstrap_tag(plain, "arm64")
