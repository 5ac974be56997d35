"""Load a matrix file: YAML → frozen `Matrix`, or a `ConfigError` at file:line.

PyYAML's node tree keeps a mark (line, column) for every key and value, so
we compose the nodes once, build plain data from them, validate that with
pydantic, and map each validation error's location back to a node.
"""

from __future__ import annotations

import fnmatch
import hashlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.config.bindep import BindepError, parse_bindep
from orchestrator.config.messages import Loc, Marks, convert, dotted, line_of
from orchestrator.config.overrides import OverrideSpec
from orchestrator.config.schema import (
    BranchSpec,
    BuilderSpec,
    Matrix,
)
from orchestrator.core.errors import ConfigError
from orchestrator.core.files import read_bounded

MAX_BYTES = 1 << 20  # a matrix is a few KiB; a bigger file is a mistake or an attack
MAX_NODES = 100_000  # after alias expansion ("billion laughs" stops here, quickly)
MAX_DEPTH = 64


def load_matrix(path: Path) -> Matrix:
    """Read and validate one matrix file; every failure is a ConfigError."""
    text = _read(path)
    data, marks = _compose(text, str(path))
    if not isinstance(data, dict) or not data:
        raise ConfigError(
            "the matrix is empty" if not data else "the matrix must be a mapping of keys",
            path=str(path),
            line=1,
            hint="see the matrix reference in the README, or examples/local.yaml",
        )
    try:
        matrix = Matrix.model_validate(data)
    except ValidationError as exc:
        raise convert(exc, data, marks, str(path)) from None
    digest = hashlib.sha256(text.encode()).hexdigest()
    located = matrix.model_copy(update={"source": path.resolve(), "digest": digest})
    return _resolve_paths(located, marks, path)


def _read(path: Path) -> str:
    try:
        text = read_bounded(path, MAX_BYTES).decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(
            "file does not exist", path=str(path), hint="pass --matrix with an existing file"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read the file: {exc.strerror or exc}",
            path=str(path),
            hint="a matrix is a regular YAML file of a few KiB",
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read the file: {exc}", path=str(path)) from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise ConfigError("the file contains a NUL byte", path=str(path), line=line)
    return text


def _compose(text: str, name: str) -> tuple[Any, Marks]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:  # PyYAML's composer recurses once per level of nesting
        raise ConfigError(
            f"the file is nested too deep (a matrix needs fewer than {MAX_DEPTH} levels)",
            path=name,
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"YAML syntax error: {exc.problem}", path=name, line=line) from None
    except yaml.YAMLError as exc:  # e.g. a character YAML does not allow
        raise ConfigError(f"YAML error: {str(exc).splitlines()[0]}", path=name) from None
    if node is None:
        return None, Marks()
    marks = Marks()
    return _build(node, (), marks, name, seen=()), marks


def _guard(node: yaml.Node, loc: Loc, marks: Marks, name: str, *, seen: tuple[int, ...]) -> None:
    """Bounds on what aliases can do: no cycles, no explosion, no endless depth."""
    line = node.start_mark.line + 1
    marks.nodes += 1
    if not node.tag.startswith("tag:yaml.org,2002:") or ":python/" in node.tag:
        raise ConfigError(f"YAML value not allowed: tag {node.tag!r}", path=name, line=line)
    if id(node) in seen:
        raise ConfigError("an alias refers to itself (recursive alias)", path=name, line=line)
    if marks.nodes > MAX_NODES or len(loc) > MAX_DEPTH:
        raise ConfigError(
            "the file expands to too much data (aliases repeated too often, or nested "
            "too deep); a matrix needs none of that",
            path=name,
            line=line,
        )


def _key_of(key_node: yaml.Node, loc: Loc, name: str) -> Any:
    line = key_node.start_mark.line + 1
    if not isinstance(key_node, yaml.ScalarNode):
        raise ConfigError("a key must be a plain name, not a list or mapping", path=name, line=line)
    if key_node.tag == "tag:yaml.org,2002:merge":
        raise ConfigError(
            "merge keys (<<) are not supported; write the keys out",
            path=name,
            line=line,
            key=dotted(loc) or None,
        )
    return _scalar(key_node)


def _build(node: yaml.Node, loc: Loc, marks: Marks, name: str, *, seen: tuple[int, ...]) -> Any:
    _guard(node, loc, marks, name, seen=seen)
    seen = (*seen, id(node))
    marks.values[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _key_of(key_node, loc, name)
            if key in out:
                raise ConfigError(
                    "key appears twice in one mapping",
                    path=name,
                    line=key_node.start_mark.line + 1,
                    key=dotted((*loc, str(key))),
                )
            marks.keys[(*loc, str(key))] = key_node.start_mark.line + 1
            out[key] = _build(value_node, (*loc, str(key)), marks, name, seen=seen)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*loc, i), marks, name, seen=seen) for i, item in enumerate(node.value)
        ]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    # A throwaway loader gives scalars YAML's own types (int, bool, null ...).
    try:
        return yaml.SafeLoader("").construct_object(node, deep=True)
    except yaml.YAMLError as exc:  # e.g. a !!python tag, which the safe loader refuses
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"YAML value not allowed: {problem}", path="", line=node.start_mark.line + 1
        ) from None


