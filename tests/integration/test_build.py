"""`orchestrate build` for real: native and emulated jobs, the store, the index, and
real pip as the client, inside each platform's own builder."""

from __future__ import annotations

import hashlib
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config.matrix import expand
from orchestrator.engines.docker import DockerEngine
from orchestrator.images.build import image_tag
from orchestrator.images.pipeline import ImagesReport
from orchestrator.jobs.phases.build import LABEL_RUN
from orchestrator.publish.serve import make_server
from orchestrator.store import Provenance, Store
from tests.builders import in_builder
from tests.matrices import local_matrix_copy
from tests.wheelfactory import make_wheel

from .conftest import Local

AMD, ARM = "debian-bookworm-amd64", "debian-bookworm-arm64"


def _jobs(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(j["job"]): j for j in report["jobs"]}


def test_wheels_built_with_the_right_tags(build_report: dict[str, object]) -> None:
    jobs = _jobs(build_report)
    amd, arm = jobs[f"{AMD}/crcmod==1.7"], jobs[f"{ARM}/crcmod==1.7"]
    assert amd["status"] == arm["status"] == "built"
    assert amd["wheel"] == "crcmod-1.7-cp311-cp311-linux_x86_64.whl"
    assert arm["wheel"] == "crcmod-1.7-cp311-cp311-linux_aarch64.whl"
    assert (amd["emulated"], arm["emulated"]) == (False, True)
    pure = [j for j in jobs.values() if j["name"] == "simplegeneric"]
    assert sorted(str(j["status"]) for j in pure) == ["built", "shared"]  # built once
    assert {j["wheel"] for j in pure} == {"simplegeneric-0.8.1-py3-none-any.whl"}
    sdist = amd["sdist"]
    assert sdist["url"].endswith("/crcmod-1.7.tar.gz")
    assert amd["source_sha256"] == sdist["sha256"] == arm["source_sha256"]
    assert any(r.startswith("setuptools==") for r in amd["build_requires"])  # exact versions
    assert amd["kind"] == "wheel"
    assert set(amd["phase_seconds"]) == {"fetch", "build", "smoke"}
    assert (amd["smoke"]["passed"], arm["smoke"]["passed"]) == (True, True)
    assert amd["runtime"]["packages"] == {}  # crcmod links only the C library
    plan = build_report["plan"]
    assert isinstance(plan, list)
    assert {d["action"] for d in plan if d["name"] == "six"} == {"upstream"}


@pytest.mark.parametrize("platform", [AMD, ARM])
def test_c_extension_installs_offline_and_imports_in_its_builder(
    platform: str, build_report: dict[str, object], local: Local, engine: DockerEngine
) -> None:
    job = _jobs(build_report)[f"{platform}/crcmod==1.7"]
    wheel = Path(str(local.matrix.index.root)) / "store" / platform / str(job["wheel"])
    arch = platform.rsplit("-", 1)[1]
    image = image_tag(local.matrix, next(p for p in expand(local.matrix) if p.name == platform))
    done = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "-i",
            "--network",
            "none",
            "--platform",
            f"linux/{arch}",
            image,
            "sh",
            "-c",
            f"mkdir -p /tmp/w && cat > /tmp/w/{wheel.name} && "
            "/opt/orchestrate/py3.11/bin/pip install -q --no-index --find-links /tmp/w "
            "--target /tmp/t crcmod && PYTHONPATH=/tmp/t /opt/orchestrate/py3.11/bin/python -c "
            "'import crcmod._crcfunext, platform; print(platform.machine())'",
        ],
        input=wheel.read_bytes().decode("latin-1"),
        capture_output=True,
        text=True,
        encoding="latin-1",
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == {"amd64": "x86_64", "arm64": "aarch64"}[arch]


