"""One wheel job on one engine: fetch with network, build without, verify, record.

The job directory travels between the two containers as a tar through the
engine API (never a host mount), so the same code works on a remote ssh://
engine. Containers get no Docker socket, no privileges, no host paths and no
registry credentials, and are always removed (unless --keep-failed keeps a
failed one). The record holds everything needed to reproduce the job.
"""

from __future__ import annotations

import hashlib
import io
import shlex
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from orchestrator.engines import Engine, RunRequest
from orchestrator.errors import EngineError, UnsafeName
from orchestrator.matrix import Platform
from orchestrator.scheduler import Cancel

from .tags import TagSet

JOB_SCRIPT = "/usr/local/lib/orchestrate/job.py"
# Wheels store zip timestamps, which cannot predate 1980: a fixed epoch there.
SOURCE_DATE_EPOCH = "315532800"
EXIT_DOWNLOAD = 10
EXIT_DEPS = 11
LABEL_JOB = "org.orchestrate.job"


@dataclass(frozen=True)
class WheelJob:
    platform: Platform
    python: str
    name: str
    version: str
    image: str  # image ID: the exact builder, immutable
    image_ref: str  # the tag it came from, for people
    timeout: float = 3600
    keep_failed: bool = False
    run_id: str = ""

    @property
    def id(self) -> str:
        return f"{self.platform.name}/{self.name}=={self.version}"

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Phase:
    """One container of a job, as a value that can be run again anywhere."""

    name: str
    command: tuple[str, ...]
    network: bool
    env: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "command": list(self.command),
            "network": self.network,
            "env": dict(self.env),
        }


@dataclass
class WheelRecord:
    job: str
    platform: str
    python: str
    name: str
    version: str
    status: str  # built | shared | failed | timeout | cancelled
    duration: float = 0.0
    engine: str = ""
    emulated: bool = False
    wheel: str | None = None
    sha256: str | None = None
    size: int = 0
    log: str = ""
    image: str = ""
    image_ref: str = ""
    arch: str = ""
    phases: list[dict[str, object]] = field(default_factory=list)
    detail: str = ""
    exit_code: int | None = None
    attempts: int = 1
    source_sha256: str | None = None  # the sdist the wheel was built from

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)

    @classmethod
    def for_job(cls, job: WheelJob, status: str, **fields: Any) -> WheelRecord:
        """A record naming `job`, with its image and recorded phases."""
        base: dict[str, Any] = {
            "image": job.image,
            "image_ref": job.image_ref,
            "arch": job.platform.arch.value,
            "phases": [p.as_dict() for p in phases(job)],
        }
        return cls(
            job.id,
            job.platform.name,
            job.python,
            job.name,
            job.version,
            status,
            **{**base, **fields},
        )


def phases(job: WheelJob) -> tuple[Phase, Phase]:
    python = f"/opt/orchestrate/py{job.python}/bin/python"
    return (
        Phase("fetch", (python, JOB_SCRIPT, "fetch", job.requirement), network=True),
        Phase(
            "build",
            (python, JOB_SCRIPT, "build"),
            network=False,
            env={"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PYTHONHASHSEED": "0"},
        ),
    )


