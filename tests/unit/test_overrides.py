"""Per-package settings: the `overrides:` schema, how entries combine, bindep
evaluated per platform (deb and rpm), the system-packages step's Dockerfile, and
what the job graph, plan and reproduce script make of them."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.config import load_matrix
from orchestrator.config.bindep import BindepError, parse_bindep, platform_atoms
from orchestrator.config.matrix import Platform, expand
from orchestrator.core.errors import ConfigError
from orchestrator.images.sysdeps import install_dockerfile
from orchestrator.jobs.graph import JobGraph, JobSettings, SdistResult, job_graph
from orchestrator.jobs.records import WheelRecord
from orchestrator.jobs.sources import SdistRef, facts
from orchestrator.model import Category, JobStatus
from orchestrator.plan.overrides import SDIST_BINDEP, Overrides
from orchestrator.reproduce import JobSpec, print_script
from tests.conftest import REPO

from .test_config import VALID
from .test_jobs import AMD, AMD_NATIVE, IMAGES, build, expected
from .test_jobs import facts as sdist_facts

Write = Callable[[str, str], Path]

# python-ldap's needs, written the way OpenStack projects write bindep.txt.
BINDEP = """\
# build
libldap2-dev [platform:dpkg compile]
libsasl2-dev [platform:dpkg compile]
openldap-devel [platform:rpm compile]
cyrus-sasl-devel [platform:rpm compile]
gcc [compile]
mysql-server [platform:dpkg test]
libffi-dev [platform:debian-bookworm]
libffi8-only-in-13 [platform:debian-13]
"""

PRODUCTION = {p.name: p for p in expand(load_matrix(REPO / "platforms.yaml"))}
CENTOS, NOBLE = PRODUCTION["centos-stream9-amd64"], PRODUCTION["ubuntu-noble-arm64"]
BOOKWORM = PRODUCTION["debian-bookworm-amd64"]
# The embedded default's builders: a short common list, without libldap2-dev.
PLATFORMS = {p.name: p for p in expand(load_matrix(REPO / "examples" / "local.yaml"))}


def matrix_with(write: Write, overrides: str, bindep: str | None = BINDEP) -> Path:
    if bindep is not None:
        write("deps/bindep.txt", bindep)
    return write("m.yaml", VALID + "overrides:\n" + overrides)


def test_bindep_selectors_give_deb_and_rpm_lists() -> None:
    bindep = parse_bindep(BINDEP, "bindep.txt")
    profiles = ("default", "compile")

    def on(p: Platform) -> tuple[str, ...]:
        return bindep.packages(platform_atoms(p.distro, p.release, p.family.value), profiles)

    assert on(BOOKWORM) == ("libldap2-dev", "libsasl2-dev", "gcc", "libffi-dev")
    assert on(NOBLE) == ("libldap2-dev", "libsasl2-dev", "gcc")
    assert on(CENTOS) == ("openldap-devel", "cyrus-sasl-devel", "gcc")
    # The test profile adds what bindep.txt marks for tests only.
    atoms = platform_atoms("debian", "bookworm", "deb")
    assert "mysql-server" in bindep.packages(atoms, ("default", "test"))
    assert "libffi8-only-in-13" in bindep.packages(platform_atoms("debian", "trixie", "deb"), ())


def test_platform_atoms_are_named_like_bindeps_own() -> None:
    assert platform_atoms("debian", "bookworm", "deb") == (
        "platform:base-py3",
        "platform:debian",
        "platform:debian-12",
        "platform:debian-bookworm",
        "platform:dpkg",
    )
    centos = platform_atoms("centos", "stream9", "rpm")
    assert {"platform:centos", "platform:centos-9", "platform:redhat", "platform:rpm"} <= set(
        centos
    )
    assert "platform:ubuntu-24.04" in platform_atoms("ubuntu", "noble", "deb")


def test_the_system_step_renders_for_each_family() -> None:
    deb = install_dockerfile("sha256:" + "a" * 64, "deb", ("libldap2-dev", "libsasl2-dev"))
    assert deb.startswith("FROM sha256:" + "a" * 64 + "\nUSER root\n")
    assert "apt-get install -y -q --no-install-recommends libldap2-dev libsasl2-dev" in deb
    assert "dpkg-query -W" in deb
    assert "/etc/orchestrate/job-packages.txt" in deb
    rpm = install_dockerfile("sha256:" + "b" * 64, "rpm", ("openldap-devel", "cyrus-sasl-devel"))
    assert "dnf install -y --setopt=install_weak_deps=False openldap-devel cyrus-sasl-devel" in rpm
    assert "rpm -q --qf" in rpm
    assert "apt-get" not in rpm
    with pytest.raises(BindepError, match="not a package name"):
        install_dockerfile("sha256:x", "deb", ("libfoo; rm -rf /",))


def test_bad_bindep_text_names_its_origin() -> None:
    with pytest.raises(BindepError, match=r"^sdist bindep.txt: not a bindep file"):
        parse_bindep("libfoo [platform:dpkg\n", "sdist bindep.txt")
    with pytest.raises(BindepError, match="not a bindep file"):
        parse_bindep("lib$(reboot) [platform:dpkg]\n", "b.txt")
    bindep = parse_bindep("lib/../x [platform:dpkg]\n", "b.txt")  # bindep's grammar allows it
    with pytest.raises(BindepError, match="is not a package name"):
        bindep.packages(platform_atoms("debian", "bookworm", "deb"), ())


def test_overrides_load_and_check_every_field(write: Write) -> None:
    path = matrix_with(
        write,
        """
  - name: python-ldap
    platforms: "debian-*"
    versions: ">=3"
    packages: {deb: [libldap2-dev], rpm: [openldap-devel]}
    bindep: deps/bindep.txt
    env: {CFLAGS: "-O1"}
    build_constraints: ["setuptools<80"]
    pip_options: ["--pre"]
    timeout: 900
