"""A shard's bundle: what one CI runner built, as a plain folder its CI carries.

    bundle.json                         the manifest: format, shard, platforms, the
                                        plan's identity, the matrix's sha256, the run,
                                        and every other file's sha256 and size
    plan.json                           the plan the shard built from
    report.json                         the shard's report (jobs, images, stages)
    images.json                         the builders it used (IDs, digests, pull refs)
    wheels/<platform>/<wheel>           each wheel it built
    provenance/<platform>/<wheel>.intoto.json   each wheel's provenance statement
    runtime/<platform>/<wheel>.json     what each wheel needs at run time
    logs/<job>.log                      each job's log

A bundle is written under a temporary name and renamed: its folder is whole or
absent. It is verified on its own, before any of it is used: every file listed with
its sha256 and size, nothing unlisted, no link, no path that leaves the folder, the
report of the published schema, each built wheel the bytes its job recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.config import Matrix
from orchestrator.config.matrix import expand
from orchestrator.core.errors import BadBundle, OrchestrateError, TamperedBundle
from orchestrator.core.files import read_bounded, sha256_file, write_atomic
from orchestrator.core.quoting import shown
from orchestrator.core.wheelnames import safe_wheel_name
from orchestrator.jobs.records import WheelRecord
from orchestrator.model import JobStatus
from orchestrator.plan.planfile import PlanFile, load_plan
from orchestrator.publish.provenance import statement
from orchestrator.report.data import checked_item, checked_job, load_report

FORMAT = "orchestrate-bundle-1"
MANIFEST = "bundle.json"
MAX_MANIFEST = 64 << 20
# A listed path: relative, plain parts only (no `..`, no empty or hidden part).
RELATIVE = re.compile(
    r"(?:[A-Za-z0-9_+=-][A-Za-z0-9._+=-]{0,254}/){0,3}"
    r"[A-Za-z0-9_+=-][A-Za-z0-9._+=-]{0,254}"
)
SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, kw_only=True)
class Bundle:
    """A verified bundle: its manifest's facts, its plan, its report and jobs."""

    path: Path
    shard: str
    platforms: tuple[str, ...]
    run_id: str
    created: str
    digest: str  # the manifest's sha256: one bundle given twice is merged once
    plan: PlanFile
    report: Mapping[str, Any]
    jobs: tuple[WheelRecord, ...]

    def wheel(self, job: WheelRecord) -> Path:
        return self.path / "wheels" / job.platform / str(job.wheel)

    def provenance(self, job: WheelRecord) -> Path:
        return self.path / "provenance" / job.platform / f"{job.wheel}.intoto.json"

    def log(self, job: WheelRecord) -> Path:
        return self.path / "logs" / f"{_part(job.job)}.log"


def _part(job_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=-]", "_", job_id)[:200]


# -- writing -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BundleContents:
    shard: str
    plan: PlanFile
    report: Mapping[str, Any]
    jobs: Sequence[WheelRecord]
    wheel_dir: Mapping[str, Path]  # job ID -> the folder its wheel was written to


