"""A wheel cache users can trust, for real.

psycopg2 (an OpenStack pin, sdist only on PyPI for Linux) links libpq. It is built
for debian-bookworm amd64 and arm64 by `orchestrate build`; the record, the report,
the project page and the provenance statement name its runtime package, and the
smoke test passes in the bare base image with only python3.11 and libpq5. With that
list emptied the same wheel does not load. A wheel built against a library no
package provides is never published.

Then a second builder for the same platform, made without Debian's security pocket
(libpq5 at the point release's version, so psycopg2's compiled-in libpq differs): the
plan says `rebuild` naming libpq5's two versions, the new file carries build tag 1,
the old one stays listed, and pip in that builder installs the new one.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.config import load_matrix
from orchestrator.config.matrix import expand
from orchestrator.core.layout import RunLayout
from orchestrator.engines import RunRequest
from orchestrator.engines.docker import DockerEngine
from orchestrator.images.base import ensure_base
from orchestrator.images.pipeline import ImagesReport
from orchestrator.model import Arch
from orchestrator.store import Store
from orchestrator.trust.packages import read_package_db
from orchestrator.trust.runtime import analyse, unresolved
from orchestrator.trust.smoke import SmokeCheck, smoke_in_image, smoke_plan, smoke_test
from tests.matrices import BASE_BLOCK, local_matrix_copy
from tests.wheelfactory import make_sdist, simple_index

from .conftest import Built, Local

PIN = "psycopg2==2.9.12"
AMD, ARM = "debian-bookworm-amd64", "debian-bookworm-arm64"
TEST_COMMAND = 'python -c "import psycopg2; print(psycopg2.__libpq_version__)"'


@pytest.fixture(scope="module")
def first(
    built_images: ImagesReport, local: Local, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Built, Path]:
    root = tmp_path_factory.mktemp("trust")
    matrix = local_matrix_copy(root / "m.yaml", root / "wheels")
    with matrix.open("a") as f:  # the smoke test's per-package command (like cibuildwheel's)
        f.write(f"overrides:\n  - name: psycopg2\n    test_command: '{TEST_COMMAND}'\n")
    built = Local(matrix, local.matrix, root / "work").build(f"{PIN}\n", root / "first")
    assert built.process.returncode == 0, built.process.stdout + built.process.stderr
    return built, root


def test_runtime_package_recorded_published_and_smoke_tested(first: tuple[Built, Path]) -> None:
    built, root = first
    for platform in (AMD, ARM):
        job = built.jobs[f"{platform}/{PIN}"]
        assert job["status"] == "built", job
        runtime, smoke = job["runtime"], job["smoke"]
        assert list(runtime["packages"]) == ["libpq5"], runtime
        assert {lib["soname"]: lib["package"] for lib in runtime["libraries"]}["libpq.so.5"] == (
            "libpq5"
        )
        assert runtime["extensions"] == ["psycopg2._psycopg"]
        assert re.fullmatch(r"2\.\d+", runtime["glibc"])
        assert smoke["passed"] is True
        assert smoke["packages"] == ["python3.11", "libpq5"]  # the bare base, nothing else
        assert {c["module"]: c["status"] for c in smoke["checks"]}["psycopg2._psycopg"] == "ok"
        assert smoke["command"] == {"command": TEST_COMMAND, "exit_code": 0, "error": ""}
        major, minor = runtime["packages"]["libpq5"].split("-")[0].split(".")[:2]
        log = Path(job["log"]).read_text()
        said = log.split(f"+ {TEST_COMMAND}", 1)[1]  # what the command printed, after it
        assert str(int(major) * 10000 + int(minor)) in said
        assert job["detail"] == f"runtime packages: libpq5 {runtime['packages']['libpq5']}"
        # The project page says what to install beside each file; its provenance is there.
        folder = root / "wheels" / platform / "simple" / "psycopg2"
        page = (folder / "index.html").read_text()
        assert f"runtime packages: libpq5 {runtime['packages']['libpq5']}" in page
        statement = json.loads((folder / f"{job['wheel']}.intoto.json").read_text())
        assert statement["subject"][0] == {
            "name": job["wheel"],
            "digest": {"sha256": job["sha256"]},
        }
        deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        assert deps[0]["digest"]["sha256"] == job["sdist"]["sha256"]
        assert deps[1]["name"] == "builder"
        assert deps[1]["digest"]["sha256"] in job["image_pull"]
        assert any(d["name"].startswith("setuptools==") for d in deps)
        byproducts = {
            b["name"]: b["annotations"] for b in statement["predicate"]["runDetails"]["byproducts"]
        }
        assert byproducts["runtime"]["packages"] == runtime["packages"]
        assert byproducts["smoke-test"]["passed"] is True
    html = Path(str(built.process.stdout).split("report: ")[-1].split(" and ")[1].strip())
    assert "runtime packages: libpq5" in html.read_text()


def test_the_smoke_test_fails_with_the_runtime_list_emptied(
    first: tuple[Built, Path], engine: DockerEngine, tmp_path: Path
) -> None:
    """On amd64: the smoke image is made the same way on every arch, the night's own
    smoke tests passed on both, and under emulation each one's apt costs half a
    minute."""
    built, root = first
    platform = next(p for p in expand(load_matrix(root / "m.yaml")) if p.name == AMD)
    job = built.jobs[f"{platform.name}/{PIN}"]
    wheel = root / "wheels" / platform.name / "simple" / "psycopg2" / job["wheel"]
    elf = analyse(str(wheel))
    runtime = unresolved(elf, "3.11")
    emptied = smoke_plan("3.11", runtime)
    assert emptied.packages == ("python3.11",)
    lines: list[str] = []
    base = ensure_base(
        platform, engine, tmp_path / "log", lines.append, bases=RunLayout(tmp_path).bases
    )
    result = smoke_test(
        engine,
        platform,
        wheel,
        runtime,
        base=base,
        plan=emptied,
        on_line=lines.append,
    )
    assert not result.passed
    assert result.error.startswith("psycopg2._psycopg: ImportError: libpq.so.5: cannot open")
    # The recorded list, in the same base: it loads.
    full = replace(emptied, packages=tuple(job["smoke"]["packages"]))
    assert smoke_test(
        engine,
        platform,
        wheel,
        runtime,
        base=base,
        plan=full,
        on_line=lines.append,
    ).passed


def test_the_builder_check_holds_loaded_libraries_to_the_recorded_packages(
    first: tuple[Built, Path], engine: DockerEngine
) -> None:
    """The fast path: the build container checks the wheel it built (no smoke image,
    no apt under QEMU, no container of its own), every library it loaded held to the
    recorded packages; the check in a builder container, which decides when that one
    does not, fails a library the process loads from a package outside the list."""
    built, root = first
    platforms = expand(load_matrix(root / "m.yaml"))
    assert len(platforms) == 2
    for platform in platforms:
        job = built.jobs[f"{platform.name}/{PIN}"]
        assert job["smoke"]["where"] == "build container, libraries checked", job["smoke"]
        assert any(c["module"] == "psycopg2._psycopg" for c in job["smoke"]["checks"])
        assert job["smoke"]["image"] == job["image"]  # no smoke image was made
        wheel = root / "wheels" / platform.name / "simple" / "psycopg2" / job["wheel"]
        runtime = unresolved(analyse(str(wheel)), "3.11")
        db = read_package_db(engine, job["image"], platform.arch)
        lines: list[str] = []
        for packages, passes in ((("python3.11",), False), (("python3.11", "libpq5"), True)):
            allowed = tuple(db.allowed_libraries(packages))
            check = SmokeCheck(image=job["image"], python="3.11", allowed=allowed)
            plan = smoke_plan("3.11", runtime, packages[1:])
            result = smoke_in_image(
                engine, platform, wheel, runtime, check=check, plan=plan, on_line=lines.append
            )
            assert result.passed is passes, (packages, result, lines[-20:])
            if not passes:
                assert [p for p in result.foreign if "/libpq.so.5" in p], result.foreign
                assert "none of its runtime packages provides" in result.error
                assert db.owner(next(p for p in allowed if "libc.so.6" in p)) == "libc6"


NATIVE_SETUP = """\
import os, subprocess
from setuptools import Extension, setup
# A helper library built beside the extension and linked from outside the wheel:
# it exists in the builder while building, and nowhere at run time.
os.makedirs("hlib", exist_ok=True)
subprocess.check_call(["gcc", "-shared", "-fPIC", "-o", "hlib/libohelper.so", "helper.c"])
setup(packages=["orchestrate_test_native"],
      ext_modules=[Extension("orchestrate_test_native._impl", ["impl.c"],
                             libraries=["ohelper"], library_dirs=["hlib"])])
