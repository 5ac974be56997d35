"""Jobs whose build environment the host makes, with no pip under QEMU, for real.

Sdists that do not look pure (each carries a C file and a setup.py that
names an extension), built for debian-bookworm amd64 and arm64 (emulated) by
`orchestrate build`:

- `orchestrate-test-optional` builds `py3-none-any` all the same (like ovs, its
  extension is built only when asked for): the arm64 job waits for the native
  one and shares its wheel; nothing is built twice.
- `orchestrate-test-dynamic` has an in-tree backend that asks for `six` as a
  dynamic build requirement and makes a platform wheel. pip resolves `six` in
  the native amd64 builder with arm64's tags; the host unpacks it into the
  arm64 job's environment; the build phase (the only container) runs again.
- `orchestrate-test-cython` runs Cython in its build: the arm64 job compiles
  the C that Cython wrote in the amd64 job, and gives the same wheel as an
  arm64-only night in which Cython runs under QEMU.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from orchestrator.images.pipeline import ImagesReport
from tests.matrices import local_matrix_copy
from tests.wheelfactory import make_sdist, simple_index

from .conftest import Local

AMD, ARM = "debian-bookworm-amd64", "debian-bookworm-arm64"
UNUSED_C = "/* an optional speed-up this release never compiles */\n"
BACKEND = """\
from setuptools import build_meta as _orig
from setuptools.build_meta import *  # noqa: F401,F403


def get_requires_for_build_wheel(config_settings=None):
    return [*_orig.get_requires_for_build_wheel(config_settings), "six"]
"""
OPTIONAL_SETUP = """\
import os

from setuptools import Extension, setup

# The C speed-up is built only when asked for, so the wheel is pure.
speedups = [Extension("speedups", ["speedups.c"])] if os.environ.get("WITH_SPEEDUPS") else []
setup(ext_modules=speedups)
"""
SETUPREQ_SETUP = "from setuptools import setup\nsetup(setup_requires=['six'])\n"
PLATFORM_SETUP = """\
from setuptools import setup
from setuptools.dist import Distribution


class Platform(Distribution):
    def has_ext_modules(self):
        return True


setup(distclass=Platform)
"""


def test_host_made_environments_and_a_none_any_wheel_built_once(
    built_images: ImagesReport, local: Local, tmp_path: Path
) -> None:
    sdists = tmp_path / "sdists"
    optional = make_sdist(
        sdists,
        "orchestrate-test-optional",
        "1.0",
        setup_py=OPTIONAL_SETUP,
        extra={"speedups.c": UNUSED_C},
    )
    dynamic = make_sdist(
        sdists,
        "orchestrate-test-dynamic",
        "1.0",
        setup_py=PLATFORM_SETUP,
        extra={"speedups.c": UNUSED_C, "backend.py": BACKEND},
    )
    _in_tree_backend(dynamic)
    setupreq = make_sdist(sdists, "orchestrate-test-setupreq", "1.0", setup_py=SETUPREQ_SETUP)
    index = simple_index(tmp_path / "simple", [optional, dynamic, setupreq])
    matrix = local_matrix_copy(
        tmp_path / "m.yaml",
        tmp_path / "wheels",
        {"upstream: https://pypi.org/simple/": f"upstream: {index}"},
    )
    built = Local(matrix, local.matrix, tmp_path / "work").build(
        "orchestrate-test-optional==1.0\norchestrate-test-dynamic==1.0\n"
        "orchestrate-test-setupreq==1.0\n",
        tmp_path,
        env=_without_durations(tmp_path / "cache"),
    )
    assert built.process.returncode == 0, built.process.stdout + built.process.stderr
    jobs = built.jobs

    lead = jobs[f"{AMD}/orchestrate-test-optional==1.0"]
    shared = jobs[f"{ARM}/orchestrate-test-optional==1.0"]
    assert lead["status"] == "built", lead
    assert lead["wheel"].endswith("-py3-none-any.whl")
    assert shared["status"] == "shared", shared
    assert shared["depends"] == [lead["job"]]
    assert shared["sha256"] == lead["sha256"]
    assert f"built once by {lead['job']}" in shared["detail"]
    arm_index = tmp_path / "wheels" / ARM / "simple" / "orchestrate-test-optional"
    assert lead["wheel"] in (arm_index / "index.html").read_text()

    for platform in (AMD, ARM):
        job = jobs[f"{platform}/orchestrate-test-dynamic==1.0"]
        assert job["status"] == "built", job
        assert job["wheel"].endswith(f"linux_{'x86_64' if platform == AMD else 'aarch64'}.whl")
        assert any(r.startswith("six==") for r in job["build_requires"]), job["build_requires"]
        log = Path(job["log"]).read_text()
        # Two rounds (the backend asked for six), each environment made on the host:
        assert log.count("== build environment made on the host") == 2, log
        assert "== phase fetch" not in log  # no fetch container, no pip in the builder
        assert log.count("== phase build") == 2
        assert "with pip in" in log  # six: resolved natively the first night
        assert "fetch" in job["phase_seconds"]
        assert "build" in job["phase_seconds"]
    amd = jobs[f"{AMD}/orchestrate-test-dynamic==1.0"]
    amd_log = Path(amd["log"]).read_text()
    # Its first environment was made before it had a slot; its second round's after.
    assert amd_log.count("== (made ahead of the job's slot") == 1
    assert amd["ahead_seconds"] > 0
    # Each round's build started from the builder with that environment committed in,
    # and the run removed those images when its jobs were done.
    env_images = re.findall(r"== build environment in image (sha256:[0-9a-f]{64})", amd_log)
    assert len(set(env_images)) == 2, amd_log
    engine = local.pool.engines[0]
    assert all(engine.image(image) is None for image in env_images)
    arm = jobs[f"{ARM}/orchestrate-test-dynamic==1.0"]
    assert "made ahead" not in Path(arm["log"]).read_text()  # it waited for its twin
    assert arm["ahead_seconds"] == 0
    assert arm["emulated"] is True
    assert arm["depends"] == [f"{AMD}/orchestrate-test-dynamic==1.0"]  # waited, then built
    assert "--platform manylinux_2_17_aarch64" in Path(arm["log"]).read_text()
    _setup_requires_in_one_round(jobs[f"{AMD}/orchestrate-test-setupreq==1.0"])


def _setup_requires_in_one_round(job: dict[str, Any]) -> None:
    """setup.py's literal setup_requires went into the first environment: the build
    asked for nothing more, and ran once."""
    assert job["status"] == "built", job
    assert any(r.startswith("six==") for r in job["build_requires"]), job["build_requires"]
    log = Path(job["log"]).read_text()
    assert "the build asked for" not in log, log
    assert log.count("== phase build") == 1, log


def _in_tree_backend(sdist: Path) -> None:
    """Point the sdist's pyproject.toml at its own backend.py (PEP 517 backend-path)."""
    import io
    import tarfile

    with tarfile.open(sdist) as tar:
        members = [(m, _read(tar, m)) for m in tar.getmembers()]
    with tarfile.open(sdist, "w:gz") as tar:
        for info, data in members:
            body = data
            if info.name.endswith("/pyproject.toml") and data is not None:
                body = data.replace(
                    b'build-backend = "setuptools.build_meta"',
                    b'build-backend = "backend"\nbackend-path = ["."]',
                )
                info.size = len(body)
            tar.addfile(info, io.BytesIO(body) if body is not None else None)


