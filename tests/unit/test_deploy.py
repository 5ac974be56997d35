"""The CI definitions in deploy/, checked against real schemas from PyPI: GitHub's
workflow schema (check-jsonschema's vendored copy) and Zuul's (zuul-lint's)."""

from __future__ import annotations

import importlib.resources
import re
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
    args = (
        ("--builtin-schema", "vendor.github-workflows")
        if schema == "github"
        else ("--schemafile", _zuul_schema())
    )
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
    assert 'ci-step shard "$SHARD"' in steps  # build --plan plan.json --shard --bundle
    night = (REPO / "deploy" / "steps" / "night").read_text()
    assert '--plan plan.json --shard "$shard"' in night
    assert '--bundle "bundle-$shard"' in night


def test_each_zuul_platform_job_publishes_its_own_platforms() -> None:
    """OpenDev's way: no job waits for another platform's, so one failed platform
    never holds back the others; each job's post-run releases its own state."""
    layout = yaml.safe_load(ZUUL.read_text())
    jobs = {e["job"]["name"]: e["job"] for e in layout if "job" in e}
    shards = {n: j for n, j in jobs.items() if j.get("parent") == "orchestrate-wheel"}
    assert len(shards) == 2
    assert all("dependencies" not in j for j in jobs.values())
    post = (ZUUL.parent / jobs["orchestrate-wheel"]["post-run"].split("zuul/", 1)[1]).read_text()
    assert "ci-step, release" in post


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
            f"git+file://{REPO}@{head}",  # a clone of the commit: no build/ left in REPO
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


PINNED = re.compile(r"git\+https://\S+@[0-9a-f]{40}")


def workflow_blockers(text: str) -> list[str]:
    """What would stop a night on hosted runners, read off the workflow."""
    flow = yaml.safe_load(text)
    jobs, env = flow["jobs"], flow.get("env", {})
    found = []
    source = str(env.get("ORCHESTRATE_SOURCE", ""))
    runs = {
        name: " ".join(str(s.get("run", "")) for s in job.get("steps", []))
        for name, job in jobs.items()
    }
    if not PINNED.fullmatch(source) or any(
        re.search(r"pip install (?!\"\$ORCHESTRATE_SOURCE\")", r) for r in runs.values()
    ):
        found.append("installs orchestrate by a name, not a pinned commit")
    for name, run in runs.items():
        if "orchestrate " in run and "orchestrate --version" not in run:
            found.append(f"{name}: its log does not show which orchestrate it runs")
        builds = "orchestrate build" in run or "ci-step shard" in run
        if builds and "setup-host" not in run:
            found.append(f"{name}: builds on a runner nothing set up (Docker, QEMU, debootstrap)")
    cached = [
        str(s.get("with", {}).get("path"))
        for j in jobs.values()
        for s in j.get("steps", [])
        if str(s.get("uses", "")).startswith("actions/cache")
    ]
    if (
        any("INDEX_ROOT" in p or "wheelhouse" in p for p in cached)
        or "ORCHESTRATE_STATE" not in env
    ):
        found.append("keeps the night's state in the Actions cache, which GitHub evicts")
    if "always()" in text:
        found.append("always() merges and deploys a cancelled night")
    build = jobs["build"]
    deadline = int(env.get("ORCHESTRATE_BUILD_DEADLINE", 0))
    hands_over = "--deadline" in runs["build"] or "ci-step shard" in runs["build"]
    if not 0 < deadline < build["timeout-minutes"] * 60 or not hands_over:
        found.append("a shard killed at its timeout hands over nothing")
    uploads = [
        s
        for j in jobs.values()
        for s in j.get("steps", [])
        if str(s.get("uses", "")).startswith("actions/upload-artifact")
    ]
    if not all(s.get("with", {}).get("overwrite") is True for s in uploads):
        found.append("an artifact upload fails on a re-run (no overwrite)")
    if "merge.xml" not in " ".join(str(s.get("with", {}).get("path")) for s in uploads):
        found.append("the merge's report and JUnit are not uploaded")
    writers = [n for n, j in jobs.items() if (j.get("permissions") or {}).get("pages") == "write"]
    if writers != ["deploy"] or "deploy-pages" in runs.get("merge", "") + str(jobs["merge"]):
        found.append("the merge job deploys, with write permissions it need not have")
    return found


