"""A user's repository as a CI system checks it out, for the tests that run the
shipped CI definitions."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from tests.conftest import REPO
from tests.matrices import local_matrix_copy


def head() -> str:
    """The commit under test: what every CI job installs, pinned as a user pins theirs."""
    return subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def user_project(
    root: Path,
    *,
    files: Mapping[str, str],
    matrix: str,
    requirements: str,
    extra: str = "",
) -> Path:
    """`files` (the CI definition), examples/local.yaml as `matrix` with a relative
    index root (each job has its own, empty) and builders of its own,
    examples/requirements.txt as `requirements` plus `extra` pins, committed.

    The builders' repository is the night's own: a runner's `orchestrate build` makes
    its builders without pushing them, and it runs beside the test session whose
    builders are pushed and whose provenance names them by digest."""
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    night_builders = {"repository: orchestrate/builder": "repository: orchestrate/night-builder"}
    local_matrix_copy(root / matrix, Path("wheelhouse"), night_builders)
    examples = (REPO / "examples" / "requirements.txt").read_text()
    (root / requirements).write_text(examples + extra)
    git = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "night"]):
        subprocess.run([*git, *args], cwd=root, check=True)
    return root


def runner_env(pip: Mapping[str, str]) -> dict[str, str]:
    """What a fresh CI runner's processes see here: this machine's network settings
    (its CA bundle, proxies) and the site's `pip` settings, none of the test
    session's orchestrate folders."""
    ours = ("ORCHESTRATE_", "XDG_", "PYTEST_", "VIRTUAL_ENV")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(ours)}, **pip}
