"""Real-world builds: a known-bad pin fails once per platform as `metadata` without
compiling a build tool; sdists are fetched once by hash and a tampered copy is caught;
each phase's container is what we promise, inspected through the engine API."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from orchestrator.engines.docker import DockerEngine
from orchestrator.images.pipeline import ImagesReport
from orchestrator.jobs.phases.build import LABEL_RUN
from tests.matrices import local_matrix_copy

from .conftest import Built, Local

AMD, ARM = "debian-bookworm-amd64", "debian-bookworm-arm64"
# PyYAML 5.4.1's sdist asks for an unpinned Cython; with Cython 3 its setup.py fails
# while the backend computes the build requirements (yaml/pyyaml#601).
BAD_PIN = "PyYAML==5.4.1"


def fresh(local: Local, folder: Path) -> Local:
    """The session's builders and caches, with an index root of its own (nothing cached)."""
    path = local_matrix_copy(folder / "m.yaml", folder / "wheels", local.replacements)
    return Local(path, local.matrix, folder / "work", local.replacements)


@pytest.fixture(scope="module")
def bad_pin(
    built_images: ImagesReport, local: Local, tmp_path_factory: pytest.TempPathFactory
) -> Built:
    folder = tmp_path_factory.mktemp("bad-pin")
    ci = ("--junit-xml", str(folder / "junit.xml"), "--metrics", str(folder / "night.prom"))
    return fresh(local, folder).build(f"{BAD_PIN}\n", folder, *ci)


@pytest.mark.parametrize("platform", [AMD, ARM])
def test_known_bad_pin_fails_once_as_metadata_without_compiling_build_tools(
    bad_pin: Built, platform: str
) -> None:
    assert bad_pin.process.returncode == 1, bad_pin.process.stderr
    job = bad_pin.jobs[f"{platform}/pyyaml==5.4.1"]
    assert job["status"] == "failed"
    assert job["category"] == "metadata"
    assert job["attempts"] == 1  # deterministic: never retried
    assert "cython_sources" in job["error"]
    assert "Cython<3" in job["hint"]
    log = Path(job["log"]).read_text()
    # Cython came as a wheel for the platform; no build tool was built from source.
    machine = {AMD: "x86_64", ARM: "aarch64"}[platform]
    assert re.search(rf"[Cc]ython-3[^ ]*{machine}[^ ]*\.whl", log), log[-3000:]
    assert not re.search(r"Building wheels? for (collected packages|cython)", log, re.I)
    assert "--no-binary" not in log
    assert f"FAILED {platform}/pyyaml==5.4.1 [metadata]" in bad_pin.process.stderr


def test_the_ci_files_of_a_failed_night_parse(bad_pin: Built) -> None:
    """The JUnit and metrics files `build` writes, read back with real parsers: a real
    failing job's log tail (pip's and the backend's output) in each."""
    import xml.etree.ElementTree as ET

    from prometheus_client.parser import text_string_to_metric_families

    folder = bad_pin.workdir.parent
    root = ET.parse(folder / "junit.xml").getroot()
    failures = [c for c in root.iter("testcase") if c.find("failure") is not None]
    assert len(failures) == 2  # amd64 and arm64
    tails = [c.findtext("failure") or "" for c in failures]
    assert all("cython_sources" in tail for tail in tails), tails
    text = (folder / "night.prom").read_text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["orchestrate_last_run_ok"].samples[0].value == 0


def test_a_release_older_than_the_python_is_named_so(
    built_images: ImagesReport, local: Local, tmp_path: Path
) -> None:
    """feedparser 5.2.1 (use_2to3) on bookworm's Python 3.11: the category says so, the
    error is the backend's own line, the hint names the first release that fits."""
    built = fresh(local, tmp_path).build("feedparser==5.2.1\n", tmp_path, "-p", "*-amd64")
    assert built.process.returncode == 1, built.process.stderr
    job = built.jobs[f"{AMD}/feedparser==5.2.1"]
    assert job["category"] == "python-version", job
    assert job["error"] == "error in feedparser setup command: use_2to3 is invalid."
    assert "Python 3.11" in job["hint"]
    # the index says which: 6.0.0 and 6.0.1 carry no Requires-Python, 6.0.2 does
    assert re.search(r"pin feedparser==6\.0\.\d+,", job["hint"]), job["hint"]
    assert job["attempts"] == 1


def test_a_build_constraint_fixes_the_known_bad_pin(
    built_images: ImagesReport, local: Local, tmp_path: Path
) -> None:
    constraint = tmp_path / "build-constraints.txt"
    constraint.write_text("Cython<3\n")
    built = fresh(local, tmp_path).build(
        f"{BAD_PIN}\n", tmp_path, "-p", "*-amd64", "--build-constraint", str(constraint)
    )
    assert built.process.returncode == 0, built.process.stderr
    job = built.jobs[f"{AMD}/pyyaml==5.4.1"]
    assert job["status"] == "built"
    cython = [r for r in job["build_requires"] if r.lower().startswith("cython==")]
    assert cython
    assert cython[0].split("==")[1].startswith("0.")
    assert job["build_constraints"] == ["Cython<3"]


def _sdist_downloads(built: Built) -> int:
    assert built.process.returncode == 0, built.process.stderr
    return int(built.report["summary"]["sdist_downloads"])


