"""The wheel store: every wheel we built, once, with a manifest of where it came from.

Layout under the index root:

    store/<platform>/<wheel>            platform wheels
    store/any/<wheel>                   pure-Python wheels, stored once
    store/<dir>/<wheel>.metadata        its core metadata (PEP 658), extracted once
    store/<dir>/<wheel>.intoto.json     its provenance: an in-toto statement
    store/manifest.json                 one record per wheel (sha256, size, source,
                                        build time, builder image, job, platforms,
                                        runtime packages, smoke test)

Adding a wheel whose name is taken: identical bytes do nothing (the platform
is added to the record); different bytes keep the published one and report
a reproducibility mismatch, unless replace is asked for. A *rebuild* (the
plan found the builder's runtime libraries or Python moved) whose bytes
differ gets the next PEP 427 build tag (`name-1.0-1-cp311-...`), so no file
name ever stands for two different files; the older file stays listed and
pip prefers the higher build tag. Every file is
written to a temporary name, fsync'd and renamed, and the manifest last, so
a crash at any point leaves the store consistent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.parser
import fcntl
import hashlib
import json
import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from packaging.utils import (
    canonicalize_name,
    canonicalize_version,
    parse_wheel_filename,
)

from orchestrator.core.errors import InputError, StoreConflict, UnsafeName
from orchestrator.core.files import fsync_dir, sha256_file, write_atomic
from orchestrator.core.quoting import shown
from orchestrator.core.wheelnames import is_pure, safe_wheel_name
from orchestrator.model import StoreStatus

SHARED = "any"
ATTESTATION = ".intoto.json"  # beside each wheel: its in-toto provenance statement


@dataclass(frozen=True, kw_only=True)
class StoredWheel:
    filename: str
    folder: str  # platform name or "any"
    sha256: str
    size: int
    metadata_sha256: str
    requires_python: str | None
    platforms: tuple[str, ...] = ()
    source_sha256: str | None = None
    built_at: str = ""
    image: str = ""
    job: str = ""
    runtime: dict[str, object] | None = None  # runtime.Runtime.as_dict()
    smoke: dict[str, object] | None = None  # the smoke test's verdict, packages, checks
    attestation: str = ""  # the provenance statement's file name, beside the wheel
    rebuild: str = ""  # why the plan rebuilt it (what moved), for a build-tagged file

    @property
    def build(self) -> int:
        """Its PEP 427 build number (0 without one)."""
        tag = parse_wheel_filename(self.filename)[2]
        return tag[0] if tag else 0

    @property
    def runtime_packages(self) -> dict[str, str]:
        packages = (self.runtime or {}).get("packages")
        return {str(k): str(v) for k, v in packages.items()} if isinstance(packages, dict) else {}

    @property
    def project(self) -> str:
        return canonicalize_name(parse_wheel_filename(self.filename)[0])

    @property
    def version(self) -> str:
        return canonicalize_version(parse_wheel_filename(self.filename)[1])


# platform → (project, version) → the stored record pip would pick
Newest = dict[str, dict[tuple[str, str], StoredWheel]]


@dataclass(kw_only=True, frozen=True)
class Provenance:
    source_sha256: str | None = None
    built_at: str = ""
    image: str = ""
    job: str = ""
    runtime: dict[str, object] | None = None
    smoke: dict[str, object] | None = None
    rebuild: str = ""  # the plan's reason, when it rebuilt a cached wheel
    # The in-toto statement for the file as published: (file name, sha256) -> JSON.
    statement: Callable[[str, str], bytes] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class AddResult:
    filename: str
    outcome: StoreStatus
    published_sha256: str
    new_sha256: str


FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
SHA256 = re.compile(r"[0-9a-f]{64}")


def record_problem(key: object, record: StoredWheel) -> str:
    """Why a manifest record cannot be used as it is ("" when it can): the store is a
    folder on disk, and a hand or another process may have edited its manifest."""
    name, folder = record.filename, record.folder
    if not isinstance(name, str) or not isinstance(folder, str):
        return "has a file name or folder that is not text"
    try:
        safe_wheel_name(name)
    except UnsafeName as exc:
        return f"names no wheel file of ours ({exc.message})"
    if not FOLDER.fullmatch(folder) or key != f"{folder}/{name}":
        return f"points outside the store (folder {shown(folder)})"
    if not isinstance(record.sha256, str) or not SHA256.fullmatch(record.sha256):
        return "has no sha256"
    if not isinstance(record.size, int) or not isinstance(record.platforms, tuple):
        return "has a size or platform list of the wrong type"
    if not isinstance(record.metadata_sha256, str) or not SHA256.fullmatch(record.metadata_sha256):
        return "has no metadata sha256"
    if record.attestation not in ("", f"{name}{ATTESTATION}"):
        return f"names a provenance file {shown(str(record.attestation))} not beside its wheel"
    return ""


def core_metadata(wheel: Path) -> bytes:
    """The METADATA file of a wheel's .dist-info folder."""
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            parts = name.split("/")
            if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA":
                return archive.read(name)
    raise ValueError(f"{wheel.name} has no .dist-info/METADATA")


