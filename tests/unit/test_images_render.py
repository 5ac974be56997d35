"""Rendering builder Dockerfiles for every platform of the production matrix."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.config import load_matrix
from orchestrator.config.matrix import expand
from orchestrator.core.errors import EXIT_INPUT, TemplateError
from orchestrator.engines.archive import archive_bytes, image_archive
from orchestrator.engines.docker import _Lines
from orchestrator.images.base import FETCH_RES_OPTIONS, fetch_env
from orchestrator.images.cross import foreign_root_for
from orchestrator.images.registry import DOCKER_LIST, DOCKER_MANIFEST, ManifestRef, index_document
from orchestrator.images.render import (
    ForeignRoot,
    ToolVenvs,
    bootstrap_tag,
    deterministic_tar,
    render,
    scratch_context,
)
from orchestrator.images.stale import LABEL_CREATED, LABEL_INPUTS, Stale, stale_reason
from orchestrator.model import Arch
from tests.conftest import REPO, CliRunner

MATRIX = load_matrix(REPO / "platforms.yaml")
PLATFORMS = {p.name: p for p in expand(MATRIX)}


@pytest.mark.parametrize("name", sorted(PLATFORMS))
def test_every_platform_renders(name: str) -> None:
    platform = PLATFORMS[name]
    text = render(platform, MATRIX).dockerfile
    assert text.splitlines()[1] == f"FROM {platform.base}"
    assert f'org.orchestrate.platform="{name}"' in text
    python = platform.python[0]
    assert f"python{python} -m venv /opt/orchestrate/py{python}" in text
    assert "USER builder" in text
    assert "orchestrate-probe" in text
    if platform.family.value == "rpm":
        assert "dnf -y install" in text
        assert f"python{python}-devel" in text
        assert "libffi-devel" in text
        assert "apt-get" not in text
    else:
        assert "apt-get install" in text
        assert f"       python{python}-dev \\\n       python{python}-venv \\" in text
        assert "libffi-dev \\" in text
        assert "dnf" not in text
    assert "\\ python" not in text  # no escaped space from template whitespace


def test_bases_per_distro() -> None:
    bases = {n: render(p, MATRIX).base for n, p in PLATFORMS.items()}
    assert bases["centos-stream9-arm64"] == "quay.io/centos/centos:stream9"
    assert bases["ubuntu-noble-amd64"] == "ubuntu:24.04"
    local = load_matrix(REPO / "examples" / "local.yaml")
    arm = expand(local)[1]
    assert render(arm, local).base.startswith("orchestrate-base:bookworm-arm64-")


def test_ca_certificates_and_pip_settings(tmp_path: Path) -> None:
    ca = tmp_path / "corp.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n")
    builder = MATRIX.builder.model_copy(
        update={
            "ca_certificates": (ca,),
            "pip": MATRIX.builder.pip.model_copy(
                update={"extra_index_urls": ("https://w/simple",), "trusted_hosts": ("w",)}
            ),
        }
    )
    matrix = MATRIX.model_copy(update={"builder": builder})
    deb = render(PLATFORMS["debian-bookworm-arm64"], matrix)
    rpm = render(PLATFORMS["centos-stream9-arm64"], matrix)
    assert deb.files["ca/extra-0-corp.crt"] == ca.read_bytes()
    # ca-certificates' own postinst takes the extra CA (one emulated run, not two);
    # a base that already holds the package runs the update itself.
    copy = deb.dockerfile.index("COPY ca/extra-0-corp.crt /usr/local/share/ca-certificates/")
    assert copy < deb.dockerfile.index("apt-get install")
    assert "RUN update-ca-certificates" not in deb.dockerfile
    assert "test -e /etc/ssl/certs/extra-0-corp.pem || update-ca-certificates" in deb.dockerfile
    assert "update-ca-trust" in rpm.dockerfile
    conf = deb.files["pip.conf"].decode()
    assert "extra-index-url = https://w/simple" in conf
    assert "trusted-host = w" in conf


def test_inputs_hash_tracks_dockerfile_files_and_base() -> None:
    rendered = render(PLATFORMS["debian-bookworm-amd64"], MATRIX)
    assert rendered.inputs_hash("sha256:a") == rendered.inputs_hash("sha256:a")
    assert rendered.inputs_hash("sha256:a") != rendered.inputs_hash("sha256:b")
    other = render(PLATFORMS["debian-bookworm-arm64"], MATRIX)
    assert other.inputs_hash("sha256:a") != rendered.inputs_hash("sha256:a")
    assert rendered.context() == rendered.context()  # reproducible tar


def test_template_syntax_error_names_template_line_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: CliRunner
) -> None:
    root = tmp_path / "images"
    (root / "scripts").mkdir(parents=True)
    (root / "deb.Dockerfile.j2").write_text("FROM {{ base }}\nRUN {% if %}\n")
    monkeypatch.setenv("ORCHESTRATE_IMAGES_DIR", str(root))
    result = cli(
        "images",
        "render",
        "-m",
        str(REPO / "platforms.yaml"),
        "-p",
        "debian-*-amd64",
        "--out",
        str(tmp_path / "out"),
    )
    assert result.code == EXIT_INPUT
    assert f"{root / 'deb.Dockerfile.j2'}:2: template syntax error" in result.err
    assert "debian-bookworm-amd64" in result.err


def test_undefined_variable_names_template_line_platform(tmp_path: Path) -> None:
    root = tmp_path / "images"
    (root / "scripts").mkdir(parents=True)
    (root / "rpm.Dockerfile.j2").write_text("FROM {{ base }}\n\nRUN {{ no_such_thing }}\n")
    with pytest.raises(TemplateError) as info:
        render(PLATFORMS["centos-stream9-amd64"], MATRIX, root)
    assert "rpm.Dockerfile.j2:3: undefined variable" in info.value.message
    assert "no_such_thing" in info.value.message
    assert "centos-stream9-amd64" in info.value.message


def test_render_cli_writes_every_platform(tmp_path: Path, cli: CliRunner) -> None:
    result = cli("images", "render", "-m", str(REPO / "platforms.yaml"), "--out", str(tmp_path))
    assert result.code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(PLATFORMS)
    assert (tmp_path / "ubuntu-noble-arm64" / "scripts" / "probe.py").is_file()


def test_stale_reasons() -> None:
    now = datetime(2026, 11, 21, tzinfo=UTC)
    fresh = {LABEL_INPUTS: "h", LABEL_CREATED: "2026-11-20T00:00:00+00:00"}
    assert stale_reason(fresh, "h", now) is None
    assert stale_reason(None, "h", now) == Stale(why="no image yet", reuses_layers=True)
    changed = stale_reason(fresh, "other", now)
    assert changed is not None
    assert changed.reuses_layers
    assert stale_reason(fresh, "h", now, force=True) == Stale(why="--force", reuses_layers=False)
    assert stale_reason(fresh, "h", now, max_age=timedelta(days=2)) is None
    week_old = {**fresh, LABEL_CREATED: "2026-11-10T00:00:00+00:00"}
    # A rebuild by age or --force has unchanged inputs: cached layers would all match.
    aged = Stale(why="older than 7 days", reuses_layers=False)
    assert stale_reason(week_old, "h", now, max_age=timedelta(days=7)) == aged


def test_manifest_list_document() -> None:
    entries = [
        (Arch.ARM64, ManifestRef("sha256:b", 20, DOCKER_MANIFEST)),
        (Arch.AMD64, ManifestRef("sha256:a", 10, DOCKER_MANIFEST)),
    ]
    doc = index_document(DOCKER_LIST, entries)
    assert doc["mediaType"] == DOCKER_LIST
    manifests = doc["manifests"]
    assert isinstance(manifests, list)
    assert [m["platform"] for m in manifests] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ]


def test_bootstrap_tag_depends_on_mirror() -> None:
    from orchestrator.config import Bootstrap

    a = Bootstrap(bootstrap="debootstrap", suite="bookworm")
    b = Bootstrap(bootstrap="debootstrap", suite="bookworm", mirror="http://mirror.local/debian")
    assert bootstrap_tag(a, "arm64") != bootstrap_tag(b, "arm64")


def test_templates_ship_with_the_package() -> None:
    """orchestrator/_images (a symlink in a checkout, a copy in a wheel) is the default."""
    from orchestrator.images.render import templates_dir

    root = templates_dir()
    assert root.name == "_images"
    assert root.resolve() == (REPO / "images").resolve()
    for name in ("_common.j2", "deb.Dockerfile.j2", "rpm.Dockerfile.j2", "scripts/job.py"):
        assert (root / name).is_file()


def test_the_five_arch_example_shares_the_defaults_bookworm_builders() -> None:
    """examples/multiarch.yaml's bookworm amd64 and arm64 builders are the embedded
    default's, byte for byte, so a host (CI) that has those reuses them."""
    local, multi = (load_matrix(REPO / "examples" / n) for n in ("local.yaml", "multiarch.yaml"))
    for name in ("debian-bookworm-amd64", "debian-bookworm-arm64"):
        ours = render(next(p for p in expand(local) if p.name == name), local)
        theirs = render(next(p for p in expand(multi) if p.name == name), multi)
        assert ours.base == theirs.base, name
        assert ours.inputs_hash("sha256:x") == theirs.inputs_hash("sha256:x"), name
        assert ours.context() == theirs.context(), name