def _read(tar: object, member: object) -> bytes | None:
    import tarfile

    assert isinstance(tar, tarfile.TarFile)
    assert isinstance(member, tarfile.TarInfo)
    handle = tar.extractfile(member)
    return handle.read() if handle else None


def _without_durations(own: Path) -> dict[str, str]:
    """The session's cache, but for its job durations: whether the arm64 job waits for
    its native twin weighs expected times, and the session learns its emulation factor
    from whatever ran before (a fast run of the native compiler tips it). Everything
    else is the session's own (a cold cross-compiler cache would rebuild the builder)."""
    shared = Path(os.environ["ORCHESTRATE_CACHE_DIR"])
    own.mkdir(parents=True)
    for entry in shared.iterdir():
        if entry.name != "durations.json":
            (own / entry.name).symlink_to(entry)
    return {"ORCHESTRATE_CACHE_DIR": str(own)}


CYTHON_SETUP = """\
from Cython.Build import cythonize
from setuptools import setup

setup(ext_modules=cythonize(["orchestrate_test_cython/fast.pyx"], language_level=3))
"""
CYTHON_PYX = "def add(int a, int b):\n    return a + b\n"


def test_emulated_build_compiles_the_c_the_native_cython_wrote(
    built_images: ImagesReport, local: Local, tmp_path: Path
) -> None:
    """A Cython sdist: its arm64 job waits for the amd64 one and compiles the C that
    Cython wrote there (no Cython under QEMU); an arm64-only night, where Cython runs
    emulated, makes the very same wheel."""
    sdist = make_sdist(
        tmp_path / "sdists",
        "orchestrate-test-cython",
        "1.0",
        ("setuptools>=61", "Cython==3.2.1"),
        setup_py=CYTHON_SETUP,
        extra={"orchestrate_test_cython/fast.pyx": CYTHON_PYX},
    )
    index = simple_index(tmp_path / "simple", [sdist])
    pin = "orchestrate-test-cython==1.0\n"
    both, alone = (
        Local(
            local_matrix_copy(
                tmp_path / f"{name}.yaml",
                tmp_path / f"wheels-{name}",
                {"upstream: https://pypi.org/simple/": f"upstream: {index}"},
            ),
            local.matrix,
            tmp_path / f"work-{name}",
        ).build(pin, tmp_path / name, *options, env=_without_durations(tmp_path / f"c-{name}"))
        for name, options in (("both", ()), ("alone", ("--platform", ARM)))
    )
    for built in (both, alone):
        assert built.process.returncode == 0, built.process.stdout + built.process.stderr
    amd = both.jobs[f"{AMD}/orchestrate-test-cython==1.0"]
    arm = both.jobs[f"{ARM}/orchestrate-test-cython==1.0"]
    assert arm["depends"] == [amd["job"]]
    assert arm["cython_from"] == amd["job"]
    arm_log = Path(arm["log"]).read_text()
    assert f"== 1 files of C that Cython==3.2.1 wrote in {amd['job']}" in arm_log, arm_log
    assert "because it changed" not in arm_log  # Cython found the module up to date
    assert "because it changed" in Path(amd["log"]).read_text()
    assert arm["smoke"]["passed"] is True, arm["smoke"]

    emulated = alone.jobs[f"{ARM}/orchestrate-test-cython==1.0"]
    assert emulated["cython_from"] == ""
    assert "because it changed" in Path(emulated["log"]).read_text()  # Cython under QEMU
    assert emulated["wheel"] == arm["wheel"]
    assert emulated["sha256"] == arm["sha256"]
