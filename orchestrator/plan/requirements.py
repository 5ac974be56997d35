"""Requirements and constraints files in pip's format → pinned requirements.

What pip accepts and a wheel cache can use: `name[extras]==1.0` and `===`
pins, markers, `-r`/`-c` includes (relative to the including file),
`--hash` options and line continuations. URL, VCS, editable and local-path
lines cannot be planned against an index: they are returned as
`unsupported` with their location, never dropped silently.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import (
    InvalidMarker,
    Marker,
    UndefinedComparison,
    UndefinedEnvironmentName,
    default_environment,
)
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name

from orchestrator.core.errors import RequirementsError
from orchestrator.core.files import read_bounded
from orchestrator.core.quoting import shown

MAX_FILE = 16 << 20  # bytes: OpenStack's 575 pins are 15 KiB
MAX_NAME = 200  # characters; PyPI's longest names are under 100

# pip's own options, with why a wheel-cache plan does not follow them: each is
# accepted and ignored with a notice (never an error, never silence).
_IGNORED_OPTIONS = {
    "-i": "the matrix's index.upstream is the index",
    "--index-url": "the matrix's index.upstream is the index",
    "--extra-index-url": "the matrix's index.upstream is the index",
    "--no-index": "the matrix's index.upstream is the index",
    "-f": "builds fetch from index.upstream only",
    "--find-links": "builds fetch from index.upstream only",
    "--trusted-host": "builder.pip.trusted_hosts in the matrix sets it",
    "--no-binary": "the plan decides what to build",
    "--only-binary": "the plan decides what to build",
    "--prefer-binary": "the plan decides what to build",
    "--pre": "pins name exact versions",
    "--use-feature": "not a planning option",
    "--config-settings": "not supported for builds yet",
    "--global-option": "not supported for builds",
    "--no-build-isolation": "builds always run isolated",
}
_OPTION = re.compile(r"^(--?[A-Za-z][A-Za-z-]*)(?:[=\s]|$)")
_UNSUPPORTED_PREFIX = (
    "-e",
    "--editable",
    "git+",
    "hg+",
    "svn+",
    "bzr+",
    "http://",
    "https://",
    "file:",
    "./",
    "../",
    "/",
)


@dataclass(frozen=True)
class Origin:
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Pin:
    """One requirement pinned to an exact version."""

    name: NormalizedName
    version: str
    marker: Marker | None
    extras: frozenset[str]
    source: Origin
    hashes: tuple[str, ...] = ()

    def applies(self, environment: dict[str, str]) -> bool:
        return self.marker is None or evaluate(self.marker, environment, self.source)


def evaluate(marker: Marker, environment: dict[str, str], source: Origin) -> bool:
    """The marker on one platform; one pip could not evaluate either is the file's fault."""
    try:
        return marker.evaluate(environment)
    except (UndefinedComparison, UndefinedEnvironmentName, InvalidMarker) as exc:
        raise RequirementsError(
            f"{source}: the marker {shown(str(marker))} cannot be evaluated: {str(exc)[:200]}",
            hint="compare versions with ==, <, >=...; `===` only fits version strings",
        ) from None


@dataclass(frozen=True)
class Unpinned:
    name: NormalizedName
    specifier: str
    marker: Marker | None
    source: Origin


@dataclass(frozen=True)
class Unsupported:
    text: str
    why: str
    source: Origin


@dataclass(frozen=True, kw_only=True)
class Requirements:
    """The requirement and constraint files, read: made once, by `read`."""

    pins: tuple[Pin, ...] = ()
    unpinned: tuple[Unpinned, ...] = ()
    unsupported: tuple[Unsupported, ...] = ()
    constraints: tuple[Pin, ...] = ()
    notices: tuple[str, ...] = ()  # options accepted but not followed
    require_hashes: bool = False  # --require-hashes: every pin must carry --hash


@dataclass(frozen=True)
class _Notice:
    text: str


class _RequireHashes:
    """A file said --require-hashes."""


# One thing a file's line said, and whether the file was read as constraints.
_Entry = tuple[Pin | Unpinned | Unsupported | _Notice | _RequireHashes, bool]