@pytest.fixture
def served(local: Local, build_report: dict[str, object]) -> Iterator[str]:
    server = make_server(Path(str(local.matrix.index.root)), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("platform", [AMD, ARM])
def test_pip_installs_from_our_index_with_and_without_hashes(
    platform: str, served: str, local: Local, build_report: dict[str, object]
) -> None:
    """pip in the platform's own builder (--network host: the index is on loopback)."""
    job = _jobs(build_report)[f"{platform}/crcmod==1.7"]
    arch = platform.rsplit("-", 1)[1]
    image = image_tag(local.matrix, next(p for p in expand(local.matrix) if p.name == platform))
    index = f"{served}/{platform}/simple/"
    pip = "/opt/orchestrate/py3.11/bin/pip"
    plain = in_builder(
        image,
        arch,
        f"{pip} install -q --target /tmp/t --index-url {index} crcmod==1.7 && "
        "PYTHONPATH=/tmp/t /opt/orchestrate/py3.11/bin/python -c "
        "'import crcmod._crcfunext'",
        ("--network", "host"),
    )
    assert plain.returncode == 0, plain.stderr
    hashed = in_builder(
        image,
        arch,
        f"echo 'crcmod==1.7 --hash=sha256:{job['sha256']}' > /tmp/r.txt && "
        f"{pip} install -q --target /tmp/t --require-hashes --index-url {index} "
        "-r /tmp/r.txt",
        ("--network", "host"),
    )
    assert hashed.returncode == 0, hashed.stderr
    wrong = in_builder(
        image,
        arch,
        f"echo 'crcmod==1.7 --hash=sha256:{'0' * 64}' > /tmp/r.txt && "
        f"{pip} install -q --target /tmp/t --require-hashes --index-url {index} "
        "-r /tmp/r.txt",
        ("--network", "host"),
    )
    assert wrong.returncode != 0
    assert "HASHES" in wrong.stderr.upper()


def test_no_container_is_left_after_a_successful_run(
    build_report: dict[str, Any], engine: DockerEngine
) -> None:
    assert engine.containers(f"{LABEL_RUN}={build_report['run_id']}") == []


def test_a_rebuild_that_differs_is_exit_4_and_replace_takes_it(
    built_images: ImagesReport, local: Local, tmp_path: Path
) -> None:
    """A pure wheel of that name is already published (for arm64) with other bytes;
    building it for amd64 gives different bytes: reported, kept, exit 4; --replace."""
    root = tmp_path / "wheels"
    matrix = local_matrix_copy(tmp_path / "m.yaml", root)
    fake = make_wheel(tmp_path / "fake", "simplegeneric", "0.8.1", body="NOT = 'the real one'\n")
    store = Store(root)
    with store.locked() as records:
        store.add(records, fake, [ARM], Provenance())
    other = Local(matrix, local.matrix, tmp_path / "work")
    built = other.build("simplegeneric==0.8.1\n", tmp_path / "a", "-p", "*-amd64")
    assert built.process.returncode == 4, built.process.stderr
    assert "NOT REPRODUCIBLE simplegeneric-0.8.1-py3-none-any.whl" in built.process.stderr
    assert Store(root).records()["any/simplegeneric-0.8.1-py3-none-any.whl"].sha256 == (
        hashlib.sha256(fake.read_bytes()).hexdigest()
    )  # the published one stays
    again = other.build("simplegeneric==0.8.1\n", tmp_path / "b", "-p", "*-amd64", "--replace")
    assert again.process.returncode == 0, again.process.stderr
    assert [s["outcome"] for s in again.report["store"]] == ["replaced"]


def test_failed_compile_is_isolated_and_logged(
    built_images: ImagesReport, local: Local, tmp_path: Path, engine: DockerEngine
) -> None:
    # python-ldap needs libldap headers, which this matrix's builders lack; netifaces builds.
    built = local.build(
        "python-ldap==3.4.4\nnetifaces==0.11.0\n",
        tmp_path,
        "-p",
        "*-amd64",
        "--junit-xml",
        str(tmp_path / "junit.xml"),
        "--metrics",
        str(tmp_path / "m.prom"),
    )
    assert built.process.returncode == 1
    junit = (tmp_path / "junit.xml").read_text()
    assert 'type="missing-system-library"' in junit
    assert "lber.h" in junit
    prom = (tmp_path / "m.prom").read_text()
    assert f'orchestrate_jobs{{platform="{AMD}",status="failed"}} 1' in prom
    failed = built.jobs[f"{AMD}/python-ldap==3.4.4"]
    assert failed["status"] == "failed"
    assert built.jobs[f"{AMD}/netifaces==0.11.0"]["status"] == "built"
    log = Path(str(failed["log"])).read_text()
    assert "lber.h" in log or "ldap.h" in log  # the compiler's own error is in the log
    assert failed["attempts"] == 1  # compile errors are not retried
    assert failed["category"] == "missing-system-library"
    assert failed["error"] == "missing header lber.h"
    assert engine.containers(f"{LABEL_RUN}={built.report['run_id']}") == []
    assert "FAILED debian-bookworm-amd64/python-ldap==3.4.4" in built.process.stderr


def test_timeout_kills_and_reports(
    built_images: ImagesReport, local: Local, tmp_path: Path, engine: DockerEngine
) -> None:
    built = local.build("netifaces==0.11.0\n", tmp_path, "-p", "*-arm64", "--timeout", "3")
    assert built.process.returncode == 1
    assert built.jobs[f"{ARM}/netifaces==0.11.0"]["status"] == "timeout"
    assert engine.containers(f"{LABEL_RUN}={built.report['run_id']}") == []


def test_two_builds_of_one_sdist_give_the_same_bytes(
    build_report: dict[str, Any], local: Local, tmp_path: Path
) -> None:
    """A fresh store and index, same sdist: the C extension's wheel is byte-identical."""
    path = local_matrix_copy(tmp_path / "m.yaml", tmp_path / "wheels")
    other = Local(path, local.matrix, tmp_path / "work")
    built = other.build("crcmod==1.7\n", tmp_path / "run", "-p", "*-amd64")
    assert built.process.returncode == 0, built.process.stderr
    first = _jobs(build_report)[f"{AMD}/crcmod==1.7"]
    again = built.jobs[f"{AMD}/crcmod==1.7"]
    assert again["sha256"] == first["sha256"]
    assert again["source_sha256"] == first["source_sha256"]
