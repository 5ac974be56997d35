"""Per-package system packages for real: python-ldap (an OpenStack pin, sdist only
on PyPI) on debian-bookworm amd64 and arm64, whose builders' common list lacks
libldap2-dev and libsasl2-dev. Without an override it fails as a missing system
library naming the header; with the packages named only in a bindep.txt the matrix
points at, each job installs them in its own step and builds, and the job record
says which packages, from where, at which versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import load_matrix
from orchestrator.images.pipeline import ImagesReport
from tests.conftest import CliRunner
from tests.matrices import local_matrix_copy

from .conftest import Built, Local

PIN = "python-ldap==3.4.7"
PLATFORMS = ("debian-bookworm-amd64", "debian-bookworm-arm64")
BINDEP = """\
# python-ldap's build needs, as OpenStack projects write bindep.txt
libldap2-dev [platform:dpkg compile]
libsasl2-dev [platform:dpkg compile]
openldap-devel [platform:rpm compile]
cyrus-sasl-devel [platform:rpm compile]
slapd [platform:dpkg test]
"""


def _matrix(folder: Path, overrides: str = "") -> Local:
    path = local_matrix_copy(folder / "local.yaml", folder / "wheels")
    if overrides:
        (folder / "bindep.txt").write_text(BINDEP)
        path.write_text(path.read_text() + overrides)
    return Local(path, load_matrix(path), folder / "work")


def test_the_common_list_lacks_the_headers(built_images: ImagesReport, local: Local) -> None:
    common = set(local.matrix.packages[next(iter(local.matrix.packages))])
    assert not {"libldap2-dev", "libsasl2-dev"} & common


def test_without_an_override_it_fails_naming_the_header(
    built_images: ImagesReport, tmp_path: Path
) -> None:
    done = _matrix(tmp_path).build(f"{PIN}\n", tmp_path / "run", "-p", PLATFORMS[0])
    assert done.process.returncode == 1, done.process.stdout + done.process.stderr
    job = done.jobs[f"{PLATFORMS[0]}/{PIN}"]
    assert job["category"] == "missing-system-library", job
    assert job["error"].startswith("missing header "), job["error"]
    assert job["system_packages"] is None


@pytest.fixture(scope="module")
def with_bindep(built_images: ImagesReport, tmp_path_factory: pytest.TempPathFactory) -> Local:
    folder = tmp_path_factory.mktemp("bindep")
    overrides = "\noverrides:\n  - name: python-ldap\n    bindep: bindep.txt\n"
    return _matrix(folder, overrides)


@pytest.fixture(scope="module")
def built(with_bindep: Local, tmp_path_factory: pytest.TempPathFactory) -> Built:
    return with_bindep.build(f"{PIN}\n", tmp_path_factory.mktemp("built"))


@pytest.mark.parametrize("platform", PLATFORMS)
def test_with_a_bindep_file_each_arch_builds_with_its_packages(
    with_bindep: Local, built: Built, platform: str
) -> None:
    done = built
    assert done.process.returncode == 0, done.process.stdout + done.process.stderr
    job = done.jobs[f"{platform}/{PIN}"]
    assert job["status"] == "built"
    assert job["wheel"].startswith("python_ldap-3.4.7-cp311-cp311-")
    system = job["system_packages"]
    assert system["packages"] == ["libldap2-dev", "libsasl2-dev"]  # not slapd: test profile
    assert system["sources"] == [str(with_bindep.path.parent / "bindep.txt")]
    installed = dict(p.split("=", 1) for p in system["installed"])
    assert set(installed) == {"libldap2-dev", "libsasl2-dev"}
    assert all(installed.values())  # versions, as dpkg has them
    assert "system" in job["phase_seconds"]  # timed (0 when the image was made before)


def test_reproduce_installs_them_again(built: Built, cli: CliRunner) -> None:
    result = cli("reproduce", PLATFORMS[0], PIN, "--workdir", str(built.workdir))
    assert result.code == 0, result.out[-3000:] + result.err[-2000:]
    assert "== system packages: libldap2-dev libsasl2-dev" in result.out
    assert "made before" in result.out  # the job's image, found by its tag, not rebuilt
    assert "built python_ldap-3.4.7-" in result.out


def test_a_package_the_distro_lacks_fails_the_job_naming_it(
    built_images: ImagesReport, tmp_path: Path
) -> None:
    overrides = "\noverrides:\n  - {name: crcmod, packages: {deb: [libnosuchthing-dev]}}\n"
    done = _matrix(tmp_path, overrides).build("crcmod==1.7\n", tmp_path / "run", "-p", PLATFORMS[0])
    assert done.process.returncode == 1, done.process.stdout + done.process.stderr
    job = done.jobs[f"{PLATFORMS[0]}/crcmod==1.7"]
    assert job["category"] == "system-packages"
    assert job["error"] == "E: Unable to locate package libnosuchthing-dev"
    assert job["system_packages"]["packages"] == ["libnosuchthing-dev"]
    assert "fetch" not in job["phase_seconds"]  # nothing ran without its packages