def test_a_builder_made_under_emulation_takes_its_natively_made_tool_venvs() -> None:
    platform = PLATFORMS["debian-bookworm-arm64"]
    venvs = ToolVenvs(host=Arch.AMD64, key="venvs")
    emulated = render(platform, MATRIX, venvs=venvs)
    native = render(platform, MATRIX)
    assert "ADD tool-venvs.tar.gz /opt/" in emulated.dockerfile
    assert "-m venv" not in emulated.dockerfile
    # The venvs come before the packages, with the natively made trust store.
    lines = emulated.dockerfile.splitlines()
    assert lines.index("ADD tool-venvs.tar.gz /opt/") < next(
        i for i, line in enumerate(lines) if "apt-get install" in line
    )
    assert "ln -s /bin/true /usr/sbin/update-ca-certificates" in emulated.dockerfile
    assert "cp -a /opt/orchestrate/ca-store/certs/. /etc/ssl/certs/" in emulated.dockerfile
    assert "update-ca-certificates.orchestrate" not in native.dockerfile
    assert emulated.native == {"tool-venvs.tar.gz": "venvs"}
    assert "-m venv /opt/orchestrate/py3.11" in native.dockerfile
    assert native.native == {}
    # The same packages, and the same Dockerfile after the venvs.
    assert "       libpq-dev \\" in _installed(emulated.dockerfile)
    assert _installed(emulated.dockerfile) == _installed(native.dockerfile)
    after = emulated.dockerfile.partition("COPY scripts/")[2]
    assert after
    assert after in native.dockerfile
    assert emulated.inputs_hash("b") != native.inputs_hash("b")


