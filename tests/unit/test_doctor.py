"""Doctor's verdicts, from engine facts (no Docker needed)."""

from __future__ import annotations

from orchestrator.config.matrix import expand
from orchestrator.doctor import engine_checks, tool_checks
from orchestrator.engines import EngineInfo
from orchestrator.engines.pool import EngineStatus, ProbeResult
from orchestrator.engines.probe import DiskSpace
from orchestrator.model import Arch, EngineKind
from tests.conftest import REPO


def _status(name: str, native: Arch | None, runs: dict[Arch, bool]) -> EngineStatus:
    info = (
        None
        if native is None
        else EngineInfo(
            name=name,
            url=f"unix:///{name}.sock",
            kind=EngineKind.DOCKER,
            rootless=False,
            server_version="20.10",
            api_version="1.41",
            arch=native,
            machine=native.machine,
            kernel="6.1",
            engine_id=name,
            data_root="/",
        )
    )
    results = {
        a: ProbeResult(runs=ok, disk=DiskSpace(2**31, 2**32), detail="") for a, ok in runs.items()
    }
    return EngineStatus(
        name=name,
        url=f"unix:///{name}.sock",
        info=info,
        error=None if info else "connection refused",
        runs=results,
    )


def test_native_and_emulated_arches_are_reported() -> None:
    local = _status("local", Arch.AMD64, {Arch.AMD64: True, Arch.ARM64: True})
    checks = {c.subject: c for c in engine_checks([local], [Arch.AMD64, Arch.ARM64])}
    assert checks["engine local"].ok
    assert "native amd64, emulated arm64, 2.0 GiB free" in checks["engine local"].detail
    assert checks["arch arm64"].detail == "emulated on local"


def test_arch_nobody_runs_is_missing_with_fix() -> None:
    local = _status("local", Arch.AMD64, {Arch.AMD64: True, Arch.ARM64: False})
    arm = next(c for c in engine_checks([local], [Arch.ARM64]) if c.subject == "arch arm64")
    assert not arm.ok
    assert "setup-host" in arm.fix


def test_unreachable_engine_is_missing_with_fix() -> None:
    down = _status("far", None, {})
    check = engine_checks([down], [])[0]
    assert not check.ok
    assert "connection refused" in check.detail
    assert "engines[].url" in check.fix


def test_debootstrap_required_only_when_a_base_is_bootstrapped() -> None:
    from orchestrator.config import load_matrix

    prod = expand(load_matrix(REPO / "platforms.yaml"))
    local = expand(load_matrix(REPO / "examples" / "local.yaml"))
    assert not tool_checks(prod)[0].required
    assert tool_checks(local)[0].required