def run_job(
    job: WheelJob,
    engine: Engine,
    emulated: bool,
    tags: TagSet,
    out_dir: Path,
    log_path: Path,
    cancel: Cancel,
) -> WheelRecord:
    started = time.monotonic()
    record = WheelRecord.for_job(
        job, "failed", engine=engine.name, emulated=emulated, log=str(log_path)
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        _header(log, job, engine, emulated)
        try:
            _run_phases(job, engine, tags, out_dir, log, record, cancel, started)
        finally:
            record.duration = round(time.monotonic() - started, 2)
            log.write(f"\n== {record.status} after {record.duration}s {record.detail}\n".encode())
    return record


def _header(log: BinaryIO, job: WheelJob, engine: Engine, emulated: bool) -> None:
    mode = "emulated" if emulated else "native"
    log.write(
        f"== {job.id} on {engine.name} ({mode}), image {job.image_ref} "
        f"({job.image[:19]})\n".encode()
    )


def _run_phases(
    job: WheelJob,
    engine: Engine,
    tags: TagSet,
    out_dir: Path,
    log: BinaryIO,
    record: WheelRecord,
    cancel: Cancel,
    started: float,
) -> None:
    fetch, build = phases(job)
    job_tar = b""
    for phase in (fetch, build):
        if cancel.event.is_set():
            record.status, record.detail = "cancelled", "cancelled before " + phase.name
            return
        remaining = job.timeout - (time.monotonic() - started)
        log.write(
            f"\n== phase {phase.name} ({'network' if phase.network else 'no network'}): "
            f"{shlex.join(phase.command)}\n".encode()
        )
        request = RunRequest(
            image=job.image,
            command=phase.command,
            platform=job.platform.arch,
            env=phase.env,
            network=phase.network,
            user=None,
            workdir="/job",
            labels={LABEL_JOB: job.id, "org.orchestrate.run": job.run_id},
            keep=job.keep_failed,
        )
        with engine.container(request) as box:
            cancel.on_cancel(box.kill)
            if job_tar:
                box.put("/", job_tar)
            outcome = box.start_and_wait(max(remaining, 1), lambda chunk: _write(log, chunk))
            log.flush()
            record.exit_code = outcome.exit_code
            if outcome.timed_out:
                record.status = "timeout"
                record.detail = f"killed after the {job.timeout:.0f}s timeout ({phase.name})"
                return
            if cancel.event.is_set():
                record.status, record.detail = "cancelled", f"stopped during {phase.name}"
                return
            if outcome.exit_code != 0:
                _failed(record, phase, outcome.exit_code)
                return
            if phase is fetch:
                job_tar = box.get("/job")
                record.source_sha256 = sdist_sha256(job_tar)
            else:
                job_tar = box.get("/job/out")
    _collect(job_tar, tags, out_dir, record)


def _write(log: BinaryIO, chunk: bytes) -> None:
    log.write(chunk)


class TransientJobError(EngineError):
    """A failure worth retrying: the source download did not complete."""


def _failed(record: WheelRecord, phase: Phase, code: int | None) -> None:
    if phase.name == "fetch" and code in (EXIT_DOWNLOAD, EXIT_DEPS):
        # Downloads fail for passing reasons (network, index hiccup): retry these.
        raise TransientJobError(f"{record.job}: downloading sources failed (exit {code})")
    record.status = "failed"
    record.detail = f"{phase.name} exited {code}; see the log"


def _collect(out_tar: bytes, tags: TagSet, out_dir: Path, record: WheelRecord) -> None:
    """Take the one wheel out of the tar, checking its name and tags before writing."""
    wheels = extract_wheels(out_tar, out_dir)
    if len(wheels) != 1:
        record.status, record.detail = "failed", f"expected one wheel, got {len(wheels)}"
        return
    wheel = wheels[0]
    _name, _version, _build, wheel_tags = parse_wheel_filename(wheel.name)
    if not tags.accepts(wheel_tags):
        record.status = "failed"
        record.detail = f"{wheel.name}: its tags do not fit {record.platform} python {tags.python}"
        return
    data = wheel.read_bytes()
    record.status, record.wheel = "built", wheel.name
    record.sha256, record.size = hashlib.sha256(data).hexdigest(), len(data)
    record.detail = "pure Python" if is_pure(wheel.name) else ""


def sdist_sha256(job_tar: bytes) -> str | None:
    """The sha256 of the one sdist under job/src/ in the fetched job folder."""
    with tarfile.open(fileobj=io.BytesIO(job_tar)) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith("job/src/"):
                data = tar.extractfile(member)
                return hashlib.sha256(data.read()).hexdigest() if data else None
    return None


def is_pure(filename: str) -> bool:
    return all(t.platform == "any" for t in parse_wheel_filename(filename)[3])


def extract_wheels(tar_bytes: bytes, out_dir: Path) -> list[Path]:
    """Regular `*.whl` members only; each name is validated before a path is made."""
    out_dir.mkdir(parents=True, exist_ok=True)
    found = []
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for member in tar.getmembers():
            base = member.name.rsplit("/", 1)[-1]
            if not member.isfile() or not base.endswith(".whl"):
                continue
            target = out_dir / safe_wheel_name(base)
            source = tar.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
            found.append(target)
    return found


def safe_wheel_name(name: str) -> str:
    """The name itself if it is a valid wheel filename with no path in it."""
    if "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise UnsafeName(f"refusing wheel file name {name!r}: it contains a path")
    try:
        parse_wheel_filename(name)
    except InvalidWheelFilename as exc:
        raise UnsafeName(f"refusing {name!r}: not a valid wheel file name ({exc})") from None
    return name
