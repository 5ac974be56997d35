"""The shipped Zuul jobs, their playbooks run for real by ansible-playbook (ansible-core
from PyPI) against localhost, as a Zuul executor would run them: for each job of the
periodic pipeline, its pre-run, run and post-run playbooks in order (post-run also
after a failed run), with the job's variables (parent's, then its own), the
`zuul` variables an executor sets and the secret's variables. zuul-jobs' roles and
`zuul_return` are stand-ins (tests/zuul/README.md lists them).

Each job starts with an empty home and work folder; its orchestrate cache starts as
a copy of the session's (the bases and the emulated builder's cross toolchain, as a
node's image cache would hold them), so no builder is made again. The published
state is a folder per shard (the rsync target of the secret). The first night
publishes the one-host index; a second builds nothing and leaves it as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO

from .projects import head, runner_env, user_project
from .trees import comparable, served

ZUUL = REPO / "deploy" / "zuul"
STANDINS = REPO / "tests" / "zuul"
PLAYBOOK = shutil.which("ansible-playbook") or "ansible-playbook"
AMD, ARM = "debian-bookworm-amd64", "debian-bookworm-arm64"
SUDO = """#!/bin/bash
# Zuul nodes give passwordless sudo; here we are root: drop sudo's options.
while [ $# -gt 0 ]; do
  case $1 in -u|-p) shift 2 ;; -*) shift ;; *) break ;; esac
done
exec "$@"
"""


def _jobs() -> dict[str, dict[str, Any]]:
    """Each job of the periodic pipeline, with its parent's attributes and variables."""
    layout = yaml.safe_load((ZUUL / "zuul.yaml").read_text())
    defined = {e["job"]["name"]: e["job"] for e in layout if "job" in e}
    (project,) = [e["project"] for e in layout if "project" in e]
    jobs = {}
    for name in project["periodic"]["jobs"]:
        job = defined[name]
        parent = defined.get(job.get("parent", ""), {})
        jobs[name] = {**parent, **job, "vars": {**parent.get("vars", {}), **job.get("vars", {})}}
    return jobs


def _project(root: Path) -> Path:
    """The project the night runs for, in a git repository as Zuul prepares it."""
    return user_project(
        root, files={}, matrix="platforms.yaml", requirements="upper-constraints.txt"
    )


def _run_job(
    name: str,
    job: dict[str, Any],
    *,
    project: Path,
    root: Path,
    state: Path,
    pip: Mapping[str, str],
) -> bool:
    """One job on a fresh node: True when its run playbook passed."""
    node = root / name
    shutil.rmtree(node, ignore_errors=True)
    src, logs, home, tools = node / "src", node / "logs", node / "home", node / "bin"
    subprocess.run(["git", "clone", "-q", str(project), str(src)], check=True)
    for folder in (logs, tools, home / ".cache"):
        folder.mkdir(parents=True)
    shutil.copytree(
        os.environ["ORCHESTRATE_CACHE_DIR"], home / ".cache" / "orchestrate", symlinks=True
    )
    (tools / "sudo").write_text(SUDO)
    (tools / "sudo").chmod(0o755)
    variables = {
        **job["vars"],
        # The commit under test, pinned as a user pins theirs.
        "orchestrate_source": f"git+file://{REPO}@{head()}",
        "orchestrate_publish": {"target": str(state)},  # the secret
        "ansible_user_dir": str(home),
        "ansible_python_interpreter": "/usr/bin/python3",  # as a Zuul node's inventory
        "zuul": {
            "job": name,
            "project": {"src_dir": str(src)},
            "executor": {"log_root": str(logs)},
        },
    }
    (node / "vars.json").write_text(json.dumps(variables))
    env = {
        **runner_env(pip),
        "PATH": f"{tools}:{os.environ['PATH']}",
        "HOME": str(home),
        "ANSIBLE_ROLES_PATH": str(STANDINS / "roles"),
        "ANSIBLE_ACTION_PLUGINS": str(STANDINS / "action_plugins"),
        "ANSIBLE_LOCAL_TEMP": str(node / "ansible-tmp"),
        "ZUUL_STANDIN_CALLS": str(root / "calls.txt"),
        "ZUUL_RETURN_RECORD": str(root / "zuul_return.jsonl"),
        "PIP_CACHE_DIR": str(root / "pip-cache"),
    }

    def play(path: str) -> subprocess.CompletedProcess[str]:
        inventory = ["-i", "localhost,", "-c", "local", "-e", f"@{node / 'vars.json'}"]
        done = subprocess.run(
            [PLAYBOOK, "-v", *inventory, str(REPO / path)],  # -v: task output, as Zuul logs it
            capture_output=True,
            text=True,
            check=False,
            env=env,
            cwd=node,
        )
        (logs / f"{Path(path).stem}.log").write_text(done.stdout + done.stderr)
        return done

    pre = play(job["pre-run"])
    assert pre.returncode == 0, pre.stdout[-6000:] + pre.stderr[-2000:]
    ran = play(job["run"])
    post = play(job["post-run"])  # after a failed run too, as Zuul runs it
    assert post.returncode == 0, post.stdout[-6000:] + post.stderr[-2000:]
    return ran.returncode == 0


