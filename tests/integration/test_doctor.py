"""`orchestrate doctor` against the real engine, QEMU and registries."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from orchestrator.config import load_matrix
from orchestrator.core.errors import EXIT_ENVIRONMENT
from orchestrator.doctor import registry_check
from orchestrator.engines.docker import DockerEngine
from orchestrator.engines.pool import EngineFactsCache, EnginePool
from orchestrator.images.registry import Registry, docker_credentials, ping
from orchestrator.model import Arch
from tests.conftest import REPO, CliRunner
from tests.matrices import local_matrix_copy

from .conftest import RegistryService
from .services import REGISTRY_PASSWORD, REGISTRY_USER


def test_doctor_reports_native_amd64_and_emulated_arm64(
    engine: DockerEngine, cli: CliRunner
) -> None:
    result = cli("doctor", "--matrix", str(REPO / "examples" / "local.yaml"))
    assert result.code == 0, result.out + result.err
    engine_line = next(line for line in result.out.splitlines() if "engine local" in line)
    assert "native amd64" in engine_line
    assert "emulated arm64" in engine_line
    assert "GiB free" in engine_line
    assert re.search(r"Docker \S+ \(API 1\.\d+, rootful\)", engine_line)


def test_doctor_reports_the_five_arches(engine: DockerEngine, cli: CliRunner) -> None:
    """examples/multiarch.yaml: each foreign arch really runs (a probe ELF of that arch,
    in a FROM scratch image), and its free disk is decoded in that arch's layout."""
    result = cli(
        "doctor", "--matrix", str(REPO / "examples" / "multiarch.yaml"), "--format", "json"
    )
    checks = {c["subject"]: c for c in json.loads(result.out)}
    detail = str(checks["engine local"]["detail"])
    assert "native amd64" in detail
    assert "emulated arm64, ppc64le, s390x, riscv64" in detail
    for arch in ("arm64", "ppc64le", "s390x", "riscv64"):
        assert checks[f"arch {arch}"]["ok"] is True
        assert "emulated on local" in str(checks[f"arch {arch}"]["detail"])


def test_probe_results_are_cached_per_engine(
    engine: DockerEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "engines.json"
    pool = EnginePool([engine], EngineFactsCache(cache))
    assert pool.can_run(engine, Arch.ARM64)
    stored = json.loads(cache.read_text())
    assert stored[engine.info().engine_id]["arm64"]["runs"] is True
    # A second pool trusts the cache: it answers without running a probe at all.
    import orchestrator.engines.pool as pool_module

    def no_probe(*_args: object) -> object:
        raise AssertionError("probed again despite a fresh cache entry")

    monkeypatch.setattr(pool_module, "probe_arch", no_probe)
    again = EnginePool([engine], EngineFactsCache(cache))
    assert again.can_run(engine, Arch.ARM64)
    # Without the cache the same question does probe (so the check above can fail).
    with pytest.raises(AssertionError, match="probed again"):
        EnginePool([engine], EngineFactsCache(None)).can_run(engine, Arch.ARM64)


def test_doctor_unreachable_engine_exits_3_with_hint(tmp_path: Path, cli: CliRunner) -> None:
    matrix = local_matrix_copy(
        tmp_path / "m.yaml",
        tmp_path / "w",
        {"url: unix:///var/run/docker.sock": "url: tcp://127.0.0.1:9"},
    )
    result = cli("doctor", "--matrix", str(matrix))
    assert result.code == EXIT_ENVIRONMENT
    assert "MISSING" in result.out
    assert "tcp://127.0.0.1:9" in result.out
    assert "connection refused" in result.out
    assert "setup-host" in result.out  # the fix is printed next to the problem
    assert "Traceback" not in result.out + result.err


def test_registry_without_auth(open_registry: RegistryService) -> None:
    assert ping(Registry(open_registry.host)) == "ok"


def test_registry_with_auth_reads_docker_config(
    auth_registry: RegistryService, docker_config: Path
) -> None:
    registry = Registry(auth_registry.host)
    assert ping(registry) == "auth required"
    assert docker_credentials(auth_registry.host) is None
    token = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
    (docker_config / "config.json").write_text(
        json.dumps({"auths": {auth_registry.host: {"auth": token}}})
    )
    assert docker_credentials(auth_registry.host) == (REGISTRY_USER, REGISTRY_PASSWORD)


def test_registry_unreachable_is_reported(tmp_path: Path) -> None:
    path = local_matrix_copy(
        tmp_path / "m.yaml", tmp_path / "w", {"url: 127.0.0.1:5000": "url: 127.0.0.1:9"}
    )
    check = registry_check(load_matrix(path))
    assert not check.ok
    assert "127.0.0.1:9 is not reachable" in check.detail
    assert "setup-host" in check.fix


def test_manifest_list_through_a_registry_with_auth(
    auth_registry: RegistryService, docker_config: Path, tmp_path: Path
) -> None:
    """Push two tiny per-arch images, amd64 by our push and arm64 by the engine's (as
    from another host), and join them, with credentials from the Docker config;
    without them the error says what to do and never shows a password."""
    from orchestrator.config import EngineSpec
    from orchestrator.core.errors import RegistryError
    from orchestrator.engines.pool import probe_arch
    from orchestrator.images.registry import RegistryClient
    from orchestrator.images.registry.push import BlobCache, push_image

    token = base64.b64encode(f"{REGISTRY_USER}:{REGISTRY_PASSWORD}".encode()).decode()
    config = {"auths": {auth_registry.host: {"auth": token}}}
    (docker_config / "config.json").write_text(json.dumps(config))
    engine = DockerEngine(EngineSpec(name="auth-test"))  # reads DOCKER_CONFIG at connect
    client = RegistryClient(Registry(auth_registry.host))
    for arch in (Arch.AMD64, Arch.ARM64):
        assert probe_arch(engine, arch).runs  # builds orchestrate-probe:<arch> locally
    ours = push_image(
        client,
        engine,
        "orchestrate-probe:amd64",
        repo="probe/tiny",
        tag="amd64",
        cache=BlobCache(tmp_path / "blobs", auth_registry.host),
        on_line=lambda _line: None,
    )
    assert client.manifest("probe/tiny", "amd64") == ours
    local = engine.image("orchestrate-probe:amd64")
    assert local is not None
    assert client.config_digest("probe/tiny", "amd64") == local.id  # the same image
    engine.tag("orchestrate-probe:arm64", f"{auth_registry.host}/probe/tiny:arm64")
    theirs = client.manifest(
        "probe/tiny", engine.push(f"{auth_registry.host}/probe/tiny:arm64", lambda _line: None)
    )
    assert theirs is not None
    refs = {Arch.AMD64: ours, Arch.ARM64: theirs}
    client.put_index("probe/tiny", "multi", sorted(refs.items(), key=lambda e: e[0].value))
    assert client.index("probe/tiny", "multi") == {a.value: r.digest for a, r in refs.items()}
    engine.close()

    (docker_config / "config.json").write_text("{}")
    anonymous = RegistryClient(Registry(auth_registry.host))
    with pytest.raises(RegistryError) as info:
        anonymous.index("probe/tiny", "multi")
    assert "requires authentication" in info.value.message
    assert info.value.hint == f"docker login {auth_registry.host}"
    assert REGISTRY_PASSWORD not in info.value.render()