def _installed(dockerfile: str) -> list[str]:
    """The lines of `apt-get install`'s package list (one or more packages a line)."""
    lines = dockerfile.splitlines()
    start = next(i for i, line in enumerate(lines) if "apt-get install" in line) + 1
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("       "))
    return lines[start:end]


LOCAL = load_matrix(REPO / "examples" / "local.yaml")  # bootstrapped bases
LOCAL_ARM = next(p for p in expand(LOCAL) if p.arch is Arch.ARM64)


def test_a_foreign_root_builder_starts_from_its_packages_made_natively() -> None:
    platform = LOCAL_ARM
    venvs = ToolVenvs(host=Arch.AMD64, key="venvs")
    foreign = render(platform, LOCAL, venvs=venvs, foreign_root=ForeignRoot(host=Arch.AMD64))
    emulated = render(platform, LOCAL, venvs=venvs)
    # It starts FROM the engine's image of the root, named by what it is made from.
    assert foreign.foreign_root is not None
    reference = foreign.foreign_root.reference
    assert re.fullmatch(rf"orchestrate-root:{platform.name}-[0-9a-f]{{16}}", reference)
    assert f"\nFROM {reference}\n" in foreign.dockerfile
    other_venvs = ToolVenvs(host=Arch.AMD64, key="other venvs")
    other = render(platform, LOCAL, venvs=other_venvs, foreign_root=ForeignRoot(host=Arch.AMD64))
    assert other.foreign_root is not None
    assert other.foreign_root.reference != reference
    assert "apt-get" not in foreign.dockerfile
    assert "ADD tool-venvs.tar.gz" not in foreign.dockerfile  # inside the root
    assert foreign.native == {}
    # The recipe decides freshness: the same packages as the emulated way's list.
    packages = foreign.files["foreign-root/packages.txt"].decode().split()
    listed = " ".join(_installed(emulated.dockerfile)).replace("\\", "").split()
    assert packages == listed
    assert "python3.11-dev" in packages
    assert foreign.files["foreign-root/foreign-root.sh"].startswith(b"#!/bin/sh")
    assert foreign.inputs_hash("b") != emulated.inputs_hash("b")
    assert emulated.foreign_root is None
    # What follows the packages is the emulated way's own.
    after = foreign.dockerfile.partition("ENV PIP_DISABLE_PIP_VERSION_CHECK")[2]
    assert after
    assert after in emulated.dockerfile


