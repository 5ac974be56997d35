"""Builder images for real: debootstrapped bases, native amd64, emulated arm64, the
loopback registry, manifest lists, the docker CLI as the client, freshness."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from orchestrator.config.matrix import expand
from orchestrator.core.layout import RunLayout
from orchestrator.engines import RunRequest
from orchestrator.engines.archive import HISTORY
from orchestrator.engines.docker import DockerEngine
from orchestrator.images.build import image_tag, release_tag
from orchestrator.images.cross import ROOT_KEY
from orchestrator.images.pipeline import ImagesReport, run_images
from orchestrator.images.registry import Registry, RegistryClient
from orchestrator.model import Arch
from tests.builders import go_back_one_update, package_versions, system_state
from tests.conftest import REPO, CliRunner
from tests.matrices import BASE_BLOCK, local_matrix_copy

from .conftest import Local


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def test_both_arches_built_pushed_and_joined(built_images: ImagesReport, local: Local) -> None:
    modes = {r.platform: r.emulated for r in built_images.results}
    assert modes == {"debian-bookworm-amd64": False, "debian-bookworm-arm64": True}
    [release] = built_images.releases
    assert release.status in ("published", "unchanged")
    client = RegistryClient(Registry(local.matrix.registry.url, insecure=True))
    index = client.index(local.matrix.registry.repository, "debian-bookworm")
    assert set(index) == {"amd64", "arm64"}
    digests = {r.platform.rsplit("-", 1)[1]: r.digest for r in built_images.results}
    assert index == digests


def test_docker_cli_pulls_arm64_from_the_manifest_list(
    built_images: ImagesReport, local: Local
) -> None:
    tag = release_tag(local.matrix, "debian-bookworm")
    subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)
    docker("pull", "-q", "--platform", "linux/arm64", tag)
    assert docker("image", "inspect", "--format", "{{.Architecture}}", tag).strip() == "arm64"
    assert (
        docker("run", "--rm", "--platform", "linux/arm64", tag, "uname", "-m").strip() == "aarch64"
    )
    probe = json.loads(
        docker(
            "run", "--rm", "--platform", "linux/arm64", tag, "cat", "/etc/orchestrate/probe.json"
        )
    )
    assert probe["glibc"] == "2.36"
    assert "cp311-cp311-manylinux_2_36_aarch64" in probe["tags"]["3.11"]
    assert "cp311-cp311-manylinux2014_aarch64" in probe["tags"]["3.11"]


def test_an_engine_without_the_builder_pulls_what_we_pushed_layer_for_layer(
    built_images: ImagesReport, local: Local
) -> None:
    """Docker, holding the builder, pulls none of its layers; Podman rootful holds no
    image of Docker's: it fetches each layer we gzipped and checks that it unpacks to
    the tar the config names."""
    from orchestrator.config import EngineSpec

    [arm] = [r for r in built_images.results if r.platform.endswith("-arm64")]
    podman = DockerEngine(EngineSpec(name="podman", url="unix:///run/podman/podman.sock"))
    pulled = arm.pull_ref
    assert pulled.startswith(f"{local.matrix.registry.url}/"), pulled
    try:
        podman.pull(pulled, Arch.ARM64, lambda _line: None)
        found = podman.image(pulled)
        assert found is not None
        assert found.id == arm.image_id
    finally:
        podman.remove_image(pulled)
        podman.close()


def test_unchanged_inputs_build_nothing(
    built_images: ImagesReport, local: Local, engine: DockerEngine, tmp_path: Path
) -> None:
    """Not even from an empty cache (a new runner on the same engine): the builder's
    inputs name the native parts the arm64 builder carries by what they are made
    from, so a fresh builder is found without making them."""
    before = {r.platform: r.image_id for r in built_images.results}
    layout = RunLayout(local.workdir / "again", cache=tmp_path / "empty-cache")
    again = run_images(local.matrix, local.pool, expand(local.matrix), layout)
    assert {r.platform: r.status for r in again.results} == dict.fromkeys(before, "fresh")
    assert {r.platform: r.image_id for r in again.results} == before
    for result in again.results:  # the log proves no build step ran
        log = Path(result.log).read_text()
        assert "Step 1/" not in log
        assert "fresh:" in log
    arm = Path(next(r.log for r in again.results if r.platform.endswith("-arm64"))).read_text()
    assert "making a native amd64 cross toolchain" not in arm
    assert "making the tool venvs" not in arm
    assert list((tmp_path / "empty-cache").glob("cross/*")) == []


def test_noop_refresh_through_the_cli_keeps_the_manifest_list(
    built_images: ImagesReport, local: Local, cli: CliRunner, tmp_path: Path
) -> None:
    client = RegistryClient(Registry(local.matrix.registry.url, insecure=True))
    repository = local.matrix.registry.repository
    before = client.manifest(repository, "debian-bookworm")
    assert before is not None
    result = cli("images", "refresh", "-m", str(local.path), "--workdir", str(tmp_path))
    assert result.code == 0, result.err
    after = client.manifest(repository, "debian-bookworm")
    assert after is not None
    assert after.digest == before.digest
    # One arch selected: the other stays in the release's list, as the registry has it.
    scope = ("-p", "debian-bookworm-amd64", "--workdir", str(tmp_path / "one"))
    one = cli("images", "refresh", "-m", str(local.path), *scope)
    assert one.code == 0, one.err
    assert sorted(client.index(repository, "debian-bookworm")) == ["amd64", "arm64"]
    kept = client.manifest(repository, "debian-bookworm")
    assert kept is not None
    assert kept.digest == before.digest


def test_changed_template_rebuilds_only_what_it_affects(
    built_images: ImagesReport, local: Local, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = tmp_path / "images"
    shutil.copytree(REPO / "images", images)
    template = images / "deb.Dockerfile.j2"
    template.write_text(
        template.read_text() + '{% if platform.arch == "amd64" %}\n'
        'LABEL org.orchestrate.test="changed"\n{% endif %}\n'
    )
    monkeypatch.setenv("ORCHESTRATE_IMAGES_DIR", str(images))
    changed = run_images(local.matrix, local.pool, expand(local.matrix), RunLayout(tmp_path))
    assert {r.platform: r.status for r in changed.results} == {
        "debian-bookworm-amd64": "built",
        "debian-bookworm-arm64": "fresh",
    }
    monkeypatch.delenv("ORCHESTRATE_IMAGES_DIR")
    restored = run_images(local.matrix, local.pool, expand(local.matrix), RunLayout(tmp_path / "2"))
    assert {r.status for r in restored.results} == {"built", "fresh"}


def test_partial_manifest_is_held_without_allow_partial(
    built_images: ImagesReport, local: Local
) -> None:
    from orchestrator.images.manifest import client_for, publish_release
    from orchestrator.images.registry import ManifestRef

    client = client_for(local.matrix)
    partial = f"partial-{uuid.uuid4().hex[:8]}"  # the loopback registry outlives sessions
    amd = next(r for r in built_images.results if r.platform.endswith("amd64"))
    ref = client.manifest(local.matrix.registry.repository, amd.digest)
    assert isinstance(ref, ManifestRef)
    held = publish_release(
        client,
        local.matrix,
        partial,
        [Arch.AMD64, Arch.ARM64],
        pushed={Arch.AMD64: ref},
        allow_partial=False,
    )
    assert held.status == "held"
    assert held.missing == ("arm64",)
    assert client.index(local.matrix.registry.repository, partial) == {}
    outcome = publish_release(
        client,
        local.matrix,
        partial,
        [Arch.AMD64, Arch.ARM64],
        pushed={Arch.AMD64: ref},
        allow_partial=True,
    )
    assert outcome.status == "partial"
    assert client.index(local.matrix.registry.repository, partial) == {"amd64": amd.digest}


def test_unpullable_base_fails_with_the_bootstrap_hint(tmp_path: Path, cli: CliRunner) -> None:
    matrix = local_matrix_copy(
        tmp_path / "m.yaml",
        tmp_path / "w",
        {BASE_BLOCK: "    base: registry.invalid/nothing/debian:bookworm\n"},
    )
    result = cli(
        "images", "build", "-m", str(matrix), "-p", "*-amd64", "--workdir", str(tmp_path / "work")
    )
    assert result.code == 1
    assert "cannot pull base image registry.invalid/nothing/debian:bookworm" in result.err
    assert "bootstrap: debootstrap" in result.err
    assert "Traceback" not in result.err


def test_unreachable_registry_publishes_nothing(
    built_images: ImagesReport, local: Local, tmp_path: Path, cli: CliRunner
) -> None:
    matrix = local_matrix_copy(
        tmp_path / "m.yaml", tmp_path / "w", {"url: 127.0.0.1:5000": "url: 127.0.0.1:9"}
    )
    result = cli(
        "images", "build", "-m", str(matrix), "--push", "--workdir", str(tmp_path / "work")
    )
    assert result.code == 1
    assert "127.0.0.1:9 is not reachable" in result.err
    assert "manifest 127.0.0.1:9/orchestrate/builder:debian-bookworm: held" in result.out
    assert "Traceback" not in result.err


def test_a_refresh_upgrades_the_previous_builder_to_a_from_scratch_builders_packages(
    local: Local, cli: CliRunner, tmp_path: Path
) -> None:
    """A builder from before a stable update is refreshed in place, says what changed,
    and then holds the packages, version for version, of one made from its base."""
    replaced = {"repository: orchestrate/builder": "repository: orchestrate/refresh-test"}
    matrix = local_matrix_copy(tmp_path / "m.yaml", tmp_path / "wheels", replaced)
    scope = ("-m", str(matrix), "-p", "debian-bookworm-amd64", "--workdir", str(tmp_path))
    tag = f"{local.matrix.registry.url}/orchestrate/refresh-test:debian-bookworm-amd64"
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
    from_base = cli("images", "build", *scope)  # the session's own layers, if any
    assert from_base.code == 0, from_base.err
    expected = package_versions(tag)
    change = go_back_one_update(tag)
    assert package_versions(tag) != expected

    # --allow-partial: this repository has no arm64 builder for the release's list.
    refreshed = cli("images", "refresh", "--max-age", "7", "--allow-partial", *scope)

    assert refreshed.code == 0, refreshed.err
    assert "debian-bookworm-amd64: refreshed in place, 1 package(s) changed" in refreshed.out
    assert f"  {change.package} {change.old} -> {change.new}" in refreshed.out
    assert package_versions(tag) == expected
    report = json.loads((tmp_path / "images-report.json").read_text())
    assert report["images"][0]["changes"] == [change.as_dict()]
    labels = json.loads(docker("image", "inspect", tag, "--format", "{{json .Config.Labels}}"))
    assert labels["org.orchestrate.upgrades"] == "1"
    again = cli("images", "refresh", "--max-age", "7", "--allow-partial", *scope)
    assert again.code == 0, again.err
    assert "refreshed in place" not in again.out
    assert (
        json.loads((tmp_path / "images-report.json").read_text())["images"][0]["status"] == "fresh"
    )


@pytest.fixture(scope="module")
def emulated_way(
    built_images: ImagesReport, local: Local, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The arm64 builder made wholly under QEMU, as before: its packages by `apt-get
    install`, its tool venvs by ensurepip and pip, its trust store by
    update-ca-certificates. Made once for the comparisons below (or found fresh: an
    engine kept from an earlier run holds it; its steps say how it was made)."""
    [arm] = [p for p in expand(local.matrix) if p.arch is Arch.ARM64]
    folder = tmp_path_factory.mktemp("emulated-way")
    replaced = {
        "repository: orchestrate/builder": "repository: orchestrate/emulated-way",
        "builder:\n": "builder:\n  native_packages: false\n",
    }
    matrix = local_matrix_copy(folder / "m.yaml", folder / "wheels", replaced)
    scope = ("-m", str(matrix), "-p", arm.name, "--workdir", str(folder))
    built = subprocess.run(
        ["orchestrate", "images", "build", *scope], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stdout + built.stderr
    log = (folder / "logs" / "images" / f"{arm.name}.log").read_text()
    assert "installing the packages natively" not in log
    assert "tool venvs made under emulation: builder.native_packages is false" in log
    tag = f"{local.matrix.registry.url}/orchestrate/emulated-way:{arm.name}"
    steps = _steps(tag)
    assert "apt-get install" in steps
    assert "-m venv /opt/orchestrate/py3.11" in steps
    assert not _starts_from_a_foreign_root(tag, steps)
    return tag


def _natively_made(built_images: ImagesReport, local: Local) -> str:
    """The session's arm64 builder, which took its packages, tool venvs and trust
    store from native containers: it starts from a foreign root, and no step of
    its own installs packages or makes venvs."""
    [arm] = [p for p in expand(local.matrix) if p.arch is Arch.ARM64]
    tag = image_tag(local.matrix, arm)
    steps = _steps(tag)
    assert _starts_from_a_foreign_root(tag, steps)
    assert "apt-get install" not in steps
    assert "-m venv" not in steps
    return tag


def _steps(tag: str) -> str:
    """What made each of the image's layers, as the engine records it."""
    return docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", tag)


def _starts_from_a_foreign_root(tag: str, steps: str) -> bool:
    """Whether the image's first layer is a loaded foreign root, as the engine records
    it: the root's history entry comes last of its `steps`, and the root's key is
    among the labels the image took from it. Not by the engine's roots' tags: a root
    made again under the same tag (`images build --force`) leaves a fresh builder's
    root untagged."""
    labels = json.loads(docker("image", "inspect", "-f", "{{json .Config.Labels}}", tag))
    return steps.splitlines()[-1] == HISTORY and ROOT_KEY in (labels or {})


def _listing(tag: str, folder: str) -> list[str]:
    """Every file's sha256 under `folder` in the image, and every link's target,
    sorted; bytecode aside (it records when it was compiled). Read natively from the
    engine's copy of a container never started."""
    box = docker("create", tag, "true").strip()
    try:
        copied = subprocess.run(
            ("docker", "cp", f"{box}:{folder}/.", "-"), capture_output=True, check=True
        )
    finally:
        docker("rm", box)
    lines = []
    with tarfile.open(fileobj=io.BytesIO(copied.stdout)) as tar:
        for member in tar:
            if member.issym():
                lines.append(f"{member.name} -> {member.linkname}")
            elif member.isfile() and not member.name.endswith(".pyc"):
                data = (tar.extractfile(member) or io.BytesIO()).read()
                lines.append(f"{member.name} {hashlib.sha256(data).hexdigest()}")
    return sorted(lines)


def test_packages_installed_natively_equal_those_installed_under_emulation(
    built_images: ImagesReport, local: Local, emulated_way: str
) -> None:
    """The arm64 builder whose packages the engine's own apt and dpkg installed holds
    the packages, version for version, of one whose `apt-get install` ran under QEMU."""
    natively = _natively_made(built_images, local)
    assert package_versions(emulated_way) == package_versions(natively)
    # Nor what installing leaves outside dpkg's database.
    state = system_state(natively)
    assert state == system_state(emulated_way)
    assert "update-ca-certificates" not in state  # the diversion while packages install
    # The engine's shell and tools, lent while packages install, went with their folders.
    assert "cannot access '/usr/lib/x86_64-linux-gnu'" in state
    assert "\n/usr/lib/aarch64-linux-gnu\n" in state


def test_a_ram_folder_runs_programs_opens_devices_and_never_reaches_the_disk(
    built_images: ImagesReport, local: Local, engine: DockerEngine
) -> None:
    """What the foreign root's container asks of `RunRequest.ram`: a tmpfs where the
    root's programs run (chroot, maintainer scripts) and its /dev/null opens, whose
    files the engine's copy-out does not see (the script writes its tar outside)."""
    [amd] = [p for p in expand(local.matrix) if p.arch is Arch.AMD64]
    script = (
        "stat -f -c %T /target && cp /bin/true /target/true && /target/true"
        " && mknod /target/null c 1 3 && echo gone >/target/null && touch /target/file"
    )
    request = RunRequest(
        image=image_tag(local.matrix, amd),
        command=("sh", "-c", script),
        platform=Arch.AMD64,
        user="root",
        network=False,
        ram=("/target",),
    )
    said: list[bytes] = []
    with engine.container(request) as box:
        outcome = box.start_and_wait(60, said.append)
        assert (outcome.exit_code, b"".join(said)) == (0, b"tmpfs\n")
        copied = box.get("/target")
    with tarfile.open(fileobj=io.BytesIO(copied)) as tar:
        assert [m.name for m in tar.getmembers()] == ["target"]  # the folder, empty


def test_the_natively_made_tool_venvs_equal_those_made_under_emulation(
    built_images: ImagesReport, local: Local, emulated_way: str
) -> None:
    natively = _listing(_natively_made(built_images, local), "/opt/orchestrate/py3.11")
    assert natively == _listing(emulated_way, "/opt/orchestrate/py3.11")
    assert len(natively) > 500  # pip, setuptools, build, wheel, packaging


def test_the_natively_made_trust_store_equals_update_ca_certificates_under_emulation(
    built_images: ImagesReport, local: Local, emulated_way: str
) -> None:
    """The emulated builder skips update-ca-certificates under QEMU and takes the store
    made natively: the same links and bundle as running it there, extra CAs included."""
    natively = _listing(_natively_made(built_images, local), "/etc/ssl/certs")
    assert natively == _listing(emulated_way, "/etc/ssl/certs")
    assert len(natively) > 250  # ~140 certificates, a link and a hash each
    assert any(line.startswith("./extra-0-ca-certificates.pem -> ") for line in natively)
