"""Integration fixtures: the real engine, and services through pytest-docker."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from orchestrator.config import EngineSpec, Matrix, load_matrix
from orchestrator.config.matrix import expand
from orchestrator.core.errors import EngineError
from orchestrator.core.layout import RunLayout
from orchestrator.engines.docker import DockerEngine
from orchestrator.engines.pool import EngineFactsCache, EnginePool
from orchestrator.images.pipeline import ImagesOptions, ImagesReport, run_images
from tests.conftest import REPO
from tests.matrices import local_matrix_copy

from .projects import head
from .services import registry_context


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def engine() -> Iterator[DockerEngine]:
    local = DockerEngine(EngineSpec(name="local"))
    try:
        local.info()
    except EngineError as exc:
        pytest.fail(
            f"{exc.message}: integration tests need the host set up "
            "(sudo scripts/setup-host --test)"
        )
    yield local
    local.close()


# pytest-docker: Debian ships Compose v1 only, which has no `--wait`.
@pytest.fixture(scope="session")
def docker_compose_command() -> str:
    return "docker-compose"


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    return ["up --build -d"]


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return "orchestrate-tests"


@pytest.fixture(scope="session")
def docker_compose_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(registry_context(tmp_path_factory.mktemp("services")))


@dataclass(frozen=True)
class RegistryService:
    host: str  # host:port, loopback


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code in (200, 401)
    except requests.RequestException:
        return False


def _registry(docker_ip: str, docker_services: object, service: str) -> RegistryService:
    port = docker_services.port_for(service, 5000)  # type: ignore[attr-defined]
    host = f"{docker_ip}:{port}"
    docker_services.wait_until_responsive(  # type: ignore[attr-defined]
        check=lambda: _answers(f"http://{host}/v2/"), timeout=30.0, pause=0.2
    )
    return RegistryService(host)


@pytest.fixture(scope="session")
def open_registry(docker_ip: str, docker_services: object) -> RegistryService:
    return _registry(docker_ip, docker_services, "open")


@pytest.fixture(scope="session")
def auth_registry(docker_ip: str, docker_services: object) -> RegistryService:
    return _registry(docker_ip, docker_services, "auth")


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Docker config dir of the test's own, never the user's."""
    path = tmp_path / "docker-config"
    path.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(path))
    return path


@dataclass(frozen=True)
class Local:
    """examples/local.yaml with its index root and workdir in the test session's tmp."""

    path: Path
    matrix: Matrix
    workdir: Path
    # What this copy of examples/local.yaml replaced (its engines, say): `fresh` copies
    # of it replace the same.
    replacements: Mapping[str, str] = field(default_factory=dict)

    @property
    def pool(self) -> EnginePool:
        return EnginePool([DockerEngine(s) for s in self.matrix.engines], EngineFactsCache(None))

    def build(
        self,
        requirements: str,
        folder: Path,
        *options: str,
        env: Mapping[str, str] | None = None,
        wrap: Callable[[list[str]], list[str]] = list,
    ) -> Built:
        """`orchestrate build` of `requirements` in a subprocess, as a user runs it;
        `wrap` may put its command line inside another (a namespace of its own)."""
        folder.mkdir(parents=True, exist_ok=True)
        reqs = folder / "requirements.txt"
        reqs.write_text(requirements)
        report = folder / "report.json"
        done = subprocess.run(
            wrap(
                [
                    "orchestrate",
                    "build",
                    "--matrix",
                    str(self.path),
                    "-r",
                    str(reqs),
                    "--workdir",
                    str(folder / "work"),
                    "--report",
                    str(report),
                    *options,
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **(env or {})},
        )
        data = json.loads(report.read_text()) if report.is_file() else {}
        return Built(done, data, folder / "work")


@dataclass(frozen=True)
class Built:
    process: subprocess.CompletedProcess[str]
    report: dict[str, Any]
    workdir: Path

    @property
    def jobs(self) -> dict[str, dict[str, Any]]:
        return {str(j["job"]): j for j in self.report.get("jobs", [])}


@pytest.fixture(scope="session")
def local(tmp_path_factory: pytest.TempPathFactory) -> Local:
    root = tmp_path_factory.mktemp("local")
    path = local_matrix_copy(root / "local.yaml", root / "wheels")
    return Local(path, load_matrix(path), root / "work")


@pytest.fixture(scope="session")
def built_images(local: Local, engine: DockerEngine) -> ImagesReport:
    """Both builders, from debootstrapped bases, pushed with their manifest list: once."""
    report = run_images(
        local.matrix,
        local.pool,
        expand(local.matrix),
        RunLayout(local.workdir),
        options=ImagesOptions(push=True),
    )
    assert not report.failed, [r.reason for r in report.failed]
    return report


@pytest.fixture(scope="session")
def build_report(
    built_images: ImagesReport, local: Local, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One real `orchestrate build` of examples/requirements.txt."""
    built = local.build(
        (REPO / "examples" / "requirements.txt").read_text(), tmp_path_factory.mktemp("example")
    )
    assert built.process.returncode == 0, built.process.stdout + built.process.stderr
    # `shared` is not `built`: three builds (crcmod twice, simplegeneric once), one share.
    assert "built 3, shared 1, failed 0, not started 0, upstream 2" in built.process.stdout
    return built.report


@pytest.fixture(scope="session")
def one_host_examples(
    built_images: ImagesReport, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, str]]:
    """The served trees of one host's night of examples/requirements.txt on
    examples/local.yaml, in an index root of its own: what every CI night of the
    same inputs must publish."""
    from .trees import served

    root = tmp_path_factory.mktemp("one-host")
    matrix = local_matrix_copy(root / "matrix.yaml", root / "index")
    args = ["-m", str(matrix), "-r", str(REPO / "examples" / "requirements.txt")]
    done = subprocess.run(
        ["orchestrate", "build", *args, "--workdir", str(root / "work")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return served(root / "index")


@pytest.fixture(scope="session")
def site_mirror(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """pip's settings on the CI nights' runners: a site's own mirror of what
    orchestrate installs (its dependencies and build backend), made once per session.
    Every job still clones and builds the pinned commit as the definitions say; what
    it no longer does is read PyPI's pages of some forty projects, about 5 s of CPU
    a job on a machine the session already fills."""
    house = tmp_path_factory.mktemp("site-mirror")
    argv = ["pip", "wheel", "-q", "--disable-pip-version-check", "-w", str(house)]
    done = subprocess.run(
        [*argv, "setuptools>=68", f"git+file://{REPO}@{head()}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(house)}


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """The durable place a CI night's index lives between nights: made once, empty."""
    folder = tmp_path / "published"
    folder.mkdir()
    return folder
