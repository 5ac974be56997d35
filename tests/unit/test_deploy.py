"""The CI definitions in deploy/, checked against real schemas from PyPI: GitHub's
workflow schema (check-jsonschema's vendored copy) and Zuul's (zuul-lint's)."""

from __future__ import annotations

import importlib.resources
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrator.plan.shards import Shard
from tests.conftest import REPO

WORKFLOW = REPO / "deploy" / "github" / "wheel-cache.yml"
ZUUL = REPO / "deploy" / "zuul" / "zuul.yaml"


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("check-jsonschema")
    assert tool, "check-jsonschema is a test dependency"
    return subprocess.run([tool, *args], capture_output=True, text=True, check=False)


def _zuul_schema() -> str:
    return str(importlib.resources.files("zuul_lint") / "zuul-schema.json")


def test_the_github_workflow_is_valid() -> None:
    done = _check("--builtin-schema", "vendor.github-workflows", str(WORKFLOW))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_zuul_layout_is_valid() -> None:
    done = _check("--schemafile", _zuul_schema(), str(ZUUL))
    assert done.returncode == 0, done.stdout + done.stderr


BREAKS = {
    "github": (WORKFLOW, "runs-on: ${{ matrix.labels }}", "runs_on: ${{ matrix.labels }}"),
    "zuul": (ZUUL, "    nodeset: ubuntu-noble\n", "    node-set: ubuntu-noble\n"),
}


@pytest.mark.parametrize("schema", sorted(BREAKS))
def test_the_checks_catch_a_broken_definition(tmp_path: Path, schema: str) -> None:
    source, old, new = BREAKS[schema]
    text = source.read_text()
    assert old in text
    broken = tmp_path / source.name
    broken.write_text(text.replace(old, new, 1))
    args = ("--builtin-schema", "vendor.github-workflows") if schema == "github" else (
        "--schemafile", _zuul_schema())  # fmt: skip
    assert _check(*args, str(broken)).returncode != 0


def test_the_workflow_reads_the_keys_plan_shards_writes() -> None:
    """The matrix entries `plan --shards` prints carry what the build job reads."""
    keys = set(Shard(name="a", platforms=("p",), labels=("l",), native=True).as_dict())
    text = WORKFLOW.read_text()
    for key in ("shard", "labels", "native"):
        assert f"matrix.{key}" in text
        assert key in keys
    jobs = yaml.safe_load(text)["jobs"]
    assert jobs["build"]["needs"] == "plan"
    assert set(jobs["merge"]["needs"]) == {"plan", "build"}
    steps = " ".join(str(s.get("run", "")) for s in jobs["build"]["steps"])
    assert "--plan plan.json" in steps
    assert "--bundle" in steps


def test_the_zuul_publish_job_waits_for_every_platform_job() -> None:
    layout = yaml.safe_load(ZUUL.read_text())
    jobs = {e["job"]["name"]: e["job"] for e in layout if "job" in e}
    builds = {n for n, j in jobs.items() if j.get("parent") == "orchestrate-wheel-build"}
    assert len(builds) == 2
    waits = {d["name"] for d in jobs["orchestrate-wheel-publish"]["dependencies"]}
    assert builds <= waits


def test_a_wheel_of_this_checkout_names_its_commit(tmp_path: Path) -> None:
    """What a CI job installs (a wheel built from the night's checkout) says which
    commit it is; and the distribution is not PyPI's unrelated `orchestrate`."""
    import sys
    import zipfile

    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel.name.startswith("orchestrate_wheels-")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
        assert archive.read("orchestrator/_revision.txt").decode().strip() == head
    shown = subprocess.run(
        [sys.executable, "-m", "orchestrator", "--version"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"orchestrate 0.1.0 (orchestrate-wheels, commit {head})"