def test_sdists_are_downloaded_once_by_hash_and_tampering_is_caught(
    built_images: ImagesReport, local: Local, tmp_path: Path
) -> None:
    cache = Path(os.environ["ORCHESTRATE_CACHE_DIR"]) / "sdists"
    for cached in cache.rglob("crcmod-1.7.tar.gz"):  # earlier tests may have fetched it
        cached.unlink()
    first = fresh(local, tmp_path / "a").build("crcmod==1.7\n", tmp_path / "a")
    assert _sdist_downloads(first) == 1  # one download serves both platforms
    jobs = first.jobs
    sdist = jobs[f"{AMD}/crcmod==1.7"]["sdist"]
    assert jobs[f"{ARM}/crcmod==1.7"]["source_sha256"] == sdist["sha256"]
    assert sdist["url"].endswith("/crcmod-1.7.tar.gz")

    again = fresh(local, tmp_path / "b").build("crcmod==1.7\n", tmp_path / "b", "-p", "*-amd64")
    assert _sdist_downloads(again) == 0  # a later run reuses the content-addressed copy

    (cached,) = cache.rglob("crcmod-1.7.tar.gz")
    assert cached.parent.name == sdist["sha256"]
    cached.write_bytes(b"not the sdist the index names")
    third = fresh(local, tmp_path / "c").build("crcmod==1.7\n", tmp_path / "c", "-p", "*-amd64")
    assert _sdist_downloads(third) == 1  # the tampered copy was noticed and replaced
    assert third.jobs[f"{AMD}/crcmod==1.7"]["status"] == "built"
    assert third.jobs[f"{AMD}/crcmod==1.7"]["sha256"] == jobs[f"{AMD}/crcmod==1.7"]["sha256"]


def test_each_phase_runs_in_the_promised_sandbox(
    built_images: ImagesReport, local: Local, tmp_path: Path, engine: DockerEngine
) -> None:
    check_sandbox(local, engine, tmp_path)


def check_sandbox(local: Local, engine: DockerEngine, tmp_path: Path) -> Built:
    """--keep-failed keeps a failing fetch (a build constraint nothing satisfies) and a
    failing build (python-ldap without its headers); their configuration is read back
    from `engine`, the matrix's only engine. Returns the failed build's run."""
    impossible = tmp_path / "impossible.txt"
    impossible.write_text("setuptools==0.0.0\n")
    fetch = fresh(local, tmp_path / "f").build(
        "crcmod==1.7\n",
        tmp_path / "f",
        "-p",
        "*-amd64",
        "--keep-failed",
        "--build-constraint",
        str(impossible),
    )
    crcmod = fetch.jobs[f"{AMD}/crcmod==1.7"]
    assert crcmod["category"] == "build-deps-unresolvable", crcmod
    assert crcmod["attempts"] == 1  # no version will appear by retrying
    build = fresh(local, tmp_path / "b").build(
        "python-ldap==3.4.4\n", tmp_path / "b", "-p", "*-amd64", "--keep-failed"
    )
    ldap = build.jobs[f"{AMD}/python-ldap==3.4.4"]
    assert ldap["category"] == "missing-system-library"
    assert "lber.h" in ldap["error"]
    assert "libldap-dev libsasl2-dev" in ldap["hint"]  # bookworm's names, not the transitional one
    kept = {
        "fetch": _inspect(engine, fetch.report["run_id"]),
        "build": _inspect(engine, build.report["run_id"]),
    }
    try:
        assert kept["build"]["HostConfig"]["NetworkMode"] == "none"
        assert kept["fetch"]["HostConfig"]["NetworkMode"] != "none"
        for phase, box in kept.items():
            host = box["HostConfig"]
            assert box["Config"]["User"] == "1000:1000", phase  # never root
            assert host["Privileged"] is False, phase
            assert not host.get("Binds"), phase  # no host paths, so no Docker socket
            assert not box["Mounts"], phase
            assert "no-new-privileges" in (host.get("SecurityOpt") or []), phase
            assert not host.get("CapAdd"), phase
    finally:
        for box in kept.values():
            engine.api.remove_container(box["Id"], force=True)
    return build


def _inspect(engine: DockerEngine, run: str) -> dict[str, Any]:
    """The one container a run kept (the session beside this one runs the same jobs)."""
    (found,) = engine.containers(f"{LABEL_RUN}={run}")
    data: dict[str, Any] = engine.api.inspect_container(found)
    return data


def test_a_shared_resolution_and_setup_requires_known_before_the_build(
    built_images: ImagesReport, local: Local, tmp_path: Path
) -> None:
    """netifaces resolves `setuptools>=40.8.0` (the setup.py-only default) for the night;
    simplegeneric (a .zip sdist), with the same static requirements, gets that
    resolution from the cache (the host makes its environment, asking no index).
    confspirator's setup.py lists `setup_requires=["pbr"]`: pbr is in its first
    environment, resolved natively, and the build runs once."""
    env = {"ORCHESTRATE_CACHE_DIR": str(tmp_path / "cache")}
    first = fresh(local, tmp_path / "a").build(
        "netifaces==0.11.0\n", tmp_path / "a", "-p", "*-amd64", env=env
    )
    assert first.process.returncode == 0, first.process.stderr
    second = fresh(local, tmp_path / "b").build(
        "confspirator==0.3.0\nsimplegeneric==0.8.1\n", tmp_path / "b", "-p", "*-amd64", env=env
    )
    assert second.process.returncode == 0, second.process.stderr
    reused = Path(second.jobs[f"{AMD}/simplegeneric==0.8.1"]["log"]).read_text()
    # the night's resolution was used: no pip, no index
    assert "== build environment made on the host (recorded versions, from the cache)" in reused
    job = second.jobs[f"{AMD}/confspirator==0.3.0"]
    assert job["status"] == "built"
    assert any(r.startswith("pbr==") for r in job["build_requires"])
    log = Path(job["log"]).read_text()
    assert re.search(r"resolving setuptools >= 40\.8\.0 pbr\S* with pip in", log), log
    assert "the build asked for" not in log, log
    assert log.count("== phase build") == 1, log