def _night(
    jobs: dict[str, dict[str, Any]],
    *,
    project: Path,
    root: Path,
    state: Path,
    pip: Mapping[str, str],
) -> dict[str, bool]:
    """The periodic pipeline's jobs at once, each on its node, as Zuul runs them."""
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        done = {
            name: pool.submit(_run_job, name, job, project=project, root=root, state=state, pip=pip)
            for name, job in jobs.items()
        }
        return {name: future.result() for name, future in done.items()}


def test_zuul_platform_jobs_publish_the_one_host_index_and_then_build_nothing(
    one_host_examples: dict[str, dict[str, str]],
    tmp_path: Path,
    state: Path,
    site_mirror: dict[str, str],
) -> None:
    project = _project(tmp_path / "project")
    jobs = _jobs()
    assert set(jobs) == {"orchestrate-wheel-amd64", "orchestrate-wheel-arm64"}
    nodes = tmp_path / "night-1"
    passed = _night(jobs, project=project, root=nodes, state=state, pip=site_mirror)
    assert all(passed.values()), [(nodes / n / "logs").as_posix() for n, ok in passed.items()]
    calls = (nodes / "calls.txt").read_text().splitlines()
    roles = ("ensure-pip", "ensure-docker")
    assert sorted(calls) == sorted(f"{role} {job}" for job in jobs for role in roles)
    record = (nodes / "zuul_return.jsonl").read_text()
    returned = [json.loads(line) for line in record.splitlines()]
    assert len(returned) == 2
    assert all(r["zuul"]["artifacts"] for r in returned)
    log = (nodes / "orchestrate-wheel-amd64" / "logs" / "pre.log").read_text()
    assert f"(orchestrate-wheels, commit {head()})" in log
    for shard, platform in (("amd64", AMD), ("arm64", ARM)):
        published = served(state / shard)
        assert set(published) == {platform}  # each shard's own place, its own platforms
        assert comparable(published[platform]) == comparable(one_host_examples[platform])
    before = {shard: served(state / shard) for shard in ("amd64", "arm64")}

    nodes = tmp_path / "night-2"  # fresh nodes again: only the published state counts
    assert all(_night(jobs, project=project, root=nodes, state=state, pip=site_mirror).values())
    for name, job in jobs.items():
        shard = job["vars"]["orchestrate_shard"]
        report = json.loads((nodes / name / "src" / f"report-{shard}.json").read_text())
        assert [j for j in report["jobs"] if j["status"] == "built"] == []
    assert {shard: served(state / shard) for shard in ("amd64", "arm64")} == before
