"""One object owns every path of a run: logs, job folders, reports and caches.

Modules take a `RunLayout` (or one of its paths) instead of calling
`cache_dir()` themselves, as fromager's `WorkContext` does, so a test or a
benchmark points a whole run somewhere else by making one value.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.core.paths import cache_dir


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def _file_part(job_id: str) -> str:
    """A job ID (`platform/name==version`, or with a `build-dep:` prefix) as one path part."""
    return job_id.replace("/", "_").replace("==", "-").replace(":", "_")


@dataclass(frozen=True)
class RunLayout:
    workdir: Path  # logs, job folders, reports: per run
    cache: Path = field(default_factory=cache_dir)  # shared by runs
    run_id: str = field(default_factory=new_run_id)

    # -- this run --------------------------------------------------------------
    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def image_logs(self) -> Path:
        return self.logs / "images"

    def job_log(self, job_id: str) -> Path:
        return self.logs / self.run_id / f"{_file_part(job_id)}.log"

    def job_dir(self, job_id: str) -> Path:
        return self.workdir / "jobs" / self.run_id / _file_part(job_id)

    @property
    def reports(self) -> Path:
        return self.workdir / "reports"

    # -- shared by runs --------------------------------------------------------
    @property
    def index_cache(self) -> Path:
        return self.cache / "index"

    @property
    def sdists(self) -> Path:
        """Content-addressed sdists, shared by every platform and run."""
        return self.cache / "sdists"

    def build_deps(self, platform: str, python: str) -> Path:
        """Build-requirement wheels for one platform and Python, reused by every job."""
        return self.cache / "build-deps" / platform / f"py{python}"

    @property
    def bases(self) -> Path:
        """Debootstrapped base root filesystems, by suite, arch and mirror."""
        return self.cache / "bases"

    @property
    def cross(self) -> Path:
        """Native cross toolchains, by platform, host arch and base."""
        return self.cache / "cross"

    @property
    def blobs(self) -> Path:
        """The layers pushed to each registry (diff ID → blob), and the pushes' spool."""
        return self.cache / "blobs"

    @property
    def durations(self) -> Path:
        return self.cache / "durations.json"

    @property
    def probes(self) -> Path:
        return self.cache / "probes"

    @property
    def engines(self) -> Path:
        return self.cache / "engines.json"