SYSTEM_FOLDERS = frozenset(
    Path(p)
    for p in (
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/home",
        "/lib",
        "/lib64",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/srv",
        "/sys",
        "/tmp",
        "/usr",
        "/usr/local",
        "/var",
        "/var/lib",
        "/var/tmp",
    )
)


def _resolve_paths(matrix: Matrix, marks: Marks, path: Path) -> Matrix:
    """Make file paths absolute, relative to the matrix; check that files exist and
    that the index root is a folder of its own."""
    branches = tuple(
        _resolve_branch(matrix, i, b, marks, path=path) for i, b in enumerate(matrix.branches)
    )
    overrides = tuple(
        _resolve_bindep(matrix, i, o, marks, path=path) for i, o in enumerate(matrix.overrides)
    )
    root, warnings = _index_root(matrix, marks, path)
    return matrix.model_copy(
        update={
            "builder": _resolve_builder(matrix, marks, path),
            "index": matrix.index.model_copy(update={"root": root}),
            "overrides": overrides,
            "branches": branches,
            "warnings": warnings,
        }
    )


def _resolve_builder(matrix: Matrix, marks: Marks, path: Path) -> BuilderSpec:
    certs = tuple(matrix.resolve(p) for p in matrix.builder.ca_certificates)
    for i, cert in enumerate(certs):
        _exists(cert, "CA certificate", ("builder", "ca_certificates", i), marks, path=path)
    constraints = matrix.builder.build_constraints
    if constraints is not None:
        constraints = matrix.resolve(constraints)
        where: Loc = ("builder", "build_constraints")
        _exists(constraints, "build constraints file", where, marks, path=path)
    return matrix.builder.model_copy(
        update={"ca_certificates": certs, "build_constraints": constraints}
    )


def _index_root(matrix: Matrix, marks: Marks, path: Path) -> tuple[Path, tuple[str, ...]]:
    """The index root, absolute; refused when it is a system folder, a warning when a
    relative one leaves the matrix's folder."""
    root = matrix.resolve(matrix.index.root)
    loc: Loc = ("index", "root")
    if root in SYSTEM_FOLDERS or root == Path.home():
        raise ConfigError(
            f"index root {str(root)!r} is a system folder; publishing there would "
            "mix the index with the system's files",
            path=str(path),
            line=line_of(loc, marks),
            key=dotted(loc),
            hint="use a folder of its own, e.g. /srv/wheels",
        )
    if matrix.index.root.is_absolute() or path.resolve().parent in (root, *root.parents):
        return root, ()
    return root, (
        f"{path}:{line_of(loc, marks)}: index.root {str(matrix.index.root)!r} resolves "
        f"to {root}, outside this file's folder; write an absolute path if that is meant",
    )


def _resolve_branch(
    matrix: Matrix, i: int, branch: BranchSpec, marks: Marks, *, path: Path
) -> BranchSpec:
    """Local files made absolute and checked; each platform glob must match a platform."""
    update: dict[str, object] = {}
    if not branch.remote:
        constraints = matrix.resolve(Path(branch.constraints))
        _exists(constraints, "constraints file", ("branches", i, "constraints"), marks, path=path)
        update["constraints"] = str(constraints)
    if branch.packages is not None:
        packages = matrix.resolve(branch.packages)
        _exists(packages, "packages file", ("branches", i, "packages"), marks, path=path)
        update["packages"] = packages
    names = [f"{d.name}-{d.release}-{a.value}" for d in matrix.distros for a in d.arches]
    for j, glob in enumerate(branch.platforms):
        if not fnmatch.filter(names, glob):
            loc: Loc = ("branches", i, "platforms", j)
            raise ConfigError(
                f"branch {branch.name!r}: platform glob {glob!r} matches no platform",
                path=str(path),
                line=line_of(loc, marks),
                key=dotted(loc),
                hint="platforms: " + ", ".join(names),
            )
    return branch.model_copy(update=update)


def _resolve_bindep(
    matrix: Matrix, i: int, override: OverrideSpec, marks: Marks, *, path: Path
) -> OverrideSpec:
    """A bindep.txt path made absolute and checked to exist and parse, at load time."""
    if override.bindep is None:
        return override
    file = matrix.resolve(override.bindep)
    loc: Loc = ("overrides", i, "bindep")
    _exists(file, "bindep file", loc, marks, path=path)
    try:
        parse_bindep(file.read_text(errors="replace"), str(file))
    except BindepError as exc:
        raise ConfigError(
            str(exc), path=str(path), line=line_of(loc, marks), key=dotted(loc)
        ) from None
    return override.model_copy(update={"bindep": file})


def _exists(file: Path, what: str, loc: Loc, marks: Marks, *, path: Path) -> None:
    if not file.is_file():
        raise ConfigError(
            f"{what} {str(file)!r} does not exist",
            path=str(path),
            line=line_of(loc, marks),
            key=dotted(loc),
        )
