"""`orchestrate build` when its store cannot take the wheels: a corrupt manifest is
exit 4 and publishes nothing; a full disk is exit 3; the served index is untouched
and the report is written either way."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.images.pipeline import ImagesReport
from orchestrator.store import Provenance, Store
from tests.matrices import local_matrix_copy
from tests.wheelfactory import make_wheel

from .conftest import Local

AMD = "debian-bookworm-amd64"


def _seeded(local: Local, root: Path, tmp_path: Path) -> Local:
    """A matrix whose index already serves one wheel for amd64."""
    matrix = local_matrix_copy(tmp_path / "m.yaml", root)
    store = Store(root)
    with store.locked() as records:
        store.add(records, make_wheel(tmp_path / "w", "seed", "1.0"), [AMD], Provenance())
    done = subprocess.run(["orchestrate", "publish", "-m", str(matrix)], check=False)
    assert done.returncode == 0
    return Local(matrix, local.matrix, tmp_path / "work")


def test_a_corrupt_manifest_is_exit_4_and_publishes_nothing(
    built_images: ImagesReport, local: Local, tmp_path: Path
) -> None:
    root = tmp_path / "wheels"
    seeded = _seeded(local, root, tmp_path)
    served = (root / AMD).readlink()
    (root / "store" / "manifest.json").write_text('{"format": 1, "wheels": {')
    built = seeded.build("crcmod==1.7\n", tmp_path / "run", "-p", "*-amd64")
    # The plan reads the store first: the night stops there, before building anything.
    assert built.process.returncode == 4, built.process.stderr
    assert "manifest.json" in built.process.stderr
    assert (root / AMD).readlink() == served
    assert "manifest.json" in built.report["error"]  # and the report says why


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "disk"
    folder.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], check=False
    ).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_under_the_index_is_exit_3(
    built_images: ImagesReport, local: Local, tmp_path: Path, small_disk: Path
) -> None:
    root = small_disk / "wheels"
    seeded = _seeded(local, root, tmp_path)
    served = (root / AMD).readlink()
    with contextlib.suppress(OSError), (small_disk / "filler").open("wb", buffering=0) as out:
        while True:
            out.write(b"\0" * 4096)
    built = seeded.build("crcmod==1.7\n", tmp_path / "run", "-p", "*-amd64")
    assert built.process.returncode == 3, built.process.stderr
    assert "disk side" in built.process.stderr
    assert "Traceback" not in built.process.stderr
    assert (root / AMD).readlink() == served
    assert built.report["jobs"][0]["status"] == "built"


def test_a_night_cut_by_its_deadline_lists_every_job_and_fails(
    built_images: ImagesReport, local: Local, tmp_path: Path
) -> None:
    """--deadline stops new jobs, not the night's accounts: every planned job is in the
    report, those never started say why, and the night is not a success."""
    night = Local(
        local_matrix_copy(tmp_path / "m.yaml", tmp_path / "wheels"), local.matrix, tmp_path / "w"
    )
    pins = "crcmod==1.7\nnetifaces==0.11.0\nsimplegeneric==0.8.1\n"
    # amd64 alone: the jobs started before the deadline run to their end, and an
    # emulated one would take half a minute.
    built = night.build(pins, tmp_path / "run", "--deadline", "3", "-p", AMD)
    assert built.process.returncode == 1, built.process.stdout + built.process.stderr
    jobs = built.jobs
    names = {f"{AMD}/{pin}" for pin in pins.split()}
    assert set(jobs) == names
    unstarted = [j for j in jobs.values() if j["status"] == "cancelled"]
    assert unstarted, jobs
    assert all("the run deadline passed" in j["error"] for j in unstarted)
    assert built.report["summary"]["cancelled"] == len(unstarted)
    assert f"not started {len(unstarted)}" in built.process.stdout