def test_the_workflow_has_none_of_the_blockers_a_first_night_met() -> None:
    """Each was found reading the workflow as a new user would; each check fails on
    the workflow before this change (checked when it was written)."""
    assert workflow_blockers(WORKFLOW.read_text()) == []


def test_the_site_the_merge_writes_is_the_one_pages_deploys() -> None:
    """ci-step merge writes the site into ORCHESTRATE_SITE; that folder, and no
    other, is what the Pages artifact carries."""
    merge = yaml.safe_load(WORKFLOW.read_text())["jobs"]["merge"]
    pages = [s for s in merge["steps"] if "upload-pages-artifact" in str(s.get("uses"))]
    assert [s["with"]["path"] for s in pages] == [merge["env"]["ORCHESTRATE_SITE"]]
    night = (REPO / "deploy" / "steps" / "night").read_text()
    assert "site=${ORCHESTRATE_SITE:?" in night


def _one_second(_name: str, _arch: str, *, emulated: bool) -> float:
    return 1.0


def test_the_zuul_build_jobs_name_shards_the_plan_has() -> None:
    """The shards come from the matrix's runners: (the rules the layout quotes); each
    build job's orchestrate_shard must be one of them (`--shard` is exit 2 otherwise)."""
    from orchestrator.config import load_matrix
    from orchestrator.config.matrix import expand
    from orchestrator.plan.shards import shards_of

    text = ZUUL.read_text()
    quoted = [line[2:] for line in text.splitlines() if line.startswith("#  ")]
    rules = "\n".join(quoted[quoted.index("  runners:") :][:3])
    matrix_text = (REPO / "platforms.yaml").read_text() + rules.replace("  runners:", "runners:")
    path = REPO / "deploy" / "zuul" / ".matrix-under-test.yaml"
    try:
        path.write_text(matrix_text)
        matrix = load_matrix(path)
    finally:
        path.unlink(missing_ok=True)
    names = {s.name for s in shards_of([], expand(matrix), matrix.runners, _one_second)}
    jobs = [e["job"] for e in yaml.safe_load(text) if "job" in e]
    wanted = {
        j["vars"]["orchestrate_shard"] for j in jobs if "orchestrate_shard" in j.get("vars", {})
    }
    assert wanted == {"amd64", "arm64"}
    assert wanted <= names, (wanted, names)
    for job in jobs:  # every node installs the pinned commit in pre-run
        if "parent" in job:  # a shard's job: its parent's pre-run and vars
            continue
        pre = (ZUUL.parent / str(job["pre-run"]).split("zuul/", 1)[1]).read_text()
        assert "- orchestrate-install" in pre, job["name"]
        assert PINNED.fullmatch(job["vars"]["orchestrate_source"]), job["name"]
    playbooks = "\n".join(p.read_text() for p in (ZUUL.parent / "playbooks").rglob("*.yaml"))
    assert "ansible.builtin.archive" not in playbooks  # community.general's module
    assert "scripts/setup-host" not in playbooks  # only this repository has it
    assert "name: orchestrate\n" not in playbooks  # PyPI's orchestrate is another project


@pytest.mark.parametrize("step", ["plan", "merge"])
def test_a_night_step_stops_when_the_published_state_cannot_be_read(
    tmp_path: Path, step: str
) -> None:
    """Planning against an empty index would rebuild everything, and the merge would
    then publish over the real state: a state that cannot be read is exit 3, and
    nothing is written to the index root or the state."""
    import os
    import sys

    from tests.matrices import local_matrix_copy

    matrix = local_matrix_copy(tmp_path / "m.yaml", tmp_path / "index")
    missing = tmp_path / "not-there"
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "ci-step", step],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "MATRIX": str(matrix), "ORCHESTRATE_STATE": str(missing)},
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"cannot read the published state at {missing}" in done.stderr
    assert not missing.exists()
    assert not (tmp_path / "plan.json").exists()
    assert list((tmp_path / "index").iterdir()) == []