def decode(data: bytes) -> str:
    """As pip reads these files: a BOM decides (UTF-8, UTF-16, UTF-32), else UTF-8,
    else Latin-1 (requirement syntax is ASCII, so only comments can differ)."""
    for bom, encoding in (
        (b"\xef\xbb\xbf", "utf-8-sig"),
        (b"\xff\xfe\x00\x00", "utf-32"),
        (b"\x00\x00\xfe\xff", "utf-32"),
        (b"\xff\xfe", "utf-16"),
        (b"\xfe\xff", "utf-16"),
    ):
        if data.startswith(bom):
            return data.decode(encoding)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _logical_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Lines with comments removed and `\\` continuations joined, with line numbers."""
    try:
        text = decode(read_bounded(path, MAX_FILE))
    except OSError as exc:
        raise RequirementsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise RequirementsError(f"{path}: cannot decode ({exc.reason})") from None
    if "\0" in text:
        raise RequirementsError(f"{path}: contains a NUL byte; is it a requirements file?")
    start, buf = 0, ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if not buf:
            start = number
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            yield start, buf.strip()
        buf = ""
    if buf.strip():
        yield start, buf.strip()


def read(
    requirements: list[Path], constraints: list[Path], *, remote: frozenset[Path] = frozenset()
) -> Requirements:
    """Parse every file (following includes once each) into one `Requirements`. A file
    in `remote` was downloaded: it may not pull in a file of this host."""
    seen: set[Path] = set()
    files = [(p, False) for p in requirements] + [(p, True) for p in constraints]
    out = _collected(
        entry
        for path, as_constraint in files
        for entry in _entries(path, seen, as_constraint=as_constraint, remote=remote)
    )
    if out.require_hashes:
        for pin in out.pins:
            if not pin.hashes:
                raise RequirementsError(
                    f"{pin.source}: {pin.name}=={pin.version} has no --hash, and "
                    "--require-hashes is set",
                    hint="add --hash=sha256:... to it, as pip would require",
                )
    return out


def _collected(entries: Iterable[_Entry]) -> Requirements:
    found: dict[str, list[Any]] = {k: [] for k in ("pins", "unpinned", "unsupported")}
    found.update(constraints=[], notices=[])
    require_hashes = False
    for item, as_constraint in entries:
        if isinstance(item, Pin):
            found["constraints" if as_constraint else "pins"].append(item)
        elif isinstance(item, Unpinned):
            if not as_constraint:  # a constraint without a version constrains nothing
                found["unpinned"].append(item)
        elif isinstance(item, Unsupported):
            found["unsupported"].append(item)
        elif isinstance(item, _Notice):
            found["notices"].append(item.text)
        else:
            require_hashes = True
    return Requirements(**{k: tuple(v) for k, v in found.items()}, require_hashes=require_hashes)


def _entries(
    path: Path, seen: set[Path], *, as_constraint: bool, remote: frozenset[Path]
) -> Iterator[_Entry]:
    """What each line of `path` (and of the files it includes, each once) says."""
    key = path.resolve()
    if key in seen:
        return
    seen.add(key)
    if not path.exists():
        raise RequirementsError(f"{path}: file does not exist")
    for number, line in _logical_lines(path):
        source = Origin(str(path), number)
        include = re.match(r"^(-r|--requirement|-c|--constraint)(?:\s+|=)(.+)$", line)
        option = _OPTION.match(line)
        if include and path in remote:
            raise RequirementsError(
                f"{source}: a downloaded file includes {shown(include.group(2))}; refused",
                hint="a remote constraints file must stand alone: a path in it would be "
                "read from this host (pip resolves it against the URL)",
            )
        if include:
            target = path.parent / _unquote(include.group(2), source)
            nested_constraint = as_constraint or include.group(1) in ("-c", "--constraint")
            if not target.exists():
                raise RequirementsError(f"{source}: included file {target} does not exist")
            try:
                yield from _entries(target, seen, as_constraint=nested_constraint, remote=remote)
            except RequirementsError as exc:  # the chain of includes that led there
                raise RequirementsError(f"{exc.message} (included by {source})", exc.hint) from None
        elif line == "--require-hashes":
            yield _RequireHashes(), as_constraint
        elif option and option.group(1) in _IGNORED_OPTIONS:
            why = _IGNORED_OPTIONS[option.group(1)]
            yield _Notice(f"{source}: {option.group(1)} is ignored: {why}"), as_constraint
        elif line.startswith(_UNSUPPORTED_PREFIX) or " @ " in line:
            why = "editable" if line.startswith(("-e", "--editable")) else "URL or VCS"
            text = f"{why} requirements cannot be planned against an index"
            yield Unsupported(line, text, source), as_constraint
        elif line.startswith("-"):
            raise RequirementsError(f"{source}: unknown option {shown(line.split()[0])}")
        else:
            yield _parse_line(line, source), as_constraint


def _unquote(text: str, source: Origin) -> str:
    """An included path, possibly quoted (`-r "my reqs.txt"`)."""
    try:
        parts = shlex.split(text)
    except ValueError as exc:
        raise RequirementsError(f"{source}: cannot read the included path: {exc}") from None
    if len(parts) != 1:
        raise RequirementsError(f"{source}: expected one path after the option, got {shown(text)}")
    return parts[0]


def _parse_line(line: str, source: Origin) -> Pin | Unpinned:
    spec, hashes = _split_hashes(line, source)
    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        raise RequirementsError(
            f"{source}: not a valid requirement: {shown(spec)} ({str(exc)[:200]})"
        ) from None
    if req.url:
        raise RequirementsError(f"{source}: URL requirements are not supported: {shown(spec)}")
    name = canonicalize_name(req.name)
    if len(name) > MAX_NAME:
        raise RequirementsError(
            f"{source}: a project name of {len(name)} characters ({shown(name)}); "
            f"no index serves one over {MAX_NAME}"
        )
    if req.marker is not None:  # refused here, with its line, rather than mid-plan
        evaluate(req.marker, {k: str(v) for k, v in default_environment().items()}, source)
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return Pin(name, specs[0].version, req.marker, frozenset(req.extras), source, hashes)
    return Unpinned(name, str(req.specifier) or "(any)", req.marker, source)


def _split_hashes(line: str, source: Origin) -> tuple[str, tuple[str, ...]]:
    parts = re.split(r"\s+--hash[=\s]", line)
    hashes = tuple(h.strip() for h in parts[1:])
    for value in hashes:
        if not re.fullmatch(r"(sha256|sha384|sha512):[0-9a-f]+", value):
            raise RequirementsError(f"{source}: malformed --hash {shown(value)}")
    return parts[0].strip(), hashes
