"""What a wheel job runs with: its engine, mode, tags, paths and the means it may
use (the host-made build environment, a resolver, images of environments), and its
log."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core.redact import RedactingLog
from orchestrator.engines import Engine
from orchestrator.images.facts import RuntimeFacts
from orchestrator.jobs.environment import Interpreters
from orchestrator.jobs.prepare import (
    EnvImages,
    MadeAhead,
    Resolver,
)
from orchestrator.model import Family, Mode
from orchestrator.plan.tags import TagSet
from orchestrator.scheduler import Cancel
from orchestrator.trust.packages import PackageDbs

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(kw_only=True, frozen=True)
class JobContext:
    """Where one job runs and writes: engine, mode, accepted tags, paths, cancel."""

    engine: Engine
    emulated: bool
    tags: TagSet
    family: Family
    out_dir: Path
    log_path: Path
    cancel: Cancel
    # Proxies and pip index URLs with their credentials: added to the fetch phase at
    # run time only (never in the recorded phases, the report or an image).
    fetch_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    on_phase: Callable[[str], None] = lambda _phase: None  # for the live progress table
    mode: Mode = Mode.NATIVE  # emulated jobs: with the builder's native compiler or not
    compiler_note: str = ""  # why an emulated job goes without the native compiler
    runtime: RuntimeFacts | None = None  # the builder's runtime facts
    builder_image: str = ""  # the builder's image ID on this engine
    bases: Path  # the run layout's debootstrapped bases (the smoke test's)
    package_dbs: PackageDbs | None = None  # builders' dpkg databases: the fast smoke test
    # The host makes the build environment (None: the fetch phase in the builder does)
    interpreters: Interpreters | None = None
    resolver: Resolver | None = None  # a native builder where pip resolves for this job
    # Its first build environment if one was made before its slot (else None; waits
    # for it when it is being made)
    ahead: Callable[[], MadeAhead | None] = lambda: None
    env_images: EnvImages | None = None  # build environments as images (None: copied in)

    @property
    def native_compiler(self) -> bool:
        return self.mode is Mode.NATIVE_COMPILER


def write(log: RedactingLog, chunk: bytes) -> None:
    log.write(chunk)  # redacted by line in RedactingLog
    log.flush()  # so that `tail -f` of a job's log shows it as it runs
