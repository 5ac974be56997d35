"""What goes into a wheel job's first container: the verified sdist, cached build
requirement wheels, constraints and earlier resolutions, as the /job tar."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.tars import add_file, lines_of
from orchestrator.jobs.builddeps import BuildDepCache
from orchestrator.jobs.graph import WheelJob
from orchestrator.jobs.sources import GeneratedC


@dataclass(kw_only=True, frozen=True)
class JobInputs:
    """What the host puts into the fetch container: the verified sdist, the platform's
    cached build-requirement wheels, the build constraints, and what an earlier run
    resolved: this sdist's exact build environment (`pins`), or else the versions
    another sdist with the same static build requirements resolved to tonight
    (`resolved`, used as constraints only)."""

    sdist: Path
    deps: BuildDepCache
    pins_key: str  # where this sdist's resolved build requirements are recorded
    pins: tuple[str, ...] | None = None
    requires_key: str = ""  # where the shared resolution of its static requirements goes
    resolved: tuple[str, ...] | None = None
    generated: GeneratedC | None = None  # the C its native twin's Cython wrote

    def tar(self, job: WheelJob, needs: Sequence[str] = ()) -> bytes:
        known = self.pins or self.resolved
        # With versions known, only their wheels: a cache grows, copies should not.
        wheels = self.deps.wheels_for(known) if known else self.deps.wheels()
        return input_tar(
            self.sdist,
            wheels,
            job.build_constraints,
            self.pins or (),
            needs=needs,
            resolved=self.resolved or (),
        )


def input_tar(
    sdist: Path,
    wheels: Sequence[Path],
    constraints: Sequence[str],
    pins: Sequence[str],
    *,
    needs: Sequence[str] = (),
    resolved: Sequence[str] = (),
) -> bytes:
    """The fetch phase's /job: owned by the build user (uid 1000), who writes there."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for wheel in wheels:
            add_file(tar, f"job/deps/{wheel.name}", wheel.read_bytes())
        add_file(tar, f"job/src/{sdist.name}", sdist.read_bytes())
        if constraints:
            add_file(tar, "job/build-constraints.txt", lines_of(constraints))
        if pins:
            add_file(tar, "job/build-pins.txt", lines_of(pins))
        if needs:
            add_file(tar, "job/build-needs.txt", lines_of(needs))
        if resolved:
            add_file(tar, "job/build-resolved.txt", lines_of(resolved))
    return buffer.getvalue()