def check_target(target: Path) -> None:
    """A bundle's folder must be new or empty: a bundle is never written into."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BadBundle(
            f"{target}: the bundle folder exists and is not empty",
            hint="pass a new folder to --bundle; a bundle is written whole",
        )


def write_bundle(target: Path, contents: BundleContents) -> Path:
    """The bundle at `target`, whole or not at all: written beside it, then renamed."""
    check_target(target)
    staging = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        files = _write_files(staging, contents)
        write_atomic(staging / MANIFEST, json.dumps(_manifest(contents, files), indent=1))
        if target.exists():
            target.rmdir()
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_files(root: Path, contents: BundleContents) -> dict[str, dict[str, object]]:
    files: dict[str, bytes | Path] = {
        "plan.json": json.dumps(contents.plan.as_dict(), indent=1).encode(),
        "report.json": json.dumps(contents.report, indent=1, default=str).encode(),
        "images.json": json.dumps(contents.report.get("images", []), indent=1).encode(),
    }
    for job in contents.jobs:
        if job.log and Path(job.log).is_file():
            files[f"logs/{_part(job.job)}.log"] = Path(job.log)
        if job.status is not JobStatus.BUILT or not job.wheel or not job.sha256:
            continue
        name, folder = safe_wheel_name(job.wheel), f"{job.platform}"
        files[f"wheels/{folder}/{name}"] = contents.wheel_dir[job.job] / name
        files[f"provenance/{folder}/{name}.intoto.json"] = statement(job, name, job.sha256)
        files[f"runtime/{folder}/{name}.json"] = json.dumps(job.runtime, indent=1).encode()
    listed: dict[str, dict[str, object]] = {}
    for relative, data in sorted(files.items()):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, Path):
            shutil.copyfile(data, path)
        else:
            path.write_bytes(data)
        listed[relative] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    return listed


def _manifest(contents: BundleContents, files: Mapping[str, object]) -> dict[str, object]:
    return {
        "format": FORMAT,
        "shard": contents.shard,
        "platforms": list(contents.report.get("platforms", [])),
        "plan": contents.plan.identity,
        "matrix": contents.plan.matrix,
        "run_id": contents.report.get("run_id", ""),
        "created": contents.report.get("finished", ""),
        "files": dict(files),
    }


# -- reading and verifying -----------------------------------------------------


def open_bundle(path: Path, *, matrix: Matrix) -> Bundle:
    """A bundle, verified on its own and against `matrix`; BadBundle (exit 2) or
    TamperedBundle (exit 4), naming the bundle and the file, otherwise."""
    raw = _read_manifest(path)
    manifest = _checked_manifest(raw, path)
    _check_files(path, manifest["files"])
    plan = load_plan(path / "plan.json", what="bundle's plan")
    _check_plan(path, manifest, plan, matrix)
    report = load_report(path / "report.json")
    for image in report["images"]:  # read back into values by the merge
        checked_item(image, "images", path / "report.json")
    jobs = tuple(
        WheelRecord.from_dict(checked_job(j, path / "report.json")) for j in report["jobs"]
    )
    strangers = sorted({j.platform for j in jobs} - set(manifest["platforms"]))
    if strangers:
        raise BadBundle(
            f"{path / 'report.json'}: has jobs of {', '.join(map(shown, strangers))}, "
            "which are not the bundle's platforms"
        )
    _check_wheels(path, manifest["files"], jobs)
    return Bundle(
        path=path,
        shard=manifest["shard"],
        platforms=tuple(manifest["platforms"]),
        run_id=manifest["run_id"],
        created=manifest["created"],
        digest=hashlib.sha256(raw).hexdigest(),
        plan=plan,
        report=report,
        jobs=jobs,
    )


def _read_manifest(path: Path) -> bytes:
    if path.is_symlink() or not path.is_dir():
        raise BadBundle(f"{path}: not a bundle folder (a file, a link, or missing)")
    try:
        return read_bounded(path / MANIFEST, MAX_MANIFEST)
    except FileNotFoundError:
        raise BadBundle(
            f"{path}: has no {MANIFEST} (not a bundle, or cut short before it was written)"
        ) from None
    except OSError as exc:
        raise BadBundle(f"{path / MANIFEST}: cannot read it: {exc.strerror or exc}") from None


def _checked_manifest(raw: bytes, path: Path) -> dict[str, Any]:
    where = path / MANIFEST
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadBundle(f"{where}: not JSON (cut short?): {shown(str(exc), 200)}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BadBundle(f"{where}: not a bundle manifest of format {FORMAT}")
    texts = ("shard", "plan", "matrix", "run_id", "created")
    if not all(isinstance(data.get(k), str) for k in texts):
        raise BadBundle(f"{where}: its {', '.join(texts)} must be text")
    platforms, files = data.get("platforms"), data.get("files")
    if not isinstance(platforms, list) or not all(isinstance(p, str) for p in platforms):
        raise BadBundle(f"{where}: its platforms must be a list of names")
    if not isinstance(files, dict):
        raise BadBundle(f"{where}: its files must be a mapping of path to sha256 and size")
    for name, facts in files.items():
        _check_entry(where, name, facts)
    return data


def _check_entry(where: Path, name: str, facts: object) -> None:
    if not RELATIVE.fullmatch(name) or any(p in (".", "..") for p in name.split("/")):
        raise BadBundle(
            f"{where}: lists a path that leaves the bundle or is not plain: {shown(name, 200)}"
        )
    sha = facts.get("sha256") if isinstance(facts, dict) else None
    size = facts.get("size") if isinstance(facts, dict) else None
    if not isinstance(sha, str) or not SHA256.fullmatch(sha) or type(size) is not int:
        raise BadBundle(f"{where}: {shown(name, 200)} has no sha256 and size")


def _check_files(root: Path, files: Mapping[str, Mapping[str, Any]]) -> None:
    """Every listed file there, a regular file of its size and sha256; nothing else
    there but the manifest; no link anywhere."""
    found = set()
    for folder, dirs, names in os.walk(root):
        for name in [*dirs, *names]:
            path = Path(folder) / name
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                raise BadBundle(
                    f"{root}: holds a link {shown(relative, 200)}, which a bundle never has"
                )
            if name in names and relative != MANIFEST:
                found.add(relative)
    for relative in sorted(found - set(files)):
        raise TamperedBundle(
            f"{root}: holds {shown(relative, 200)}, which its manifest does not list"
        )
    for relative, facts in sorted(files.items()):
        path = root / relative
        if relative not in found:
            raise BadBundle(f"{root}: {relative} is listed but missing (a truncated bundle)")
        if path.stat().st_size != facts["size"] or _sha256(root, relative) != facts["sha256"]:
            raise TamperedBundle(
                f"{root}: {relative} does not match the sha256 its manifest lists "
                "(edited or damaged on the way)",
                hint="take the bundle from its CI run again; nothing was merged",
            )


def _sha256(root: Path, relative: str) -> str:
    """A listed file's sha256; a FIFO or a device (which would block the read) or a
    file that cannot be read refuses the bundle."""
    path = root / relative
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            raise BadBundle(f"{root}: {relative} is not a regular file (a FIFO, device or socket)")
        return sha256_file(path)
    except OSError as exc:
        raise BadBundle(f"{root}: {relative}: cannot read it ({exc.strerror or exc})") from None


def _check_plan(root: Path, manifest: Mapping[str, Any], plan: PlanFile, matrix: Matrix) -> None:
    if plan.identity != manifest["plan"]:
        raise TamperedBundle(
            f"{root}: plan.json is plan {plan.identity[:16]}, the manifest "
            f"names {manifest['plan'][:16]}"
        )
    if plan.matrix != matrix.digest or manifest["matrix"] != matrix.digest:
        raise BadBundle(
            f"{root}: built from another matrix (sha256 {plan.matrix[:12]}; "
            f"{matrix.source.name} is {matrix.digest[:12]})",
            hint="merge with the matrix the shards were built with",
        )
    known = {p.name for p in expand(matrix)}
    strangers = [p for p in manifest["platforms"] if p not in known or p not in plan.platforms]
    if strangers:
        raise BadBundle(
            f"{root}: its platforms {', '.join(map(shown, strangers))} are not "
            "the matrix's or the plan's"
        )


def _check_wheels(
    root: Path, files: Mapping[str, Mapping[str, Any]], jobs: Sequence[WheelRecord]
) -> None:
    for job in jobs:
        if job.status is not JobStatus.BUILT or not job.wheel:
            continue
        try:
            name = safe_wheel_name(job.wheel)
        except OrchestrateError as exc:
            raise BadBundle(f"{root}: job {shown(job.job)} names no wheel ({exc})") from None
        relative = f"wheels/{job.platform}/{name}"
        if files.get(relative, {}).get("sha256") != job.sha256:
            raise TamperedBundle(
                f"{root}: {relative} is not the file job {shown(job.job)} "
                "built (its sha256 differs from the job's record)"
            )
