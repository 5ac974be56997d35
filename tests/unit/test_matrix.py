"""Expanding the matrix and selecting platforms by glob."""

from __future__ import annotations

import pytest

from orchestrator.config import load_matrix
from orchestrator.config.matrix import expand, select
from orchestrator.core.errors import EXIT_INPUT, SelectorError
from tests.conftest import REPO, CliRunner

PLATFORMS = expand(load_matrix(REPO / "platforms.yaml"))


def test_select_globs_keep_file_order() -> None:
    picked = select(PLATFORMS, ["*-arm64", "debian-*"])
    assert [p.name for p in picked] == [
        "centos-stream9-arm64",
        "debian-bookworm-amd64",
        "debian-bookworm-arm64",
        "ubuntu-noble-arm64",
    ]


def test_no_pattern_selects_everything() -> None:
    assert select(PLATFORMS, []) == PLATFORMS


def test_pattern_matching_nothing_is_an_error() -> None:
    with pytest.raises(SelectorError, match="'fedora-\\*' matches no platform"):
        select(PLATFORMS, ["debian-*", "fedora-*"])


def test_selector_error_through_cli(cli: CliRunner) -> None:
    result = cli("matrix", "show", "-m", str(REPO / "platforms.yaml"), "-p", "nope")
    assert result.code == EXIT_INPUT
    assert "--platform 'nope' matches no platform" in result.err
    assert "debian-bookworm-arm64" in result.err  # the hint lists what exists


def test_platform_packages_merge_family_defaults_and_distro_extras() -> None:
    from orchestrator.config import Matrix

    matrix = load_matrix(REPO / "platforms.yaml")
    distro = matrix.distros[1].model_copy(update={"packages": ("libgmp-dev", "libffi-dev")})
    changed = Matrix.model_validate({**matrix.model_dump(), "distros": [distro.model_dump()]})
    packages = expand(changed)[0].packages
    assert packages.count("libffi-dev") == 1
    assert packages[-1] == "libgmp-dev"


def test_platform_json_shape() -> None:
    debian_arm = next(p for p in PLATFORMS if p.name == "debian-bookworm-arm64")
    assert debian_arm.as_dict()["arch"] == "arm64"
    assert debian_arm.release_name == "debian-bookworm"
    assert debian_arm.arch.machine == "aarch64"
