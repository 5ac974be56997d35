"""What merge admits from a bundle: what the plan decided and the bundle can prove.

A bundle is the output of a machine we do not control (a fork's job, a runner
with a bad disk, a compromised one). Its manifest, written by that same runner,
only shows the files were not damaged on the way. Before anything of it is
stored, each record is held to what the merging side knows for itself:

- the job is one of the plan's build items, on one of the bundle's platforms (and
  of its part's items, for a part of a split shard);
- its wheel's file name is the job's project and version, its tags are ones the
  platform installs (derived from the matrix: arch, glibc, Python), and a build
  tag (a rebuild) is one the plan decided;
- the wheel is a zip whose METADATA says the same name and version (read as an
  untrusted zip: its size and what it inflates are bounded);
- its provenance names that wheel's sha256 and the builder image the bundle's
  images.json gives for its platform;
- its runtime record and smoke verdict have the store's shapes, and its smoke
  test passed (unless the matrix turns the smoke test off for it);
- a shared record names a pure wheel a built record of the night holds, and two
  bundles that give one pure wheel different bytes are both refused unless the
  merge says which one wins.

Anything else refuses the bundle (BadBundle, exit 2), naming it and the record.
What a compromised runner can still do is written in the README's security table.
"""

from __future__ import annotations

import email.parser
import json
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from packaging.tags import Tag
from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_wheel_filename,
)

from orchestrator.config.matrix import Platform
from orchestrator.core.errors import BadBundle
from orchestrator.core.quoting import shown
from orchestrator.jobs.records import WheelRecord, item_key
from orchestrator.model import Action, JobKind, JobStatus
from orchestrator.plan.decide import Decision
from orchestrator.plan.overrides import Overrides
from orchestrator.plan.shards import item_of
from orchestrator.plan.tags import derived_tags

MAX_WHEEL = 4 << 30  # what a wheel file may weigh on disk
MAX_METADATA = 4 << 20  # what its METADATA may inflate to
MAX_PROVENANCE = 16 << 20


@dataclass(frozen=True, kw_only=True)
class Shipped:
    """One verified bundle, as admission reads it."""

    where: Path
    platforms: tuple[str, ...]
    jobs: tuple[WheelRecord, ...]
    images: Mapping[str, Mapping[str, Any]]  # platform -> its entry of images.json
    wheel: Callable[[WheelRecord], Path]
    provenance: Callable[[WheelRecord], Path]
    items: frozenset[str] = frozenset()  # a split shard's part: its build items only


@dataclass(frozen=True, kw_only=True)
class Night:
    """What the merging side knows for itself: the plan and the matrix."""

    decisions: Sequence[Decision]
    platforms: Mapping[str, Platform]
    overrides: Overrides


def admit(shipped: Shipped, night: Night) -> None:
    """Every record of the bundle checked; BadBundle naming the first that fails."""
    planned = {
        item_key(d.platform, d.python, d.name, d.version): d
        for d in night.decisions
        if d.action.builds and d.platform in shipped.platforms
    }
    for job in shipped.jobs:
        if job.kind is not JobKind.WHEEL:
            continue  # build dependencies are never published
        decision = planned.get(item_key(job.platform, job.python, job.name, job.version))
        if decision is None:
            _refuse(shipped, job, "is not one of the plan's build items for its platforms")
        if shipped.items and item_of(decision) not in shipped.items:
            _refuse(shipped, job, "is a build item of another part of its shard")
        if job.status in (JobStatus.BUILT, JobStatus.SHARED) and job.wheel:
            _check_name_and_tags(shipped, job, decision, night.platforms[job.platform])
        if job.status is JobStatus.BUILT and job.wheel:
            _check_built(shipped, job, night)


def settle(bundles: Sequence[Shipped], *, prefer: Path | None = None) -> list[Shipped]:
    """The bundles with each wheel's bytes agreed on, whatever their order on the
    command line. Two bundles giving different bytes for one wheel (a pure one, or a
    platform's) are both refused; for a pure wheel `prefer` may name the one whose
    bytes serve the other's platforms too (the other's record becomes a shared one)."""
    winners: dict[str, str] = {}
    for (platform, name), by_sha in sorted(_built(bundles).items()):
        if len(by_sha) < 2:
            continue
        chosen = [sha for sha, where in by_sha.items() if _same(where, prefer)]
        if not chosen or platform:
            where = " and ".join(str(w) for w in sorted(by_sha.values()))
            what = f"{platform}'s wheel" if platform else "the pure wheel"
            raise BadBundle(
                f"{where}: give different bytes for {what} {shown(name)}; neither is merged",
                hint="rebuild one shard"
                + ("" if platform else ", or say which bundle's bytes win with --prefer BUNDLE"),
            )
        winners[name] = chosen[0]
    return [_shared_from(shipped, winners) for shipped in bundles]


