"""The shipped GitHub workflow, its steps run for real (tests/github_runner.py: each
job on this host in a fresh clone with an empty HOME and work folder; the `uses:`
steps replaced by the local stand-ins listed there; GitHub Pages played by a local
HTTP server whose folder deploy-pages replaces at once).

examples/local.yaml's platforms and examples/requirements.txt. The site is the
night's only durable state: the first night publishes the one-host index; a second
night on empty runners plans from the site, starts no shard and deploys the same
site; a night whose arm64 shard fails deploys amd64's new wheel and keeps arm64's
pages as they were.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.github_runner import Runner

from .projects import head, runner_env, user_project
from .trees import comparable

WORKFLOW = REPO / "deploy" / "github" / "wheel-cache.yml"
AMD, ARM = "debian-bookworm-amd64", "debian-bookworm-arm64"
SHARD_STEP = 'run: orchestrate ci-step shard "$SHARD"'


def _repository(root: Path, workflow: str, extra: str = "") -> Path:
    """A user's repository with the workflow as the user sets it: their matrix and
    requirements, this commit of orchestrate."""
    pinned = "git+https://github.com/OWNER/orchestrate@0000000000000000000000000000000000000000"
    assert pinned in workflow
    set_up = (
        workflow.replace("MATRIX: platforms.yaml", "MATRIX: matrix.yaml")
        .replace("REQUIREMENTS: upper-constraints.txt", "REQUIREMENTS: requirements.txt")
        .replace(pinned, f"git+file://{REPO}@{head()}")
    )
    return user_project(
        root,
        files={".github/workflows/wheel-cache.yml": set_up},
        matrix="matrix.yaml",
        requirements="requirements.txt",
        extra=extra,
    )


class Pages:
    """GitHub Pages: a folder served over HTTP, replaced at once by a deploy."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.live = root / "live"
        handler = functools.partial(_Quiet, directory=str(self.live))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def deploy(self, site: Path) -> None:
        staged = self.root / "staged"
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(site, staged)
        old = self.root / "old"
        shutil.rmtree(old, ignore_errors=True)
        if self.live.exists():
            self.live.rename(old)
        staged.rename(self.live)

    def tree(self) -> dict[str, dict[str, str]]:
        """Per platform, every served file under simple/ and its sha256."""
        out: dict[str, dict[str, str]] = {}
        for platform in sorted(p for p in self.live.iterdir() if (p / "simple").is_dir()):
            simple = platform / "simple"
            out[platform.name] = {
                f.relative_to(simple).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
                for f in sorted(simple.rglob("*"))
                if f.is_file()
            }
        return out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def pages(tmp_path: Path) -> Iterator[Pages]:
    site = Pages(tmp_path / "pages")
    yield site
    site.server.shutdown()


def _runner(repo: Path, root: Path, pages: Pages, pip: Mapping[str, str]) -> Runner:
    cache = root / "cache"
    for shard in ("amd64", "arm64"):  # a runner's restored cache: the bases and toolchain
        shutil.copytree(
            os.environ["ORCHESTRATE_CACHE_DIR"], cache / f"orchestrate-{shard}-seed", symlinks=True
        )
    base = runner_env(pip)
    base["PIP_CACHE_DIR"] = str(root / "pip-cache")  # setup-python's `cache: pip`
    return Runner(
        workflow=repo / ".github" / "workflows" / "wheel-cache.yml",
        repo=repo,
        root=root,
        variables={"WHEEL_CACHE_URL": pages.url},
        base_env=base,
        deploy=pages.deploy,
    )


def test_github_nights_publish_from_the_site_alone_and_keep_a_failed_platform(
    one_host_examples: dict[str, dict[str, str]],
    tmp_path: Path,
    pages: Pages,
    site_mirror: dict[str, str],
) -> None:
    text = WORKFLOW.read_text()
    repo = _repository(tmp_path / "repo", text)
    runner = _runner(repo, tmp_path / "runner", pages, site_mirror)
    first = runner.night(1)
    results = [first.result(j) for j in ("plan", "build", "merge", "deploy")]
    assert results == ["success"] * 4, first.log()[-8000:]
    assert f"(orchestrate-wheels, commit {head()})" in first.log()
    site, alone = pages.tree(), one_host_examples
    assert set(site) == {AMD, ARM}
    for platform in (AMD, ARM):
        assert comparable(site[platform]) == comparable(alone[platform]), platform

    second = runner.night(2)  # empty runners again: only the site says what is built
    assert second.result("build") == "skipped", second.log()[-8000:]  # no shard started
    assert second.result("deploy") == "success", second.log()[-8000:]
    assert pages.tree() == site

    assert SHARD_STEP in text
    dying = text.replace(SHARD_STEP, 'run: test "$SHARD" != arm64 && ' + SHARD_STEP[5:])
    # A new pin (docopt: pure Python, sdist only) gives both shards work tonight.
    broken = _repository(tmp_path / "repo-broken", dying, extra="docopt==0.6.2\n")
    flow = broken / ".github" / "workflows" / "wheel-cache.yml"
    third = replace(runner, repo=broken, workflow=flow).night(3)
    assert third.result("build") == "failure"
    assert third.result("deploy") == "success", third.log()[-8000:]
    now = pages.tree()
    assert any(f.startswith("docopt/") for f in now[AMD])
    assert now[ARM] == site[ARM]  # arm64 kept its pages
