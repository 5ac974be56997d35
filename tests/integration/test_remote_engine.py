"""Jobs spread over two engines, one of them reached over ssh://."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.config import EngineSpec
from orchestrator.engines.docker import DockerEngine
from tests.matrices import ENGINES_BLOCK, local_matrix_copy

from .conftest import Local
from .remote import second_engine

AMD = "debian-bookworm-amd64"


@pytest.fixture(scope="module")
def remote_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with second_engine(tmp_path_factory.mktemp("engine2")) as url:
        yield url


def test_ssh_engine_is_reachable_and_native(remote_url: str) -> None:
    engine = DockerEngine(EngineSpec(name="remote", url=remote_url))
    info = engine.info()
    assert info.arch is not None
    assert info.arch.value == "amd64"
    assert info.data_root == "/var/lib/orchestrate-test-docker"
    engine.close()


@pytest.mark.usefixtures("built_images")  # the builders, pushed
def test_jobs_spread_over_local_and_ssh_engines(
    local: Local, engine: DockerEngine, remote_url: str, tmp_path: Path
) -> None:
    path = local_matrix_copy(
        tmp_path / "two.yaml",
        tmp_path / "wheels",
        {
            ENGINES_BLOCK: "engines:\n  - name: local\n    url: unix:///var/run/docker.sock\n"
            f"    slots: 1\n  - name: remote\n    url: {remote_url}\n    slots: 1\n"
        },
    )
    two = Local(path, local.matrix, tmp_path / "work")
    # The local engine's builder in the registry, as a night's `images build --push`
    # leaves it (an earlier test of the session may have replaced the pushed one).
    scope = ("-m", str(local.path), "-p", AMD, "--workdir", str(tmp_path / "images"))
    pushed = subprocess.run(
        ["orchestrate", "images", "build", "--push", *scope],
        capture_output=True,
        text=True,
        check=False,
    )
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    # Two C extensions that both need building: one job per engine slot.
    built = two.build("netifaces==0.11.0\ncrcmod==1.7\n", tmp_path / "run", "-p", "*-amd64")
    assert built.process.returncode == 0, built.process.stdout + built.process.stderr
    engines = {j["engine"] for j in built.jobs.values()}
    assert engines == {"local", "remote"}
    assert all(j["status"] == "built" for j in built.jobs.values())
    # The engine without the builder pulled the local engine's (pushed: the session's,
    # or what an earlier test pushed over it) rather than build its own: the same
    # image on both engines.
    tag = f"{local.matrix.registry.url}/orchestrate/builder:{AMD}"
    remote = DockerEngine(EngineSpec(name="remote", url=remote_url))
    try:
        theirs = remote.image(tag)
    finally:
        remote.close()
    ours = engine.image(tag)
    assert ours is not None
    assert theirs is not None
    assert theirs.id == ours.id
    log = (built.workdir / "logs" / "images" / f"{AMD}@remote.log").read_text()
    assert f"pulling the pushed builder {tag.rsplit(':', 1)[0]}@sha256:" in log
    assert f"pulled: {tag} ({ours.id[:19]})" in log
    assert "Step 1/" not in log
