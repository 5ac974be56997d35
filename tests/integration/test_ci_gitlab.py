"""The shipped GitLab pipeline, run for real by gitlab-ci-local (`--shell-isolation`:
each job in a fresh copy of the project, with its own empty workdir and index root).

The shard jobs' GitLab cache (`cache:`, the bases and the emulated builder's cross
toolchain) starts as a copy of the session's, as a runner's restored cache would:
with an empty one each night makes the arm64 builder again (a minute under QEMU)
and retags the shared builder other tests read. What a night builds is decided by
the published state alone (ORCHESTRATE_STATE), never by a cache.

examples/local.yaml's platforms and examples/requirements.txt: a plan job, one job
per shard, a merge job that publishes to a durable folder (ORCHESTRATE_STATE). The
published index must be the one a single host publishes; a second night on empty
runners builds nothing and publishes the same; a night whose arm64 job dies (after
the same first night) publishes amd64 and leaves arm64's release as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.images.pipeline import ImagesReport
from tests.conftest import REPO

from .projects import head, user_project
from .trees import comparable, served

GCL = REPO / ".ci-tools" / "node_modules" / ".bin" / "gitlab-ci-local"
PIPELINE = REPO / "deploy" / "gitlab" / "wheel-cache.gitlab-ci.yml"
AMD, ARM = "debian-bookworm-amd64", "debian-bookworm-arm64"
SHARD_LINE = '    - orchestrate ci-step shard "$SHARD"\n'


def _project(root: Path, pipeline: str, extra: str = "") -> Path:
    """A user's repository with the pipeline, and GitLab's cache of each shard job."""
    project = user_project(
        root,
        files={".gitlab-ci.yml": pipeline},
        matrix="matrix.yaml",
        requirements="requirements.txt",
        extra=extra,
    )
    for shard in ("amd64", "arm64"):  # GitLab's cache of each shard job, restored
        cache = root / ".gitlab-ci-local" / "cache" / f"orchestrate-{shard}"
        shutil.copytree(
            os.environ["ORCHESTRATE_CACHE_DIR"], cache / ".orchestrate-cache", symlinks=True
        )
    return project


def _night(
    project: Path, state: Path, runner: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    variables = {
        "MATRIX": "matrix.yaml",
        "REQUIREMENTS": "requirements.txt",
        # The commit under test, pinned as a user pins theirs (pip clones it per job).
        "ORCHESTRATE_SOURCE": f"git+file://{REPO}@{head()}",
        "ORCHESTRATE_STATE": str(state),
    }
    args = [a for k, v in variables.items() for a in ("--variable", f"{k}={v}")]
    return subprocess.run(
        [str(GCL), "--shell-isolation", "--no-color", *args],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        env=dict(runner),
        timeout=2400,
    )


@pytest.fixture(scope="module")
def gitlab(built_images: ImagesReport, site_mirror: dict[str, str]) -> dict[str, str]:
    """The shell runner's environment: the host's, pip's mirror, no session cache."""
    if not GCL.is_file():
        pytest.fail("gitlab-ci-local is missing: run scripts/bootstrap --test")
    env = {k: v for k, v in os.environ.items() if k != "ORCHESTRATE_CACHE_DIR"}
    return {**env, **site_mirror}


@dataclass(frozen=True)
class FirstNight:
    project: Path
    state: Path
    done: subprocess.CompletedProcess[str]
    runner: dict[str, str]


@pytest.fixture(scope="module")
def first_night(gitlab: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> FirstNight:
    """A healthy night on an empty state: what both tests start from (a night costs
    more than a minute)."""
    root = tmp_path_factory.mktemp("gitlab")
    state = root / "published"
    state.mkdir()
    project = _project(root / "repo", PIPELINE.read_text())
    return FirstNight(project, state, _night(project, state, gitlab), gitlab)


def test_a_gitlab_night_publishes_the_one_host_index_and_a_second_builds_nothing(
    first_night: FirstNight, one_host_examples: dict[str, dict[str, str]]
) -> None:
    project, state, first = first_night.project, first_night.state, first_night.done
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-2000:]
    assert f"(orchestrate-wheels, commit {head()})" in first.stdout  # every job names it
    assert set(served(state)) == {AMD, ARM}
    facts = state / ".orchestrate-facts"  # what planning needs travels with the index
    durations = json.loads((facts / "durations.json").read_text())
    assert any(k.startswith("crcmod") for k in durations), durations
    assert {p.stem for p in (facts / "probes").glob("*.json")} == {AMD, ARM}

    published, alone = served(state), one_host_examples
    for platform in (AMD, ARM):
        assert comparable(published[platform]) == comparable(alone[platform]), platform

    second = _night(project, state, first_night.runner)
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-2000:]
    merged = json.loads((project / "merge.json").read_text())
    assert [j for j in merged["jobs"] if j["status"] == "built"] == []  # nothing rebuilt
    assert {d["action"] for d in merged["plan"]} <= {"cached", "upstream"}
    assert served(state) == published


def test_a_gitlab_night_whose_arm64_job_dies_publishes_amd64_and_keeps_arm64(
    first_night: FirstNight, tmp_path: Path
) -> None:
    assert first_night.done.returncode == 0, first_night.done.stdout[-6000:]
    state = tmp_path / "published"  # a copy: its release links are relative
    shutil.copytree(first_night.state, state, symlinks=True)
    before = {p: (state / p).readlink() for p in (AMD, ARM)}
    text = PIPELINE.read_text()
    assert SHARD_LINE in text
    dying = text.replace(SHARD_LINE, '    - test "$SHARD" != arm64 || exit 1\n' + SHARD_LINE)
    # A new pin (docopt: pure Python, sdist only) gives both shards work tonight.
    broken = _project(tmp_path / "repo-broken", dying, extra="docopt==0.6.2\n")
    night = _night(broken, state, first_night.runner)
    assert night.returncode != 0  # the night says something went wrong
    assert "night: published to" in night.stdout, night.stdout[-6000:]
    merged = json.loads((broken / "merge.json").read_text())
    shards = {s["name"]: s["status"] for s in merged["shards"]}
    assert shards == {"amd64": "merged", "arm64": "missing"}
    assert (state / AMD).readlink() != before[AMD]  # amd64 published tonight's wheel
    assert (state / ARM).readlink() == before[ARM]  # arm64 kept its last release
    now = served(state)
    assert any(f.startswith("docopt/") for f in now[AMD])
    assert not any(f.startswith("docopt/") for f in now[ARM])
