"""Five architectures end to end, on examples/multiarch.yaml: debian bookworm on
amd64, arm64, ppc64le and s390x and trixie on amd64 and riscv64, bases by debootstrap,
builders built (emulated where foreign), pushed with one manifest list per release and
pulled back per arch, the example's C extension built on every platform, then installed
from our index by pip in each builder and imported.

Slow (four builders under QEMU): marked `multiarch`, run by `scripts/test-multiarch`.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.config import load_matrix
from orchestrator.config.matrix import Platform, expand
from orchestrator.core.layout import RunLayout
from orchestrator.images.build import image_tag, release_tag
from orchestrator.images.pipeline import ImagesOptions, ImagesReport, run_images
from orchestrator.publish.serve import make_server
from tests.conftest import REPO

from .conftest import Built, Local

pytestmark = pytest.mark.multiarch

MULTIARCH = REPO / "examples" / "multiarch.yaml"
MACHINES = {
    "amd64": "x86_64",
    "arm64": "aarch64",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Local:
    folder = tmp_path_factory.mktemp("multiarch")
    text = MULTIARCH.read_text()
    old = "root: .orchestrate/multiarch-wheelhouse"
    assert old in text
    path = folder / "multiarch.yaml"
    path.write_text(text.replace(old, f"root: {folder / 'wheels'}"))
    return Local(path, load_matrix(path), folder / "work")


@pytest.fixture(scope="module")
def images(multi: Local) -> ImagesReport:
    report = run_images(
        multi.matrix,
        multi.pool,
        expand(multi.matrix),
        RunLayout(multi.workdir),
        options=ImagesOptions(push=True),
    )
    assert not report.failed, [(r.platform, r.reason) for r in report.failed]
    return report


@pytest.fixture(scope="module")
def built(images: ImagesReport, multi: Local, tmp_path_factory: pytest.TempPathFactory) -> Built:
    done = multi.build("crcmod==1.7\n", tmp_path_factory.mktemp("crcmod"))
    assert done.process.returncode == 0, done.process.stdout + done.process.stderr
    return done


def _platforms(multi: Local) -> list[Platform]:
    return list(expand(multi.matrix))


def test_every_builder_is_built_pushed_and_in_its_release_list(
    images: ImagesReport, multi: Local
) -> None:
    results = {r.platform: r for r in images.results}
    for platform in _platforms(multi):
        result = results[platform.name]
        assert result.emulated is (platform.arch.value != "amd64")
        if result.emulated:
            assert result.native_compiler is not None
            assert result.native_compiler.usable, result.native_compiler.reason
    lists = {r.release: r for r in images.releases}
    assert set(lists) == {"debian-bookworm", "debian-trixie"}
    assert set(lists["debian-bookworm"].arches) == {"amd64", "arm64", "ppc64le", "s390x"}
    assert set(lists["debian-trixie"].arches) == {"amd64", "riscv64"}


@pytest.mark.parametrize("arch", ["amd64", "arm64", "ppc64le", "s390x"])
def test_the_bookworm_list_resolves_each_arch(
    images: ImagesReport, multi: Local, arch: str
) -> None:
    _pulls(release_tag(multi.matrix, "debian-bookworm"), arch)


@pytest.mark.parametrize("arch", ["amd64", "riscv64"])
def test_the_trixie_list_resolves_each_arch(images: ImagesReport, multi: Local, arch: str) -> None:
    _pulls(release_tag(multi.matrix, "debian-trixie"), arch)


def _pulls(tag: str, arch: str) -> None:
    subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)
    pulled = subprocess.run(
        ["docker", "pull", "-q", "--platform", f"linux/{arch}", tag],
        capture_output=True,
        text=True,
        check=False,
    )
    assert pulled.returncode == 0, pulled.stderr
    machine = subprocess.run(
        ["docker", "run", "--rm", "--platform", f"linux/{arch}", tag, "uname", "-m"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert machine == MACHINES[arch]


@pytest.fixture(scope="module")
def served(multi: Local, built: Built) -> Iterator[str]:
    server = make_server(Path(str(multi.matrix.index.root)), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize(
    "name",
    [
        "debian-bookworm-amd64",
        "debian-bookworm-arm64",
        "debian-bookworm-ppc64le",
        "debian-bookworm-s390x",
        "debian-trixie-amd64",
        "debian-trixie-riscv64",
    ],
)
def test_the_c_extension_installs_from_our_index_and_imports(
    name: str, built: Built, served: str, multi: Local
) -> None:
    job = built.jobs[f"{name}/crcmod==1.7"]
    assert job["status"] == "built"
    assert job["mode"] in ("native", "emulated (native compiler)")
    platform = next(p for p in _platforms(multi) if p.name == name)
    python = f"/opt/orchestrate/py{platform.python[0]}/bin/python"
    script = (
        f"{python} -m pip install -q --target /tmp/t --only-binary :all: "
        f"--extra-index-url {served}/{name}/simple/ crcmod==1.7 && PYTHONPATH=/tmp/t {python} "
        "-c 'import crcmod._crcfunext, platform; print(platform.machine())'"
    )
    done = subprocess.run(
        [
            *("docker", "run", "--rm", "--network", "host"),
            *("--platform", f"linux/{platform.arch.value}", image_tag(multi.matrix, platform)),
            *("sh", "-c", script),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == MACHINES[platform.arch.value]