class Store:
    def __init__(self, root: Path) -> None:
        if "\0" in str(root) or (root.exists() and not root.is_dir()):
            raise InputError(
                f"index.root {shown(str(root), 300)} is not a folder (a file, or a NUL byte)",
                hint="point index.root in the matrix at a folder",
            )
        self.root = root
        self.dir = root / "store"
        self.manifest_path = self.dir / "manifest.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, StoredWheel]]:
        """Exclusive access (across processes) to the records; saved on success."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self.manifest_path.exists() and not any(self.dir.glob("*/*.whl")):
                # A new store's manifest comes first, empty: a writer killed after
                # its first wheel leaves an orphan file, not a store that looks lost.
                self._save({})
            records = self.records()
            yield records
            self._save(records)

    def records(self) -> dict[str, StoredWheel]:
        """The manifest's records; {} only when the store has never held a wheel.
        A missing manifest beside stored wheels, or an empty, truncated or corrupt
        one, is refused: publishing it would wipe the index."""
        try:
            raw = json.loads(self.manifest_path.read_bytes())
            known = {f.name for f in fields(StoredWheel)}
            # A newer orchestrate's fields are dropped, not fatal: the store stays usable.
            records = {
                key: StoredWheel(**{k: _field(k, v) for k, v in value.items() if k in known})
                for key, value in raw["wheels"].items()
            }
        except FileNotFoundError:
            if any(self.dir.glob("*/*.whl")):
                raise self._unusable("is missing, but the store holds wheels") from None
            return {}
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise self._unusable(f"is unreadable ({type(exc).__name__}: {exc})") from None
        for key, record in records.items():
            problem = record_problem(key, record)
            if problem:
                raise self._unusable(f"has a record {shown(key)} that {problem}")
        return records

    def _unusable(self, why: str) -> StoreConflict:
        return StoreConflict(
            f"{self.manifest_path} {why}; refusing to publish from it",
            hint="restore it from a backup; the published index is left as it is",
        )

    def _save(self, records: dict[str, StoredWheel]) -> None:
        data = {"format": 1, "wheels": {k: asdict(v) for k, v in sorted(records.items())}}
        write_atomic(self.manifest_path, json.dumps(data, indent=1).encode())
        fsync_dir(self.dir)

    def path_of(self, record: StoredWheel) -> Path:
        return self.dir / record.folder / record.filename

    def add(
        self,
        records: dict[str, StoredWheel],
        wheel: Path,
        platforms: list[str],
        provenance: Provenance,
        *,
        replace: bool = False,
    ) -> AddResult:
        """Add a built wheel for `platforms` (a pure wheel may serve several)."""
        name = safe_wheel_name(wheel.name)
        folder = SHARED if is_pure(name) else platforms[0]
        new_sha = sha256_file(wheel)
        if provenance.rebuild and not replace:
            latest = self.latest_variant(records, folder, name)
            if latest is not None:  # the same bytes keep their name; new bytes, a new one
                same = latest.sha256 == new_sha
                name = latest.filename if same else with_build_tag(name, latest.build + 1)
        key = f"{folder}/{name}"
        existing = records.get(key)
        if existing is not None:
            if existing.sha256 == new_sha:
                records[key] = _refreshed(existing, platforms, provenance)
                return AddResult(name, StoreStatus.IDENTICAL, existing.sha256, new_sha)
            if not replace:
                # Not listed for these platforms: their builder made other bytes. The
                # next run builds them again and reports it again, until --replace.
                return AddResult(name, StoreStatus.MISMATCH, existing.sha256, new_sha)
        written = self._write(wheel, folder, name, new_sha, provenance=provenance)
        listed = tuple(sorted(set(platforms) | set(existing.platforms if existing else ())))
        records[key] = dataclasses.replace(written, platforms=listed)
        outcome = (
            StoreStatus.REPLACED
            if existing
            else StoreStatus.REBUILT
            if name != wheel.name
            else StoreStatus.ADDED
        )
        return AddResult(name, outcome, existing.sha256 if existing else new_sha, new_sha)

    def _write(
        self, wheel: Path, folder: str, name: str, sha: str, *, provenance: Provenance
    ) -> StoredWheel:
        """The wheel (under `name`), its metadata and its statement, each written
        atomically; the record that names them."""
        target_dir = self.dir / folder
        target_dir.mkdir(parents=True, exist_ok=True)
        metadata = core_metadata(wheel)
        write_atomic(target_dir / f"{name}.metadata", metadata)
        attestation = ""
        if provenance.statement is not None:
            attestation = f"{name}{ATTESTATION}"
            write_atomic(target_dir / attestation, provenance.statement(name, sha))
        write_atomic(target_dir / name, wheel.read_bytes())
        fsync_dir(target_dir)
        parsed = email.parser.BytesParser().parsebytes(metadata, headersonly=True)
        return StoredWheel(
            filename=name,
            folder=folder,
            sha256=sha,
            size=wheel.stat().st_size,
            metadata_sha256=hashlib.sha256(metadata).hexdigest(),
            requires_python=parsed.get("Requires-Python"),
            source_sha256=provenance.source_sha256,
            built_at=provenance.built_at,
            image=provenance.image,
            job=provenance.job,
            runtime=provenance.runtime,
            smoke=provenance.smoke,
            attestation=attestation,
            rebuild=provenance.rebuild,
        )

    @staticmethod
    def latest_variant(
        records: dict[str, StoredWheel], folder: str, name: str
    ) -> StoredWheel | None:
        """The stored file with the highest build tag among those that differ from
        `name` in their build tag only."""
        same = _without_build(name)
        found = [
            r for r in records.values() if r.folder == folder and _without_build(r.filename) == same
        ]
        return max(found, key=lambda r: r.build) if found else None

    def remove_platform(self, records: dict[str, StoredWheel], key: str, platform: str) -> bool:
        """Stop listing a wheel for `platform`; delete it when no platform is left."""
        record = records[key]
        left = tuple(p for p in record.platforms if p != platform)
        if left:
            records[key] = dataclasses.replace(record, platforms=left)
            return False
        del records[key]
        # Published releases hold their own hard links: readers keep their file.
        for path in (
            self.path_of(record),
            self.path_of(record).with_name(record.filename + ".metadata"),
            self.path_of(record).with_name(record.filename + ATTESTATION),
        ):
            path.unlink(missing_ok=True)
        return True

    def for_platform(self, platform: str) -> list[StoredWheel]:
        return [r for r in self.records().values() if platform in r.platforms]

    def contents(self, platforms: list[str]) -> dict[str, dict[tuple[str, str], str]]:
        """What the planner needs: (project, version) → wheel, per platform; of files
        that differ in their build tag only, the highest (the one pip picks)."""
        return {
            p: {k: r.filename for k, r in found.items()}
            for p, found in self.newest(platforms).items()
        }

    def newest(self, platforms: list[str]) -> Newest:
        """Per platform, (project, version) → the record with the highest build tag."""
        out: Newest = {p: {} for p in platforms}
        for record in self.records().values():
            for platform in record.platforms:
                have = out.get(platform, {}).get((record.project, record.version))
                if platform in out and (have is None or have.build < record.build):
                    out[platform][(record.project, record.version)] = record
        return out


def with_build_tag(filename: str, build: int) -> str:
    """`name-1.0-cp311-...whl` as `name-1.0-<build>-cp311-...whl` (PEP 427). Only the
    file name carries it: the bytes (and so the sha256 the job recorded) stay as built."""
    parts = filename[: -len(".whl")].split("-")
    head = parts[:2]
    tags = parts[-3:]
    return "-".join([*head, str(build), *tags]) + ".whl"


def _without_build(filename: str) -> tuple[str, str, frozenset[object]]:
    name, version, _build, tags = parse_wheel_filename(filename)
    return str(name), str(version), frozenset(tags)


def _field(name: str, value: Any) -> Any:
    """A manifest's JSON value as the record holds it: its platforms as a tuple."""
    return tuple(value) if name == "platforms" and isinstance(value, list) else value


def _refreshed(
    record: StoredWheel, platforms: Sequence[str], provenance: Provenance
) -> StoredWheel:
    """The same bytes built again: listed for these platforms too, and what we know
    of them now (runtime, smoke) wins."""
    listed = (*record.platforms, *(p for p in platforms if p not in record.platforms))
    return dataclasses.replace(
        record,
        platforms=listed,
        runtime=provenance.runtime if provenance.runtime is not None else record.runtime,
        smoke=provenance.smoke if provenance.smoke is not None else record.smoke,
    )
