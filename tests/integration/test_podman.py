"""Podman as an engine, through its Docker-compatible API service: alone (no Docker
daemon answers the run), in a pool beside Docker, and rootless."""

from __future__ import annotations

import pwd
import re
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import EngineSpec, load_matrix
from orchestrator.core.errors import EXIT_ENVIRONMENT, EngineError
from orchestrator.core.layout import RunLayout
from orchestrator.engines.docker import DockerEngine
from orchestrator.images.pipeline import ImagesReport
from orchestrator.model import EngineKind
from tests.conftest import REPO, CliRunner
from tests.matrices import ENGINES_BLOCK, local_matrix_copy

from .conftest import Local
from .test_real_world import check_sandbox

AMD, ARM = "debian-bookworm-amd64", "debian-bookworm-arm64"
ROOTFUL = "unix:///run/podman/podman.sock"
ROOTLESS_USER = "orchestrate"  # what `setup-host --test` makes and runs it as
DEMO = (REPO / "examples" / "requirements.txt").read_text()


def _engines(*engines: tuple[str, str, int]) -> str:
    return "engines:\n" + "".join(
        f"  - name: {name}\n    url: {url}\n    slots: {slots}\n" for name, url, slots in engines
    )


def _local(folder: Path, repository: str, *engines: tuple[str, str, int]) -> Local:
    """examples/local.yaml with these engines and a registry repository of its own, so
    that Podman's builders never take the tags Docker's builders have."""
    replacements = {
        ENGINES_BLOCK: _engines(*engines),
        "repository: orchestrate/builder": f"repository: {repository}",
    }
    path = local_matrix_copy(folder / "m.yaml", folder / "wheels", replacements)
    return Local(path, load_matrix(path), folder / "work", replacements)


def _without_docker(argv: Sequence[str]) -> list[str]:
    """`argv` in a mount namespace of its own where Docker's socket is /dev/null: no
    Docker daemon answers it, whatever the matrix or DOCKER_HOST says."""
    hide = 'mount --bind /dev/null /run/docker.sock && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", hide, "-", *argv]


