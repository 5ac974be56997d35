"""Emulated arm64 builds with the builder's native cross compiler, for real: a C
pin (crcmod) and a C++ one (greenlet, from source) built for debian-bookworm-arm64 on
the amd64 engine both ways; the wheels install and import in the arm64 builder, and
their extension modules disassemble the same."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import load_matrix
from orchestrator.config.matrix import expand
from orchestrator.images.build import image_tag
from orchestrator.images.pipeline import ImagesReport
from tests.matrices import local_matrix_copy

from .conftest import Built, Local

ARM = "debian-bookworm-arm64"
PINS = "crcmod==1.7\ngreenlet==3.5.5\n"
MODULES = {"crcmod": "crcmod/_crcfunext", "greenlet": "greenlet/_greenlet"}


def _matrix(folder: Path, extra_builder: str) -> Local:
    path = local_matrix_copy(
        folder / "m.yaml",
        folder / "wheels",
        {"builder:\n": f"from_source: [greenlet]\nbuilder:\n{extra_builder}"},
    )
    return Local(path, load_matrix(path), folder / "work")


@pytest.fixture(scope="module")
def both_ways(
    built_images: ImagesReport, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Built]:
    """The same pins built the default way (native compiler) and fully emulated."""
    out = {}
    for way, extra in (
        ("native-compiler", ""),
        ("emulated", "  native_compiler_except: [crcmod, greenlet]\n"),
    ):
        folder = tmp_path_factory.mktemp(way)
        built = _matrix(folder, extra).build(PINS, folder, "-p", ARM)
        assert built.process.returncode == 0, built.process.stdout + built.process.stderr
        out[way] = built
    return out


def _wheels(built: Built) -> dict[str, dict[str, Any]]:
    return {j["name"]: j for j in built.jobs.values() if j["status"] == "built"}


def test_each_way_says_its_mode(both_ways: dict[str, Built]) -> None:
    native, emulated = _wheels(both_ways["native-compiler"]), _wheels(both_ways["emulated"])
    assert set(native) == set(emulated) == {"crcmod", "greenlet"}
    for name in native:
        assert native[name]["emulated"] is emulated[name]["emulated"] is True
        assert native[name]["mode"] == "emulated (native compiler)"
        assert native[name]["compiler"].startswith("gcc 12.")
        assert native[name]["compiler"].endswith("for x86_64")
        assert emulated[name]["mode"] == "emulated"
        assert "turns the native compiler off" in emulated[name]["compiler"]
    # The native compiler is where the time goes; greenlet is C++ and compiles longest.
    assert (
        native["greenlet"]["phase_seconds"]["build"]
        < emulated["greenlet"]["phase_seconds"]["build"]
    )


def _in_arm_builder(local: Local, script: str, wheels: list[Path]) -> str:
    image = image_tag(local.matrix, next(p for p in expand(local.matrix) if p.name == ARM))
    mounts = [f"--volume={w.parent}:/w{i}:ro" for i, w in enumerate(wheels)]
    done = subprocess.run(
        [
            *("docker", "run", "--rm", "--network", "none", "--platform", "linux/arm64"),
            *(*mounts, image, "sh", "-c", script),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _wheel_path(built: Built, name: str) -> Path:
    job = _wheels(built)[name]
    matrix_path = built.workdir.parent / "m.yaml"
    root = Path(str(load_matrix(matrix_path).index.root))
    return root / "store" / ARM / str(job["wheel"])


@pytest.mark.parametrize("name", sorted(MODULES))
def test_same_code_both_ways(name: str, both_ways: dict[str, Built], local: Local) -> None:
    """Installed and imported in the arm64 builder; `objdump -d` of the extension module
    is the same both ways (only the compiler's identification, in .comment, may differ)."""
    wheels = [_wheel_path(both_ways[w], name) for w in ("native-compiler", "emulated")]
    py = "/opt/orchestrate/py3.11/bin/python"
    script = " && ".join(
        f"{py} -m pip install -q --no-index --no-deps --target /tmp/t{i} /w{i}/{w.name} && "
        f"PYTHONPATH=/tmp/t{i} {py} -c 'import {MODULES[name].replace('/', '.')}' && "
        f"objdump -d /tmp/t{i}/{MODULES[name]}*.so | tail -n +3 > /tmp/d{i}"
        for i, w in enumerate(wheels)
    )
    out = _in_arm_builder(local, script + " && cmp /tmp/d0 /tmp/d1 && wc -l < /tmp/d0", wheels)
    assert int(out.split()[-1]) > 100  # a real disassembly was compared