def test_a_foreign_root_only_for_a_bootstrapped_deb_builder_under_emulation() -> None:
    venvs = ToolVenvs(host=Arch.AMD64, key="venvs")
    arm = LOCAL_ARM
    assert foreign_root_for(arm, LOCAL, Arch.AMD64, venvs) == ForeignRoot(host=Arch.AMD64)
    assert foreign_root_for(arm, LOCAL, Arch.ARM64, venvs) is None  # native
    assert foreign_root_for(arm, LOCAL, Arch.AMD64, None) is None  # no venvs made
    assert foreign_root_for(arm, LOCAL, None, venvs) is None  # engine arch unknown
    pulled = dataclasses.replace(arm, base="debian:bookworm")
    assert foreign_root_for(pulled, LOCAL, Arch.AMD64, venvs) is None
    builder = LOCAL.builder.model_copy(update={"native_packages": False})
    off = LOCAL.model_copy(update={"builder": builder})
    assert foreign_root_for(arm, off, Arch.AMD64, venvs) is None
    rpm = next(p for p in PLATFORMS.values() if p.family.value == "rpm")
    assert foreign_root_for(rpm, MATRIX, Arch.AMD64, venvs) is None


def test_debootstrap_asks_a_dropped_name_query_again_after_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """debootstrap's wgets look the mirror up once per package: glibc's 5-s timeout
    is cut to 1 s unless the user set resolver options of their own."""
    monkeypatch.delenv("RES_OPTIONS", raising=False)
    assert fetch_env()["RES_OPTIONS"] == FETCH_RES_OPTIONS == "timeout:1 attempts:5"
    monkeypatch.setenv("RES_OPTIONS", "rotate")
    assert fetch_env()["RES_OPTIONS"] == "rotate"
    assert fetch_env()["PATH"] == os.environ["PATH"]  # the rest of the environment kept


def test_a_scratch_context_holds_the_root_whole_and_the_files_its_steps_use() -> None:
    root = deterministic_tar({"etc/os-release": b"ID=debian\n", "bin/sh": b"x" * 1000})
    context = scratch_context(root, {"sources.list": b"deb"}, "COPY sources.list /etc/\n")
    with tarfile.open(fileobj=io.BytesIO(context)) as opened:
        read = {m.name: (opened.extractfile(m) or io.BytesIO()).read() for m in opened}
    assert sorted(read) == ["Dockerfile", "root.tar", "sources.list"]
    assert read["root.tar"] == root
    assert read["sources.list"] == b"deb"
    steps = read["Dockerfile"].decode().splitlines()
    assert steps == [
        "FROM scratch",
        "ADD root.tar /",
        "COPY sources.list /etc/",
        'CMD ["/bin/bash"]',
    ]
    assert len(context) % tarfile.BLOCKSIZE == 0


@pytest.mark.parametrize("size", [0, 1, 512, 1000])
def test_a_foreign_root_loads_as_one_layer_whose_config_says_its_arch(size: int) -> None:
    layer = deterministic_tar({"etc/os-release": b"ID=debian\n", "bin/sh": b"x" * size})
    labels = {"org.orchestrate.root-key": "k" * 64, "a": "b c"}
    made = image_archive(layer, platform=Arch.ARM64, labels=labels, created="2026-12-05T00:00:00Z")
    with tarfile.open(fileobj=io.BytesIO(archive_bytes(made))) as opened:
        read = {m.name: (opened.extractfile(m) or io.BytesIO()).read() for m in opened}
    [manifest] = json.loads(read["manifest.json"])
    assert manifest["Layers"] == ["layer.tar"]
    assert read["layer.tar"] == layer
    config = read[manifest["Config"]]
    # The engines name an image by its config's digest: known before loading.
    assert made.image_id == "sha256:" + hashlib.sha256(config).hexdigest()
    assert manifest["Config"] == f"{made.image_id.removeprefix('sha256:')}.json"
    fields = json.loads(config)
    assert (fields["architecture"], fields["os"]) == ("arm64", "linux")
    assert fields["config"]["Labels"] == labels
    assert fields["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    again = image_archive(layer, platform=Arch.ARM64, labels=labels, created="2026-12-05T00:00:00Z")
    assert again.image_id == made.image_id
    other = image_archive(layer, platform=Arch.S390X, labels=labels, created="2026-12-05T00:00:00Z")
    assert other.image_id != made.image_id


def test_a_build_line_sent_in_pieces_is_read_as_one() -> None:
    seen: list[str] = []
    lines = _Lines(seen.append)
    for chunk in ("E", ": ", "Unable to locate package x\nStep 2/4 : RUN", " true\r\n", "tail"):
        lines.add(chunk)
    assert seen == ["E: Unable to locate package x", "Step 2/4 : RUN true"]
    lines.flush()
    assert seen[-1] == "tail"