def _orchestrate(*args: str, alone: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["orchestrate", *args]
    return subprocess.run(
        _without_docker(argv) if alone else argv, capture_output=True, text=True, check=False
    )


def _connect(url: str, name: str) -> DockerEngine:
    engine = DockerEngine(EngineSpec(name=name, url=url))
    try:
        engine.info()
    except EngineError as exc:
        pytest.fail(f"{exc.message}: run sudo scripts/setup-host --test (it starts Podman)")
    return engine


@pytest.fixture(scope="module")
def podman() -> Iterator[DockerEngine]:
    engine = _connect(ROOTFUL, "podman")
    yield engine
    engine.close()


def _forget_builders(podman: DockerEngine, repository: str) -> None:
    """Podman's builders of `repository` and its foreign roots, kept from an earlier
    session, gone: the module is about how Podman builds them, so it always does."""
    for image in podman.api.images():
        for tag in image.get("RepoTags") or ():
            if f"/{repository}:" in tag or "orchestrate-root:" in tag:
                podman.remove_image(tag)


# The host's copies of the arm64 builder's natively made parts, and what its log says
# when one is made.
ROOT = f"root-{ARM}-on-amd64-*.tar"
NATIVE_PARTS = {
    f"{ARM}-on-amd64-*.tar.gz": "making a native amd64 cross toolchain for arm64",
    "venvs-debian-bookworm-on-amd64-*.tar.gz": "making the tool venvs natively on amd64",
    ROOT: "installing the packages natively on amd64 for arm64",
}


def _host_copies(local: Local) -> dict[str, bool]:
    cross = RunLayout(local.workdir).cross
    return {pattern: any(cross.glob(pattern)) for pattern in NATIVE_PARTS}


@pytest.fixture(scope="module")
def alone(
    podman: DockerEngine, built_images: ImagesReport, tmp_path_factory: pytest.TempPathFactory
) -> Local:
    """The demo's matrix on Podman only: both builders built on it (arm64 under QEMU)
    and pushed with their manifest list, with no Docker daemon answering. The arm64
    builder's native parts are those the host keeps: Podman's bases are built from
    the same root file systems as Docker's, so their keys are the same. Docker's
    builder made them in this session, unless it was already fresh (an engine kept
    from an earlier run): then Podman makes them."""
    local = _local(tmp_path_factory.mktemp("podman"), "orchestrate/podman", ("podman", ROOTFUL, 2))
    _forget_builders(podman, local.matrix.registry.repository)
    kept = _host_copies(local)
    done = _orchestrate(
        "images", "build", "--push", "-m", str(local.path), "--workdir", str(local.workdir)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Unchanged when the registry already lists these bytes: Podman's builders are the
    # same on every machine, so a registry kept from an earlier run holds them.
    release = re.escape("manifest 127.0.0.1:5000/orchestrate/podman:debian-bookworm: ")
    assert re.search(rf"{release}(published|unchanged) \(amd64, arm64\)\n", done.stdout), (
        done.stdout
    )
    log = (local.workdir / "logs" / "images" / f"{ARM}.log").read_text()
    made = {pattern: NATIVE_PARTS[pattern] in log for pattern in NATIVE_PARTS}
    assert made == {pattern: not had for pattern, had in kept.items()}, log
    if kept[ROOT]:
        assert "foreign root: the host's copy, root-debian-bookworm-arm64-on-amd64-" in log
    return local


def test_the_demo_runs_on_podman_alone_and_builds_dockers_bytes(
    alone: Local, build_report: dict[str, Any], tmp_path: Path
) -> None:
    """examples/requirements.txt end to end on Podman alone; each wheel is the same
    bytes as the Docker engine's build of it (builds are reproducible)."""
    built = alone.build(DEMO, tmp_path, wrap=_without_docker)
    assert built.process.returncode == 0, built.process.stdout + built.process.stderr
    assert "built 3, shared 1, failed 0, not started 0, upstream 2" in built.process.stdout
    docker = {j["job"]: j for j in build_report["jobs"]}
    assert sorted(j["status"] for j in built.jobs.values()) == ["built"] * 3 + ["shared"]
    for job, record in built.jobs.items():
        assert (record["engine"], record["engine_kind"]) == ("podman", "podman"), record
        assert record["sha256"] == docker[job]["sha256"], job
        if record["status"] == "built":
            assert record["smoke"]["passed"] is True, record["smoke"]
    assert built.jobs[f"{ARM}/crcmod==1.7"]["mode"] == "emulated (native compiler)"
    for platform in (AMD, ARM):  # published: the platform's link to its release
        assert (alone.matrix.index.root / platform / "simple" / "crcmod").is_dir(), platform


def test_each_phase_runs_in_the_promised_sandbox_on_podman(
    alone: Local, podman: DockerEngine, tmp_path: Path
) -> None:
    check_sandbox(alone, podman, tmp_path)


def test_printed_podman_script_fails_the_same_way(alone: Local, tmp_path: Path) -> None:
    """`reproduce --print` of a Podman job writes podman lines; run as they are, on the
    host's podman, they fail as the job did."""
    failed = alone.build("python-ldap==3.4.4\n", tmp_path, "-p", "*-amd64", wrap=_without_docker)
    assert failed.process.returncode == 1, failed.process.stdout + failed.process.stderr
    job = failed.jobs[f"{AMD}/python-ldap==3.4.4"]
    printed = _orchestrate(
        "reproduce", AMD, "python-ldap==3.4.4", "--print", "--workdir", str(failed.workdir)
    )
    assert printed.returncode == 0, printed.stderr
    script = printed.stdout
    assert "podman create" in script
    assert "docker" not in script.replace("Dockerfile", "")
    assert "--ulimit nofile=1024:1024" in script
    done = subprocess.run(
        _without_docker(["sh", "-c", script]), capture_output=True, text=True, check=False
    )
    assert done.returncode == job["exit_code"] == 20, done.stdout[-2000:] + done.stderr[-2000:]
    assert "lber.h" in done.stdout + done.stderr


def test_a_pool_of_docker_and_podman_uses_both(
    built_images: ImagesReport, alone: Local, tmp_path: Path
) -> None:
    """One slot on each engine, two C extensions: one job on each, one index."""
    mixed = _local(
        tmp_path,
        "orchestrate/mixed",
        ("local", "unix:///var/run/docker.sock", 1),
        ("podman", ROOTFUL, 1),
    )
    built = mixed.build("netifaces==0.11.0\ncrcmod==1.7\n", tmp_path / "run", "-p", "*-amd64")
    assert built.process.returncode == 0, built.process.stdout + built.process.stderr
    assert {j["engine"]: j["engine_kind"] for j in built.jobs.values()} == {
        "local": "docker",
        "podman": "podman",
    }
    assert all(j["status"] == "built" for j in built.jobs.values())
    assert "published debian-bookworm-amd64:published" in built.process.stdout


def test_doctor_shows_the_kind_and_an_unreachable_socket_exits_3(
    alone: Local, tmp_path: Path, cli: CliRunner
) -> None:
    shown = _orchestrate("doctor", "-m", str(alone.path), "-p", "*-amd64")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    line = next(x for x in shown.stdout.splitlines() if "engine podman" in x)
    assert "Podman 4." in line
    assert "rootful" in line
    assert "native amd64" in line
    gone = _local(tmp_path, "orchestrate/gone", ("podman", "unix:///run/podman/gone.sock", 1))
    result = cli("doctor", "--matrix", str(gone.path))
    assert result.code == EXIT_ENVIRONMENT
    assert "unix:///run/podman/gone.sock" in result.out
    assert "connection refused" in result.out
    assert "setup-host" in result.out
    assert "Traceback" not in result.out + result.err


def test_a_rootless_podman_builds_the_same_wheel(
    build_report: dict[str, Any], tmp_path: Path
) -> None:
    """The service of an unprivileged user (subuid/subgid, overlay storage): its builder
    built natively, crcmod built, smoke-tested and published, the same bytes."""
    uid = pwd.getpwnam(ROOTLESS_USER).pw_uid
    url = f"unix:///run/user/{uid}/podman/podman.sock"
    info = _connect(url, "rootless").info()
    assert info.kind is EngineKind.PODMAN
    assert info.rootless
    local = _local(tmp_path, "orchestrate/rootless", ("rootless", url, 2))
    shown = _orchestrate("doctor", "-m", str(local.path), "-p", "*-amd64")
    assert "rootless)" in shown.stdout, shown.stdout
    built = local.build("crcmod==1.7\n", tmp_path / "run", "-p", "*-amd64", wrap=_without_docker)
    assert built.process.returncode == 0, built.process.stdout + built.process.stderr
    job = built.jobs[f"{AMD}/crcmod==1.7"]
    docker = next(j for j in build_report["jobs"] if j["job"] == job["job"])
    assert job["sha256"] == docker["sha256"]
    assert job["smoke"]["passed"] is True