""",
    )
    spec = load_matrix(path).overrides[0]
    assert spec.bindep == path.parent / "deps" / "bindep.txt"  # relative to the matrix
    assert spec.packages.deb == ("libldap2-dev",)
    assert spec.timeout == 900


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("  - {name: python-ldap, pakages: {deb: [x]}}\n", "did you mean 'packages'"),
        ("  - {name: python-ldap, versions: '>>3'}\n", "not a version specifier"),
        ("  - {name: Python_LDAP}\n", "normalized project name"),
        ("  - {name: python-ldap, packages: {deb: ['lib;reboot']}}\n", "valid deb package"),
        ("  - {name: python-ldap, env: {PATH: /x}}\n", "set by orchestrate"),
        ("  - {name: python-ldap, env: {'A B': x}}\n", "not an environment variable"),
        ("  - {name: python-ldap, pip_options: ['pre']}\n", "not a pip option"),
        ("  - {name: python-ldap, build_constraints: ['Cython<<3']}\n", "not a requirement"),
        ("  - {name: python-ldap, bindep: nowhere.txt}\n", "bindep file"),
        ("  - {name: python-ldap, bindep: deps/bindep.txt}\n", "not a bindep file"),
    ],
)
def test_bad_overrides_name_the_line(write: Write, entry: str, expected: str) -> None:
    path = matrix_with(write, entry, bindep="libfoo [platform:dpkg\n")
    with pytest.raises(ConfigError) as caught:
        load_matrix(path)
    assert expected in str(caught.value)
    assert caught.value.line is not None
    assert caught.value.line > VALID.count("\n")


def test_entries_combine_in_file_order(write: Write) -> None:
    path = matrix_with(
        write,
        """
  - name: python-ldap
    packages: {deb: [libldap2-dev]}
    env: {A: "1", B: "1"}
    pip_options: ["--pre"]
    timeout: 100
  - name: python-ldap
    platforms: "*-arm64"
    packages: {deb: [libsasl2-dev, libldap2-dev]}
    env: {B: "2"}
    timeout: 200
  - name: python-ldap
    versions: "<3"
    skip: "old releases need Python 2"
