"""Is this host ready for a matrix? Each check says what is wrong and the fix."""

from __future__ import annotations

import shutil
from collections.abc import Sequence

import requests

from orchestrator.config import Bootstrap, Matrix
from orchestrator.config.matrix import Platform
from orchestrator.core.errors import RegistryError
from orchestrator.engines.pool import EnginePool, EngineStatus
from orchestrator.images.registry import Registry, ping
from orchestrator.model import Arch, Check

SETUP = "sudo orchestrate setup-host"


def engine_checks(statuses: Sequence[EngineStatus], arches: Sequence[Arch]) -> list[Check]:
    checks = [_engine_check(s) for s in statuses]
    for arch in arches:
        native = [s.name for s in statuses if s.native == arch]
        emulated = [s.name for s in statuses if arch in s.emulated]
        if native or emulated:
            parts = [f"native on {', '.join(native)}"] if native else []
            parts += [f"emulated on {', '.join(emulated)}"] if emulated else []
            detail = "; ".join(parts)
            checks.append(Check(subject=f"arch {arch.value}", ok=True, detail=detail))
        else:
            checks.append(
                Check(
                    subject=f"arch {arch.value}",
                    ok=False,
                    detail="no engine runs it natively or under emulation",
                    fix=f"install QEMU user emulation ({SETUP}), or add a native "
                    f"{arch.value} engine",
                )
            )
    return checks


def _engine_check(status: EngineStatus) -> Check:
    subject = f"engine {status.name}"
    if status.info is None:
        return Check(
            subject=subject,
            ok=False,
            detail=f"{status.url}: {status.error}",
            fix=f"start the engine ({SETUP}) or fix engines[].url in the matrix",
        )
    info = status.info
    emulated = ", ".join(a.value for a in status.emulated) or "none"
    disk = f"{status.disk.free_bytes / 2**30:.1f} GiB free" if status.disk else "free disk unknown"
    detail = (
        f"{info.url}: {info.kind.value.capitalize()} {info.server_version} "
        f"(API {info.api_version}, {'rootless' if info.rootless else 'rootful'}), "
        f"native {info.arch.value if info.arch else info.machine}, "
        f"emulated {emulated}, {disk}"
    )
    return Check(subject=subject, ok=True, detail=detail)


def registry_check(matrix: Matrix) -> Check:
    registry = Registry(matrix.registry.url, matrix.registry.insecure)
    try:
        return Check(subject=f"registry {registry.host}", ok=True, detail=ping(registry))
    except RegistryError as exc:
        return Check(
            subject=f"registry {registry.host}", ok=False, detail=exc.message, fix=exc.hint or ""
        )


def index_check(matrix: Matrix, timeout: float = 10.0) -> Check:
    url = matrix.index.upstream
    subject = f"index {url}"
    if url.startswith("file://"):
        return Check(subject=subject, ok=True, detail="local folder")
    try:
        response = requests.get(url + "pip/", timeout=timeout)
    except requests.RequestException as exc:
        return Check(
            subject=subject,
            ok=False,
            detail=f"not reachable: {type(exc).__name__}",
            fix="check network, proxy (HTTPS_PROXY) and index.upstream in the matrix",
        )
    if response.status_code != 200:
        return Check(
            subject=subject,
            ok=False,
            detail=f"HTTP {response.status_code} for the 'pip' project page",
            fix="index.upstream must be a PEP 503 simple index root",
        )
    return Check(subject=subject, ok=True, detail="answers the simple API")


def tool_checks(platforms: Sequence[Platform]) -> list[Check]:
    needs_debootstrap = any(isinstance(p.base, Bootstrap) for p in platforms)
    found = shutil.which("debootstrap")
    return [
        Check(
            subject="debootstrap",
            ok=found is not None,
            detail=found or "not installed",
            fix="sudo apt-get install debootstrap",
            required=needs_debootstrap,
        )
    ]


def run_doctor(matrix: Matrix, pool: EnginePool, platforms: Sequence[Platform]) -> list[Check]:
    arches = list(dict.fromkeys(p.arch for p in platforms))
    statuses = [pool.status(engine, arches) for engine in pool.engines]
    return [
        *engine_checks(statuses, arches),
        registry_check(matrix),
        index_check(matrix),
        *tool_checks(platforms),
    ]