def _same(where: Path, prefer: Path | None) -> bool:
    return prefer is not None and where.resolve() == prefer.resolve()


def _built(bundles: Sequence[Shipped]) -> dict[tuple[str, str], dict[str, Path]]:
    """Each wheel a built record holds, by (its platform, or "" for a pure wheel, which
    serves every platform), with its sha256s and the first bundle of each."""
    built: dict[tuple[str, str], dict[str, Path]] = {}
    for shipped in bundles:
        for job in shipped.jobs:
            if job.status is JobStatus.BUILT and job.wheel and job.sha256:
                key = ("" if _pure(job.wheel) else job.platform, job.wheel)
                built.setdefault(key, {}).setdefault(str(job.sha256), shipped.where)
    return built


def _shared_from(shipped: Shipped, winners: Mapping[str, str]) -> Shipped:
    """A bundle whose built records that lost a conflict now share the winner's wheel."""
    return replace(shipped, jobs=tuple(_lost_to(job, winners) for job in shipped.jobs))


def _lost_to(job: WheelRecord, winners: Mapping[str, str]) -> WheelRecord:
    won = winners.get(job.wheel or "")
    if job.status is not JobStatus.BUILT or won is None or job.sha256 == won:
        return job
    return replace(job, status=JobStatus.SHARED, sha256=won)


def _pure(wheel: str) -> bool:
    return all(t.platform == "any" for t in _tags(wheel))


def check_shared(bundles: Sequence[Shipped]) -> None:
    """A shared record names a pure wheel that a built record of the night holds, with
    the same bytes (after `settle`)."""
    built: dict[str, set[str]] = {}
    for shipped in bundles:
        for job in shipped.jobs:
            if job.status is JobStatus.BUILT and job.wheel and job.sha256:
                built.setdefault(job.wheel, set()).add(str(job.sha256))
    for shipped in bundles:
        for job in shipped.jobs:
            if job.status is JobStatus.SHARED and job.wheel:
                if str(job.sha256) not in built.get(job.wheel, set()):
                    _refuse(
                        shipped,
                        job,
                        f"shares {shown(job.wheel)}, which no built record "
                        "of the night holds with those bytes",
                    )
                if not _pure(job.wheel):
                    _refuse(shipped, job, f"shares {shown(job.wheel)}, which is not pure")


def _check_name_and_tags(
    shipped: Shipped, job: WheelRecord, decision: Decision, platform: Platform
) -> None:
    wheel = str(job.wheel)
    try:
        name, version, build, tags = parse_wheel_filename(wheel)
    except InvalidWheelFilename:
        _refuse(shipped, job, f"names {shown(wheel)}, which is not a wheel file name")
    if name != canonicalize_name(job.name) or canonicalize_version(version) != (
        canonicalize_version(job.version)
    ):
        _refuse(shipped, job, f"has the wheel {shown(wheel)}, which is not its pin")
    accepted = set(derived_tags(job.python, platform.arch, platform.glibc))
    foreign = [
        t
        for t in tags
        if t.platform != "any" and not t.platform.endswith(f"_{platform.arch.machine}")
    ]
    if foreign or not accepted & set(tags):
        _refuse(
            shipped,
            job,
            f"has the wheel {shown(wheel)}, whose tags {platform.name} with "
            f"Python {job.python} does not install",
        )
    if build and decision.action is not Action.REBUILD:
        _refuse(
            shipped,
            job,
            f"has the build-tagged wheel {shown(wheel)}, but the plan decided no rebuild",
        )


def _check_built(shipped: Shipped, job: WheelRecord, night: Night) -> None:
    _check_metadata(shipped, job)
    _check_provenance(shipped, job)
    if job.runtime is not None and not _runtime_shape(job.runtime):
        _refuse(shipped, job, "has a runtime record of another shape than the store keeps")
    platform = night.platforms[job.platform]
    smoke_on = night.overrides.extras(platform, job.name, job.version).smoke
    if job.smoke is None and smoke_on:
        _refuse(shipped, job, "was built without the smoke test the matrix asks for")
    if job.smoke is not None and job.smoke.get("passed") is not True:
        _refuse(shipped, job, "is recorded as built, but its smoke test did not pass")


