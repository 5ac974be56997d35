"""The pool of engines: what each one runs natively, and what it emulates.

An engine's native arch comes from the engine. Whether it runs a foreign
arch is probed for real, by running the probe of that arch, and the answer
is cached per engine ID so that every command does not pay for it again.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.errors import EngineError
from orchestrator.core.files import write_atomic
from orchestrator.engines import Engine, EngineInfo, ImageBuildRequest, RunRequest, run_to_end
from orchestrator.engines.probe import DiskSpace, parse_statfs, probe_context
from orchestrator.model import Arch

PROBE_REPO = "orchestrate-probe"
POSITIVE_TTL = 24 * 3600.0  # binfmt entries rarely change within a day
NEGATIVE_TTL = 300.0  # but a missing one is often fixed right after doctor says so


@dataclass(frozen=True, kw_only=True)
class ProbeResult:
    runs: bool
    disk: DiskSpace | None
    detail: str


@dataclass(kw_only=True, frozen=True)
class EngineStatus:
    name: str
    url: str
    info: EngineInfo | None
    error: str | None
    runs: dict[Arch, ProbeResult]

    @property
    def reachable(self) -> bool:
        return self.info is not None

    @property
    def native(self) -> Arch | None:
        return self.info.arch if self.info else None

    @property
    def emulated(self) -> tuple[Arch, ...]:
        return tuple(a for a, r in self.runs.items() if r.runs and a != self.native)

    @property
    def disk(self) -> DiskSpace | None:
        native = self.runs.get(self.native) if self.native else None
        return native.disk if native else None


def probe_arch(engine: Engine, arch: Arch) -> ProbeResult:
    """Build the probe image of `arch` (FROM scratch, no pull) and run it."""
    tag = f"{PROBE_REPO}:{arch.value}"
    try:
        if engine.image(tag) is None:
            engine.build(
                ImageBuildRequest(tag=tag, context=probe_context(arch), platform=arch),
                lambda _line: None,
            )
        outcome, output = run_to_end(
            engine, RunRequest(image=tag, command=(), platform=arch, network=False), timeout=60
        )
    except EngineError as exc:
        return ProbeResult(runs=False, disk=None, detail=exc.message)
    if outcome.exit_code != 0:
        return ProbeResult(
            runs=False, disk=None, detail=f"probe exited {outcome.exit_code}: {output[:200]!r}"
        )
    try:
        return ProbeResult(runs=True, disk=parse_statfs(output, arch), detail="ran")
    except ValueError as exc:
        return ProbeResult(runs=True, disk=None, detail=str(exc))


class EngineFactsCache:
    """Probe answers on disk, keyed by engine ID and arch, with a TTL."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._data: dict[str, dict[str, dict[str, float | bool]]] = {}
        if path is not None and path.is_file():
            with contextlib.suppress(ValueError, OSError):
                self._data = json.loads(path.read_text())

    def get(self, engine_id: str, arch: Arch) -> bool | None:
        entry = self._data.get(engine_id, {}).get(arch.value)
        if not entry:
            return None
        ttl = POSITIVE_TTL if entry["runs"] else NEGATIVE_TTL
        return bool(entry["runs"]) if time.time() - float(entry["at"]) < ttl else None

    def put(self, engine_id: str, arch: Arch, *, runs: bool) -> None:
        self._data.setdefault(engine_id, {})[arch.value] = {"runs": runs, "at": time.time()}
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self._path, json.dumps(self._data, indent=1))


class EnginePool:
    """Engines by name, with cached facts about what each can run."""

    def __init__(self, engines: Sequence[Engine], cache: EngineFactsCache) -> None:
        self.engines = tuple(engines)
        self._cache = cache
        self._info: dict[str, EngineInfo] = {}

    @classmethod
    def of(
        cls, specs: Sequence[object], factory: Callable[..., Engine], cache_path: Path | None
    ) -> EnginePool:
        """One engine per spec (a matrix's `engines:`), made by `factory`."""
        return cls([factory(spec) for spec in specs], EngineFactsCache(cache_path))

    def info(self, engine: Engine) -> EngineInfo:
        if engine.name not in self._info:
            self._info[engine.name] = engine.info()
        return self._info[engine.name]

    def require_reachable(self) -> None:
        """Raise EngineError (exit 3) naming each engine, when none of them answers."""
        problems = []
        for engine in self.engines:
            try:
                self.info(engine)
            except EngineError as exc:
                problems.append(exc.message)
            else:
                return
        raise EngineError(
            "; ".join(problems) or "the matrix lists no engine",
            hint="start the engine (on this host: sudo orchestrate setup-host) or fix its url; "
            "`orchestrate doctor` checks each one",
        )

    def can_run(self, engine: Engine, arch: Arch) -> bool:
        """True when `engine` runs `arch`: natively, or by a probe that ran."""
        info = self.info(engine)
        if info.arch == arch:
            return True
        cached = self._cache.get(info.engine_id, arch)
        if cached is not None:
            return cached
        result = probe_arch(engine, arch)
        self._cache.put(info.engine_id, arch, runs=result.runs)
        return result.runs

    def status(self, engine: Engine, arches: Sequence[Arch]) -> EngineStatus:
        """A fresh look at one engine, for doctor: every arch is probed now."""
        try:
            info = self.info(engine)
        except EngineError as exc:
            return EngineStatus(
                name=engine.name, url=engine.url, info=None, error=exc.message, runs={}
            )
        runs = {}
        for arch in dict.fromkeys((*([info.arch] if info.arch else []), *arches)):
            runs[arch] = probe_arch(engine, arch)
            self._cache.put(info.engine_id, arch, runs=runs[arch].runs)
        return EngineStatus(name=engine.name, url=engine.url, info=info, error=None, runs=runs)

    def candidates(self, arch: Arch) -> tuple[list[Engine], list[Engine]]:
        """(native engines, emulating engines) for `arch`; unreachable ones are left out."""
        native: list[Engine] = []
        emulating: list[Engine] = []
        for engine in self.engines:
            try:
                if self.info(engine).arch == arch:
                    native.append(engine)
                elif self.can_run(engine, arch):
                    emulating.append(engine)
            except EngineError:
                continue
        return native, emulating