"""
HELPER_C = "int ohelper(void) { return 42; }\n"
IMPL_C = """\
#include <Python.h>
int ohelper(void);
static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(ohelper()); }
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_impl", NULL, -1, methods};
PyMODINIT_FUNC PyInit__impl(void) { return PyModule_Create(&module); }
"""


def test_a_wheel_that_cannot_load_is_never_published(
    built_images: ImagesReport, local: Local, tmp_path: Path
) -> None:
    name = "orchestrate-test-native"
    sdist = make_sdist(
        tmp_path / "sdists",
        name,
        "1.0",
        setup_py=NATIVE_SETUP,
        extra={"helper.c": HELPER_C, "impl.c": IMPL_C},
    )
    index = simple_index(tmp_path / "simple", [sdist])
    matrix = local_matrix_copy(
        tmp_path / "m.yaml",
        tmp_path / "wheels",
        {"upstream: https://pypi.org/simple/": f"upstream: {index}"},
    )
    built = Local(matrix, local.matrix, tmp_path / "work").build(
        f"{name}==1.0\n", tmp_path, "-p", "*-amd64"
    )
    assert built.process.returncode == 1, built.process.stdout + built.process.stderr
    job = built.jobs[f"{AMD}/{name}==1.0"]
    assert job["status"] == "smoke-failed", job
    assert job["category"] == "smoke-test"
    assert job["runtime"]["unresolved"] == ["libohelper.so"]
    assert "libohelper.so: cannot open shared object file" in job["error"]
    assert f"FAILED {AMD}/{name}==1.0 [smoke-test]" in built.process.stderr
    log = Path(job["log"]).read_text()
    assert "libohelper.so" in log
    # The build container's own check failed too, and did not decide alone.
    assert "the build container's own import check did not settle it" in log, log
    assert not list((tmp_path / "wheels").rglob("*.whl"))  # neither stored nor published
    assert built.report["summary"]["smoke_failed"] == 1
    # One command reproduces it: the same build, then the same smoke test, failing.
    again = subprocess.run(
        [
            "orchestrate",
            "reproduce",
            AMD,
            f"{name}==1.0",
            "--matrix",
            str(matrix),
            "--workdir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 1, again.stdout + again.stderr
    assert "smoke test FAILED" in again.stdout
    assert "libohelper.so: cannot open shared object file" in again.stdout


def _installed_in(engine: DockerEngine, image: str, simple: Path) -> str:
    """pip in the builder, from the published index (copied in: no host mount), with
    the newest file it picks; then what that file was built against."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(simple.resolve(), arcname="idx/simple")
    script = (
        "set -e; /opt/orchestrate/py3.11/bin/pip install --no-deps --only-binary :all: "
        f"--target /tmp/t --index-url file:///idx/simple/ {PIN}; "
        "PYTHONPATH=/tmp/t /opt/orchestrate/py3.11/bin/python -c "
        "'import psycopg2; print(\"libpq\", psycopg2.__libpq_version__)'"
    )
    request = RunRequest(
        image=image, command=("sh", "-c", script), platform=Arch.AMD64, network=False
    )
    chunks: list[bytes] = []
    with engine.container(request) as box:
        box.put("/", buffer.getvalue())
        outcome = box.start_and_wait(300, chunks.append)
    text = b"".join(chunks).decode(errors="replace")
    assert outcome.exit_code == 0, text
    return text


