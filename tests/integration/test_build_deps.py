"""Build dependencies with no wheel become jobs of their own, for real: a local index
(file://) serves two sdist-only projects whose build-system.requires name sdist-only
helpers; the helpers are built once into the build-dependency cache first."""

from __future__ import annotations

from pathlib import Path

from orchestrator.images.pipeline import ImagesReport
from tests.matrices import local_matrix_copy
from tests.wheelfactory import make_sdist, simple_index

from .conftest import Local

AMD = "debian-bookworm-amd64"
GOOD, BAD = "orchestrate-test-helper", "orchestrate-test-broken-helper"


def test_wheel_less_build_dependency_is_built_once_and_its_failure_is_classified(
    built_images: ImagesReport, local: Local, tmp_path: Path
) -> None:
    sdists = tmp_path / "sdists"
    files = [
        make_sdist(sdists, GOOD, "1.0"),
        make_sdist(sdists, BAD, "1.0", setup_py="raise RuntimeError('broken on purpose')\n"),
        make_sdist(sdists, "orchestrate-test-app", "1.0", ("setuptools>=61", f"{GOOD}==1.0")),
        make_sdist(sdists, "orchestrate-test-other", "1.0", ("setuptools>=61", BAD)),
    ]
    index = simple_index(tmp_path / "simple", files)
    matrix = local_matrix_copy(
        tmp_path / "m.yaml",
        tmp_path / "wheels",
        {"upstream: https://pypi.org/simple/": f"upstream: {index}"},
    )
    built = Local(matrix, local.matrix, tmp_path / "work").build(
        "orchestrate-test-app==1.0\norchestrate-test-other==1.0\n", tmp_path, "-p", "*-amd64"
    )
    assert built.process.returncode == 1, built.process.stderr
    jobs = built.jobs
    helper = jobs[f"{AMD}/build-dep:{GOOD}==1.0"]
    assert helper["status"] == "built"
    assert helper["kind"] == "build-dep"
    app = jobs[f"{AMD}/orchestrate-test-app==1.0"]
    assert app["status"] == "built", app
    assert app["depends"] == [f"{AMD}/build-dep:{GOOD}==1.0"]
    assert f"{GOOD}==1.0" in [r.replace("_", "-") for r in app["build_requires"]]
    # The helper went to the build-dependency cache, not to the published index.
    published = sorted(p.name for p in (tmp_path / "wheels" / "store").rglob("*.whl"))
    assert published == ["orchestrate_test_app-1.0-py3-none-any.whl"]

    broken = jobs[f"{AMD}/build-dep:{BAD}==1.0"]
    assert broken["status"] == "failed"
    assert broken["category"] == "metadata"  # its setup.py fails before building
    assert "broken on purpose" in broken["error"]
    other = jobs[f"{AMD}/orchestrate-test-other==1.0"]
    assert other["category"] == "build-dep-failed"
    assert BAD in other["error"]
    assert (broken["attempts"], other["attempts"]) == (1, 1)