""",
        bindep=None,
    )
    overrides = Overrides.of(load_matrix(path))
    arm = PLATFORMS["debian-bookworm-arm64"]
    extras = overrides.extras(arm, "python_ldap", "3.4.7")  # names are normalized
    assert extras.packages == ("libldap2-dev", "libsasl2-dev")
    assert extras.env == (("A", "1"), ("B", "2"))
    assert extras.timeout == 200.0
    assert extras.pip_options == ("--pre",)
    assert overrides.extras(PLATFORMS[AMD], "python-ldap", "3.4.7").timeout == 100.0
    assert overrides.skip_reason(AMD, "python-ldap", "2.5.2") == "old releases need Python 2"
    assert overrides.skip_reason(AMD, "python-ldap", "3.4.7") is None
    assert overrides.extras(PLATFORMS[AMD], "crcmod", "1.7").packages == ()


def test_the_sdists_bindep_adds_packages_but_not_the_common_ones(write: Write) -> None:
    overrides = Overrides.of(load_matrix(matrix_with(write, "  - {name: crcmod}\n", None)))
    bindep = parse_bindep("libldap2-dev [platform:dpkg compile]\nlibffi-dev [compile]\n", "b")
    platform = PLATFORMS[AMD]  # its common list has libffi-dev
    extras = overrides.extras(platform, "python-ldap", "3.4.7", bindep)
    assert extras.packages == ("libldap2-dev",)
    assert extras.sources == (SDIST_BINDEP,)
    off = Overrides.of(
        load_matrix(matrix_with(write, "  - {name: python-ldap, sdist_bindep: false}\n", None))
    )
    assert off.extras(platform, "python-ldap", "3.4.7", bindep).packages == ()


def _sdist_with(tmp_path: Path, files: dict[str, str]) -> Path:
    path = tmp_path / "python-ldap-3.4.7.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"python-ldap-3.4.7/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_jobs_carry_their_extras_and_a_bad_sdist_bindep_blocks_the_job(
    tmp_path: Path, write: Write
) -> None:
    path = matrix_with(write, "  - {name: python-ldap, timeout: 1200, env: {X: '1'}}\n", None)
    ref = SdistRef("python-ldap-3.4.7.tar.gz", "https://files/python-ldap-3.4.7.tar.gz", None)
    good = facts(ref, _sdist_with(tmp_path, {"setup.py": "", "bindep.txt": BINDEP}))
    assert good.bindep is not None
    assert good.bindep_problem == ""
    settings = JobSettings(timeout=600, run_id="run", overrides=Overrides.of(load_matrix(path)))
    crcmod: SdistResult = sdist_facts("crcmod", "1.7", pure=False)

    def one(outcome: SdistResult) -> JobGraph:
        sdists = {("python-ldap", "3.4.7"): outcome, ("crcmod", "1.7"): crcmod}
        decisions = [build("python-ldap", "3.4.7", AMD), build("crcmod", "1.7", AMD)]
        return job_graph(
            decisions,
            PLATFORMS,
            IMAGES,
            sdists,
            needs=[],
            pool=AMD_NATIVE,
            expected=expected,
            settings=settings,
        )

    graph = one(good)
    jobs = {j.payload.name: j.payload for j in graph.jobs}
    ldap = jobs["python-ldap"]
    assert ldap.extras.packages == ("libldap2-dev", "libsasl2-dev", "gcc")
    assert ldap.timeout == 1200
    assert jobs["crcmod"].timeout == 600
    record = WheelRecord.for_job(ldap, JobStatus.FAILED)
    build_phase = record.phases[1]
    assert build_phase["env"] == {"SOURCE_DATE_EPOCH": "315532800", "PYTHONHASHSEED": "0", "X": "1"}

    bad = facts(ref, _sdist_with(tmp_path, {"setup.py": "", "bindep.txt": "x [platform:dpkg\n"}))
    blocked = one(bad).blocked
    assert [(b.job.name, b.failure.category) for b in blocked] == [
        ("python-ldap", Category.SYSTEM_PACKAGES)
    ]
    assert "bindep.txt in python-ldap-3.4.7.tar.gz" in blocked[0].failure.first_line


def test_reproduce_repeats_the_system_step() -> None:
    record = {
        "job": f"{AMD}/python-ldap==3.4.7",
        "platform": AMD,
        "arch": "amd64",
        "image": "sha256:" + "c" * 64,
        "image_ref": "r/b:x",
        "status": "failed",
        "exit_code": 20,
        "phases": [{"name": "fetch", "command": ["true"], "network": True, "env": {}}],
        "system_packages": {
            "family": "deb",
            "packages": ["libldap2-dev"],
            "sources": [],
            "installed": [],
        },
    }
    script = print_script(JobSpec.of(record))
    # the Dockerfile goes to docker build as one quoted word, not a here-document
    assert "| docker build -q --platform linux/amd64 -) || exit $?" in script
    assert "FROM sha256:" + "c" * 64 in script
    assert script.index("apt-get install") < script.index("# phase fetch")


# oslo.db 18.1.1's bindep.txt, as its sdist ships it: test services, no build profile.
OSLO_DB = """\
mariadb [platform:rpm]
mariadb-server [platform:redhat platform:debian]
mariadb-devel [platform:redhat]
libmariadb-dev-compat [platform:debian]
libmysqlclient-dev [platform:ubuntu]
mysql-client [platform:dpkg !platform:debian]
mysql-server [platform:dpkg !platform:debian]
postgresql
postgresql-client [platform:dpkg]
libpq-dev [platform:dpkg]
"""


def test_a_real_sdist_bindep_adds_no_test_services(write: Write) -> None:
    """From an sdist only lines naming a build profile count; the same file named in the
    matrix counts whole, as bindep reads it."""
    bindep = parse_bindep(OSLO_DB, "bindep.txt in oslo_db-18.1.1.tar.gz")
    platform = PLATFORMS[AMD]
    none = Overrides.of(load_matrix(matrix_with(write, "  - {name: crcmod}\n", None)))
    assert none.extras(platform, "oslo-db", "18.1.1", bindep).packages == ()
    whole = Overrides.of(
        load_matrix(matrix_with(write, "  - {name: oslo-db, bindep: deps/bindep.txt}\n", OSLO_DB))
    )
    assert whole.extras(platform, "oslo-db", "18.1.1").packages == (
        "mariadb-server",
        "libmariadb-dev-compat",
        "postgresql",
        "postgresql-client",
    )


def test_sdist_bindep_false_gets_past_an_unreadable_one(write: Write) -> None:
    path = matrix_with(write, "  - {name: python-ldap, sdist_bindep: false}\n", None)
    extras = Overrides.of(load_matrix(path)).extras(
        PLATFORMS[AMD],
        "python-ldap",
        "3.4.7",
        None,
        sdist_problem="bindep.txt in x.tar.gz: not a bindep file",
    )
    assert extras.problem == ""
    blocked = Overrides().extras(PLATFORMS[AMD], "python-ldap", "3.4.7", None, sdist_problem="bad")
    assert blocked.problem == "bad"
