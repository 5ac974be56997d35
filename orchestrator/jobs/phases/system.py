"""The system phase: a job that needs extra system packages (overrides, bindep)
runs in its builder plus those packages. In: the job and its record. Out: the job on
that image, or None with the record failed (`system-packages`)."""

from __future__ import annotations

import time
from dataclasses import replace

from orchestrator.core.errors import BuildStepFailed
from orchestrator.core.redact import RedactingLog
from orchestrator.images.sysdeps import system_image
from orchestrator.jobs.failures import Failure
from orchestrator.jobs.graph import WheelJob
from orchestrator.jobs.phases.context import ANSI, JobContext, write
from orchestrator.jobs.records import WheelRecord
from orchestrator.model import Category

# How apt and dnf say that a package cannot be installed.
PACKAGE_ERRORS = ("E: ", "No match for argument", "Error: Unable to find a match")


def system_record(job: WheelJob) -> dict[str, object] | None:
    extras = job.extras
    if not extras.packages:
        return None
    family = job.platform.family.value
    return {
        "family": family,
        "packages": list(extras.packages),
        "sources": list(extras.sources),
        "installed": [],
    }


def with_system_packages(
    job: WheelJob, ctx: JobContext, log: RedactingLog, record: WheelRecord
) -> tuple[WheelJob | None, WheelRecord]:
    """The job to run: itself, or, when it needs extra system packages, the same job
    in its builder plus those packages (None if they could not be installed). With
    the record: the step's time and image, or its failure."""
    packages = job.extras.packages
    if not packages:
        return job, record
    log.write(
        f"\n== system packages ({', '.join(job.extras.sources)}): {' '.join(packages)}\n".encode()
    )
    ctx.on_phase("system")
    started = time.monotonic()
    errors: list[str] = []  # the package manager's own words, for the record

    def line(text: str) -> None:
        text = ANSI.sub("", text)  # the classic builder colours a step's stderr
        write(log, f"{text}\n".encode())
        if text.startswith(PACKAGE_ERRORS) and len(errors) < 10:
            errors.append(text.strip())

    try:
        image = system_image(
            ctx.engine,
            job.image,
            job.platform.arch,
            job.platform.family.value,
            packages=packages,
            env=ctx.fetch_env,
            on_line=line,
        )
    except BuildStepFailed as exc:
        hint = "check the names for this distro release (overrides or bindep.txt)"
        failure = Failure(Category.SYSTEM_PACKAGES, (errors or [exc.message])[0], hint)
        return None, record.timed("system", time.monotonic() - started).failed(failure)
    record = record.timed("system", time.monotonic() - started)
    assert record.system_packages is not None
    system = {**record.system_packages, "image": image}
    return replace(job, image=image), replace(record, system_packages=system)