def _check_metadata(shipped: Shipped, job: WheelRecord) -> None:
    """The wheel opened as an untrusted zip: its METADATA names the same project and
    version as its file name."""
    path, wheel = shipped.wheel(job), str(job.wheel)
    name, version = parse_wheel_filename(wheel)[:2]
    try:
        if path.stat().st_size > MAX_WHEEL:
            _refuse(shipped, job, f"has a wheel over {MAX_WHEEL >> 30} GiB")
        with zipfile.ZipFile(path) as archive:
            text = _metadata_text(archive, "-".join(wheel.split("-", 2)[:2]))
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        _refuse(shipped, job, f"has a wheel that is not a readable zip ({shown(str(exc), 200)})")
    if text is None:
        _refuse(
            shipped, job, f"has a wheel with no readable METADATA under {MAX_METADATA >> 20} MiB"
        )
    headers = email.parser.HeaderParser().parsestr(text)
    said = (canonicalize_name(headers.get("Name", "")), headers.get("Version", ""))
    if said[0] != name or canonicalize_version(said[1] or "x") != canonicalize_version(version):
        _refuse(
            shipped,
            job,
            f"has a wheel whose METADATA says {shown(' '.join(said))}, not its file name",
        )


def _metadata_text(archive: zipfile.ZipFile, dist: str) -> str | None:
    wanted = f"{dist}.dist-info/METADATA".lower()
    entries = [i for i in archive.infolist() if i.filename.lower() == wanted]
    if len(entries) != 1 or entries[0].file_size > MAX_METADATA:
        return None
    with archive.open(entries[0]) as handle:
        data = handle.read(MAX_METADATA + 1)  # the header's size may lie: read no more
    if len(data) > MAX_METADATA:
        return None
    return data.decode("utf-8", errors="replace")


def _check_provenance(shipped: Shipped, job: WheelRecord) -> None:
    """The statement names this wheel's sha256, and the builder image that the
    bundle's images.json gives for the platform."""
    path = shipped.provenance(job)
    try:
        with path.open("rb") as handle:
            data = json.loads(handle.read(MAX_PROVENANCE))
        subject = data["subject"][0]
        dependencies = data["predicate"]["buildDefinition"]["resolvedDependencies"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        _refuse(shipped, job, "has no readable provenance statement")
    if _at(subject, "digest", "sha256") != job.sha256 or _at(subject, "name") != job.wheel:
        _refuse(shipped, job, "has a provenance statement for another wheel")
    found = [d for d in dependencies if isinstance(d, dict) and d.get("name") == "builder"]
    builder: dict[str, Any] = found[0] if found and isinstance(dependencies, list) else {}
    if not _same_builder(builder, shipped.images.get(job.platform, {})):
        _refuse(
            shipped,
            job,
            "names a builder image its bundle's images.json does not give for its platform",
        )


def _same_builder(builder: Mapping[str, Any], image: Mapping[str, Any]) -> bool:
    """The statement's builder is the platform's image: by its registry digest when the
    image was pushed (the same on every engine), else by its image ID."""
    pull = str(image.get("pull_ref") or "")
    if "@sha256:" in pull:
        digest = _at(builder, "digest", "sha256")
        return bool(digest) and digest == pull.rpartition("@sha256:")[2]
    named = _at(builder, "annotations", "image_id")
    return bool(named) and named == image.get("image_id")


def _at(data: object, *keys: str) -> object:
    """`data[k1][k2]...` of untrusted JSON: None where a level is missing or no mapping."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


RUNTIME_LISTS = ("libraries", "unresolved", "extensions", "top_level", "job_packages", "notes")


def _runtime_shape(runtime: Mapping[str, Any]) -> bool:
    """The shape `trust.runtime.Runtime.as_dict` writes and the plan's ABI check reads."""
    lists = all(isinstance(runtime.get(k, []), list) for k in RUNTIME_LISTS)
    libraries = runtime.get("libraries", [])
    return (
        lists
        and isinstance(runtime.get("packages", {}), dict)
        and all(isinstance(x, dict) for x in libraries)
        and isinstance(runtime.get("python", ""), str)
        and isinstance(runtime.get("glibc", ""), str)
    )


def _tags(wheel: str) -> frozenset[Tag]:
    try:
        return parse_wheel_filename(wheel)[3]
    except InvalidWheelFilename:
        return frozenset()


def _refuse(shipped: Shipped, job: WheelRecord, why: str) -> NoReturn:
    raise BadBundle(
        f"{shipped.where}: job {shown(job.job)} {why}; nothing was merged",
        hint="take the bundle from its CI run again, or rebuild that shard",
    )