def test_a_moved_library_rebuilds_under_a_build_tag(
    first: tuple[Built, Path], local: Local, engine: DockerEngine
) -> None:
    built, root = first
    old = built.jobs[f"{AMD}/{PIN}"]
    # The builders read the security pocket; one without it has the point release's
    # libpq5, another version than the first build's.
    moved_base = local_matrix_copy(
        root / "point-release.yaml",
        root / "wheels",
        {
            "repository: orchestrate/builder": "repository: orchestrate/builder-point-release",
            BASE_BLOCK: BASE_BLOCK + "      updates: false\n",
            "arches: [amd64, arm64]": "arches: [amd64]",
        },
    )
    again = Local(moved_base, load_matrix(moved_base), root / "work2").build(
        f"{PIN}\n", root / "second"
    )
    assert again.process.returncode == 0, again.process.stdout + again.process.stderr
    [decision] = [d for d in again.report["plan"] if d["platform"] == AMD]
    assert decision["action"] == "rebuild", decision
    moved = re.search(r"libpq5 (\S+) → (\S+)", decision["reason"])
    assert moved, decision["reason"]
    assert moved.group(1) == old["runtime"]["packages"]["libpq5"]
    new = again.jobs[f"{AMD}/{PIN}"]
    assert moved.group(2) == new["runtime"]["packages"]["libpq5"] != moved.group(1)
    assert new["rebuild"] == decision["reason"]
    [stored] = [s for s in again.report["store"] if s["outcome"] != "identical"]
    tagged = old["wheel"].replace("2.9.12-cp311", "2.9.12-1-cp311")
    assert stored == {**stored, "filename": tagged, "outcome": "rebuilt"}
    assert f"rebuilt: {tagged}" in again.process.stdout
    # Both files are listed; pip in the new builder takes the build-tagged one.
    simple = root / "wheels" / AMD / "simple"
    page = (simple / "psycopg2" / "index.html").read_text()
    assert old["wheel"] in page
    assert tagged in page
    records = {r.filename: r for r in Store(root / "wheels").records().values()}
    assert records[tagged].rebuild == decision["reason"]
    assert records[old["wheel"]].sha256 == old["sha256"]  # the old file is untouched
    said = _installed_in(engine, new["image"], simple)
    assert tagged in said, said
    major, minor = moved.group(2).split("-")[0].split(".")[:2]
    compiled_in = int(major) * 10000 + int(minor)  # PG_VERSION_NUM: 15.20 -> 150020
    assert f"libpq {compiled_in}" in said, said
    # The next night: nothing moved, nothing to do.
    plan = subprocess.run(
        [
            "orchestrate",
            "plan",
            "--matrix",
            str(moved_base),
            "-r",
            str(root / "second" / "requirements.txt"),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert plan.returncode == 0, plan.stderr
    [again_decision] = json.loads(plan.stdout)
    assert again_decision["action"] == "cached", again_decision
    assert again_decision["wheel"] == tagged
